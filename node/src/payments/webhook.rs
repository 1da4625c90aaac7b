//! Provider webhooks in: verified, parsed into observations, and merged on
//! whichever node they land.
//!
//! Webhooks come in Stripe's shape — `Stripe-Signature: t=…,v1=…`, an
//! HMAC-SHA256 of `"{t}.{body}"` under the webhook secret, refused when `t`
//! is more than [`TOLERANCE_SECS`] from this node's clock; an event
//! `{id, type, data: {object}}` whose object is a PaymentIntent or a refund
//! carrying our metadata (`order`, and `attempt` or `refund` as
//! `actor/number`). The test provider's webhooks use the same shape.
//!
//! An event merges as an observation, remembered by its id in the order, so
//! a second delivery — to the same node or another — changes nothing and is
//! answered as a duplicate.

use hmac::{KeyInit, Mac};
use serde::Deserialize;

use crdt_core::OrderId;
use crdt_core::ops::PaymentChange;
use crdt_core::payment::{Observation, PaymentStatus, RefundStatus};

use super::parse_attempt;
use crate::api::error::ApiError;

/// How far a webhook's timestamp may be from this node's clock, seconds.
pub const TOLERANCE_SECS: u64 = 300;
/// The largest webhook body taken, bytes.
pub const MAX_BODY: usize = 64 << 10;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// The `Stripe-Signature` header for `body` at time `t` (seconds): what a
/// provider sends, and what tests use to play one.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    let sig: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={sig}")
}

/// Checks `header` over `body` with `secret` at `now` (seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> Result<(), ApiError> {
    let bad =
        |why: &str| ApiError::bad_request("invalid_signature", format!("Stripe-Signature: {why}"));
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| bad("no timestamp"))?;
    if t.abs_diff(now) > TOLERANCE_SECS {
        return Err(bad("the timestamp is outside the 300 s tolerance"));
    }
    let ok = sigs.iter().any(|s| {
        let Some(bytes) = hex_bytes(s) else {
            return false;
        };
        let mut m = mac(secret);
        m.update(format!("{t}.").as_bytes());
        m.update(body);
        m.verify_slice(&bytes).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(bad("no v1 signature matches"))
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    id: String,
    object: String,
    status: String,
    #[serde(default)]
    amount_received: u64,
    #[serde(default)]
    last_payment_error: Option<LastError>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct LastError {
    decline_code: Option<String>,
    code: Option<String>,
}

/// A provider event as a change to one order; `None` for an event type
/// that changes nothing here (acknowledged and dropped).
pub fn parse(body: &[u8]) -> Result<Option<(OrderId, PaymentChange)>, ApiError> {
    let e: Event = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request("invalid_body", format!("event: {err}")))?;
    let o = e.data.object;
    let meta = |k: &str| {
        o.metadata
            .get(k)
            .ok_or_else(|| ApiError::field(&format!("data.object.metadata.{k}"), "is missing"))
    };
    match o.object.as_str() {
        "payment_intent" => {
            let order = order_of(meta("order")?)?;
            let attempt = parse_attempt(meta("attempt")?).ok_or_else(|| {
                ApiError::field("data.object.metadata.attempt", "must be actor/number")
            })?;
            // Stripe moves a declined intent back to requires_payment_method
            // and says so in the event's type; here the attempt is over.
            let status = if e.kind == "payment_intent.payment_failed" {
                PaymentStatus::Failed
            } else {
                PaymentStatus::parse(&o.status).ok_or_else(|| {
                    ApiError::field("data.object.status", format!("{:?} is unknown", o.status))
                })?
            };
            let failure = o
                .last_payment_error
                .and_then(|l| l.decline_code.or(l.code))
                .filter(|_| status == PaymentStatus::Failed);
            Ok(Some((
                order,
                PaymentChange::Observe {
                    attempt,
                    observation: Observation {
                        status,
                        provider_ref: Some(o.id),
                        captured_minor: o.amount_received,
                        failure,
                    },
                    event: Some(e.id),
                },
            )))
        }
        "refund" => {
            let order = order_of(meta("order")?)?;
            let refund = parse_attempt(meta("refund")?).ok_or_else(|| {
                ApiError::field("data.object.metadata.refund", "must be actor/number")
            })?;
            let status = match o.status.as_str() {
                "succeeded" => RefundStatus::Succeeded,
                "failed" | "canceled" => RefundStatus::Failed,
                "pending" => RefundStatus::Pending,
                other => {
                    return Err(ApiError::field(
                        "data.object.status",
                        format!("{other:?} is unknown"),
                    ));
                }
            };
            Ok(Some((
                order,
                PaymentChange::ObserveRefund {
                    refund,
                    status,
                    provider_ref: Some(o.id),
                    event: Some(e.id),
                },
            )))
        }
        _ => Ok(None),
    }
}

fn order_of(s: &str) -> Result<OrderId, ApiError> {
    s.parse::<uuid::Uuid>()
        .map(OrderId)
        .map_err(|_| ApiError::field("data.object.metadata.order", "must be an order id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(b"whsec_0123456789abcdef", 1_000, body);
        assert!(verify(b"whsec_0123456789abcdef", &h, body, 1_100).is_ok());
        assert!(verify(b"whsec_other_secret_xx", &h, body, 1_100).is_err());
        assert!(verify(b"whsec_0123456789abcdef", &h, b"{}", 1_100).is_err());
        assert!(verify(b"whsec_0123456789abcdef", &h, body, 1_301).is_err());
        assert!(verify(b"whsec_0123456789abcdef", "t=1000", body, 1_000).is_err());
        assert!(verify(b"whsec_0123456789abcdef", "garbage", body, 1_000).is_err());
    }
}
