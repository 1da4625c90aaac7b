//! Payment endpoints: pay for an order, refund it, take the provider's
//! webhooks, and (with the test provider) show its ledger.
//!
//! Paying and refunding are the seller's to carry out: another node
//! forwards the request and answers 503 while the seller is unreachable.
//! Who may call: a customer pays its own orders (an admin any); refunds and
//! the ledger are the admin's; the webhook route is public and trusts only
//! the provider's signature.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use crdt_core::ops::PaymentError;
use crdt_core::{Actor, Op, OpError, OrderId};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::answer::Answer;
use super::dto::{NewPayment, NewRefund, OrderView};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller, path_param};
use super::orders::order_view;
use crate::engine::WriteError;
use crate::payments::SellerCall;
use crate::payments::provider::PayMethod;
use crate::payments::webhook;

/// The actor that must carry out a payment request for `order` (the
/// winning sale's seller), or 404.
fn seller_of(state: &AppState, order: OrderId) -> Result<Actor, ApiError> {
    state
        .engine
        .peek(|r| {
            r.state()
                .orders
                .get(&order)
                .and_then(|e| e.header())
                .map(|h| h.seller)
        })
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("order {order} not found")))
}

/// Pays for an order with the configured provider: starts an attempt (or
/// resumes the one under way) for the order's total and confirms it. The
/// order is `paid` once the provider authorised (`capture = "on_ship"`) or
/// captured (`immediate`) the amount. A card that needs authentication
/// leaves the payment `requires_action`: post again once the shopper has
/// authenticated. Repeating the request never charges twice.
#[utoipa::path(post, path = "/api/v1/orders/{id}/payments", tag = "payments", request_body = NewPayment,
    params(("id" = uuid::Uuid, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order with its payment", body = OrderView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 402, description = "Declined: card_declined, insufficient_funds", body = ErrorBody),
        (status = 404, description = "No such order (or another customer's)", body = ErrorBody),
        (status = 409, description = "Paid already, not payable, or an attempt under way elsewhere", body = ErrorBody),
        (status = 502, description = "The provider refused the request", body = ErrorBody),
        (status = 503, description = "The seller or the provider is unreachable; safe to repeat", body = ErrorBody)))]
pub async fn pay_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewPayment>,
) -> Result<Answer, ApiError> {
    caller.any()?;
    let id = OrderId(path_param("id", &id)?);
    order_view(&state, id, &caller).await?;
    let year = crate::clock::rfc3339(crate::clock::now_ms())[..4]
        .parse()
        .unwrap_or(2026);
    let method = body.validate(year)?;
    match (&method, state.config.payments.provider) {
        (PayMethod::Token(_), crate::config::ProviderKind::Test) => {
            return Err(ApiError::field(
                "paymentMethod",
                "the test provider takes a card, not a payment-method id",
            ));
        }
        (PayMethod::Card(_), crate::config::ProviderKind::Stripe) => {
            return Err(ApiError::field(
                "card",
                "Stripe takes a paymentMethod id from the storefront; card numbers are for the test provider only",
            ));
        }
        _ => {}
    }
    let seller = seller_of(&state, id)?;
    if seller == state.engine.actor() {
        state.payments.pay(id, &method).await?;
    } else {
        state
            .cluster
            .forward_call(seller, id, SellerCall::Pay { method })
            .await?;
    }
    Answer::json(StatusCode::OK, &order_view(&state, id, &caller).await?)
}

/// Refunds some or all of what was captured for an order. The refunded
/// total never exceeds the capture, however many nodes are asked at once:
/// the node holding the capture reserves each refund before the provider
/// hears of it. A refund the provider has not answered yet shows as
/// `pending` and is retried until it does.
#[utoipa::path(post, path = "/api/v1/orders/{id}/refunds", tag = "payments", request_body = NewRefund,
    params(("id" = uuid::Uuid, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order with its refunds", body = OrderView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Nothing captured, or more than remains", body = ErrorBody),
        (status = 502, description = "The provider refused the refund", body = ErrorBody),
        (status = 503, description = "The node holding the capture is unreachable", body = ErrorBody)))]
pub async fn refund_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRefund>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let id = OrderId(path_param("id", &id)?);
    let found = state.engine.peek(|r| {
        let e = r.state().orders.get(&id)?;
        let h = e.header()?;
        // The refund draws on a capture, and only its maker refunds it.
        let holder = e
            .payments
            .attempts
            .iter()
            .find(|(_, a)| a.captured_minor.0 > 0)
            .map_or(h.seller, |((actor, _), _)| *actor);
        Some((h.currency, holder))
    });
    let (currency, holder) = found
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("order {id} not found")))?;
    let (amount, reason) = body.validate(currency)?;
    if holder == state.engine.actor() {
        state.payments.refund(id, amount, &reason).await?;
    } else {
        state
            .cluster
            .forward_call(holder, id, SellerCall::Refund { amount, reason })
            .await?;
    }
    Answer::json(StatusCode::OK, &order_view(&state, id, &caller).await?)
}

/// The answer to a provider webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAck {
    /// Always true: the event was verified and taken.
    pub received: bool,
    /// Whether it changed the order here.
    pub merged: bool,
    /// Whether this event id was merged before (a repeated delivery).
    pub duplicate: bool,
}

/// Takes a payment provider's webhook, on any node: verified by its
/// signature (`Stripe-Signature`, 300 s tolerance), deduplicated by the
/// event id, and merged into the order as an observation.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/{provider}", tag = "payments",
    params(("provider" = String, Path, description = "The provider (test)")),
    request_body(content = String, description = "The provider's event, as it signed it", content_type = "application/json"),
    responses((status = 200, description = "Taken", body = WebhookAck),
        (status = 400, description = "Bad signature or event", body = ErrorBody),
        (status = 404, description = "Unknown provider, webhooks not configured, or the order is not here yet", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody)))]
pub async fn provider_webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, ApiError> {
    let cfg = &state.config.payments;
    if provider != cfg.provider.as_str() {
        return Err(ApiError::not_found(
            "unknown_provider",
            format!("this cluster takes payments with {}", cfg.provider.as_str()),
        ));
    }
    let secret = cfg.webhook_secret.as_deref().ok_or_else(|| {
        ApiError::not_found(
            "webhooks_not_configured",
            "set [payments] webhook_secret_file to take provider webhooks",
        )
    })?;
    if body.len() > webhook::MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a webhook body is at most {} bytes", webhook::MAX_BODY),
        ));
    }
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_signature", "Stripe-Signature: missing"))?;
    webhook::verify(secret, sig, &body, crate::clock::now_secs())?;
    let Some((order, change)) = webhook::parse(&body)? else {
        return Ok(Json(WebhookAck {
            received: true,
            merged: false,
            duplicate: false,
        }));
    };
    let ack = |merged, duplicate| {
        Ok(Json(WebhookAck {
            received: true,
            merged,
            duplicate,
        }))
    };
    match state.engine.write(Op::Payment { order, change }).await {
        Ok(_) => ack(true, false),
        Err(WriteError::Op(OpError::Payment(PaymentError::EventSeen(_)))) => ack(false, true),
        Err(WriteError::Op(OpError::Unchanged)) => ack(false, false),
        Err(e) => Err(e.into()),
    }
}

/// One intent in the test provider's ledger.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The intent id.
    pub id: String,
    /// The order.
    pub order: String,
    /// The attempt, `seller/number`.
    pub attempt: String,
    /// Its status.
    pub status: String,
    /// Minor units asked for.
    pub amount_minor: u64,
    /// Minor units captured.
    pub captured_minor: u64,
    /// Minor units refunded.
    pub refunded_minor: u64,
    /// Times money was captured for it: more than 1 would be a double charge.
    pub charges: u32,
}

/// The test provider's ledger on this node: every intent it holds, with
/// how many times it moved money — what a test or an operator checks to
/// see that nothing was charged twice.
#[utoipa::path(get, path = "/api/v1/payments/test/ledger", tag = "payments", security(("bearer" = [])),
    responses((status = 200, description = "The intents", body = [LedgerEntry]),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "The provider is not the test provider", body = ErrorBody)))]
pub async fn test_ledger(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    caller.admin()?;
    let ledger = state.payments.test_ledger().ok_or_else(|| {
        ApiError::not_found("not_test_provider", "the provider is not the test provider")
    })?;
    Ok(Json(
        ledger
            .into_iter()
            .map(|l| LedgerEntry {
                id: l.intent.id,
                order: l.order,
                attempt: l.attempt,
                status: l.intent.status.as_str().to_string(),
                amount_minor: l.amount_minor,
                captured_minor: l.intent.captured_minor,
                refunded_minor: l.refunded_minor,
                charges: l.charges,
            })
            .collect(),
    ))
}
