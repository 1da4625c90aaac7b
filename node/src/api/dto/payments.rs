//! Shapes of the payment endpoints, and of the payment inside an order.

use crdt_core::money::{Currency, Money};
use crdt_core::payment::Payments;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{DecimalText, decimal_schema, money_json, price, text};
use crate::api::error::ApiError;
use crate::clock::rfc3339;
use crate::payments::provider::{Card, PayMethod};

/// A card, as the `test` provider takes it (never stored, logged or
/// replicated: the attempt keeps its brand and last four digits).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CardInput {
    /// 12–19 digits (spaces allowed), passing the Luhn check.
    #[schema(example = "4242424242424242")]
    pub number: String,
    /// 1–12.
    pub exp_month: u32,
    /// Four digits, not in the past.
    pub exp_year: u32,
    /// 3–4 digits.
    pub cvc: String,
}

/// `POST /api/v1/orders/{id}/payments`: exactly one of `card` (the test
/// provider) and `paymentMethod` (a provider's id from the storefront).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPayment {
    /// A card.
    pub card: Option<CardInput>,
    /// A payment-method id (`pm_…`).
    pub payment_method: Option<String>,
}

impl NewPayment {
    /// The validated method, or the field at fault; `year` is this year.
    pub fn validate(self, year: u32) -> Result<PayMethod, ApiError> {
        match (self.card, self.payment_method) {
            (Some(c), None) => {
                let number: String = c.number.chars().filter(|ch| *ch != ' ').collect();
                if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ApiError::field("card.number", "must be 12–19 digits"));
                }
                if !luhn(&number) {
                    return Err(ApiError::field("card.number", "fails the Luhn check"));
                }
                if !(1..=12).contains(&c.exp_month) {
                    return Err(ApiError::field("card.expMonth", "must be 1–12"));
                }
                if !(year..=year + 50).contains(&c.exp_year) {
                    return Err(ApiError::field(
                        "card.expYear",
                        format!("must be a year from {year} on"),
                    ));
                }
                if !(3..=4).contains(&c.cvc.len()) || !c.cvc.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ApiError::field("card.cvc", "must be 3–4 digits"));
                }
                Ok(PayMethod::Card(Card {
                    number,
                    exp_month: c.exp_month,
                    exp_year: c.exp_year,
                    cvc: c.cvc,
                }))
            }
            (None, Some(pm)) => {
                let pm = text("paymentMethod", &pm, 255, false)?;
                if !pm.starts_with("pm_") {
                    return Err(ApiError::field("paymentMethod", "must be a pm_… id"));
                }
                Ok(PayMethod::Token(pm))
            }
            _ => Err(ApiError::bad_request(
                "invalid_body",
                "give exactly one of card and paymentMethod",
            )),
        }
    }
}

/// Whether `digits` passes the Luhn check.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `POST /api/v1/orders/{id}/refunds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRefund {
    /// In the order's currency; all that remains of the capture when absent.
    #[serde(default)]
    #[schema(schema_with = decimal_schema)]
    pub amount: Option<DecimalText>,
    /// Why (shown in the order).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

impl NewRefund {
    /// The amount in minor units of `cur`, and the reason.
    pub fn validate(&self, cur: Currency) -> Result<(Option<u64>, String), ApiError> {
        let amount = match &self.amount {
            None => None,
            Some(a) => {
                let m = price("amount", a, cur)?;
                if m.minor == 0 {
                    return Err(ApiError::field("amount", "must be more than zero"));
                }
                Some(m.minor)
            }
        };
        Ok((amount, text("reason", &self.reason, 500, false)?))
    }
}

/// An order's payment: its current attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    /// `requires_payment_method`, `processing`, `requires_action`,
    /// `requires_capture`, `failed`, `canceled` or `succeeded`.
    pub status: String,
    /// The amount asked for.
    #[schema(value_type = f64)]
    pub amount: Box<RawValue>,
    /// The provider (`test`).
    pub provider: String,
    /// The provider's id of the charge.
    pub provider_ref: Option<String>,
    /// What pays: a card's brand and last four digits, or a payment-method id.
    pub method: String,
    /// Why it failed (a decline code).
    pub failure: Option<String>,
    /// The attempt: the seller and its number there.
    pub attempt: String,
    /// How many attempts were made.
    pub attempts: usize,
}

/// One refund.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    /// `seller/number`.
    pub id: String,
    /// `pending`, `failed` or `succeeded`.
    pub status: String,
    /// The amount.
    #[schema(value_type = f64)]
    pub amount: Box<RawValue>,
    /// Why.
    pub reason: String,
    /// The provider's id of it.
    pub provider_ref: Option<String>,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The payment parts of an order view.
pub struct PaymentParts {
    /// The current attempt.
    pub payment: Option<PaymentView>,
    /// Every refund, oldest first.
    pub refunds: Vec<RefundView>,
    /// Captured, over every attempt.
    pub captured: Box<RawValue>,
    /// Refunded (succeeded refunds).
    pub refunded: Box<RawValue>,
}

impl PaymentParts {
    /// The views of `p`, amounts in `currency`.
    pub fn new(p: &Payments, currency: Currency) -> Self {
        let m = |minor| money_json(&Money { minor, currency });
        let payment = p.current().map(|(id, a)| {
            let start = a.start.as_ref();
            PaymentView {
                status: a.status.0.as_str().to_string(),
                amount: m(start.map_or(0, |s| s.amount_minor)),
                provider: start.map_or_else(String::new, |s| s.provider.clone()),
                provider_ref: a.provider_ref.0.clone(),
                method: start.map_or_else(String::new, |s| s.method.clone()),
                failure: a.failure.0.clone(),
                attempt: crate::payments::attempt_label(*id),
                attempts: p.attempts.len(),
            }
        });
        let mut refunds: Vec<RefundView> = p
            .refunds
            .iter()
            .filter_map(|(id, r)| {
                let s = r.start.as_ref()?;
                Some(RefundView {
                    id: crate::payments::attempt_label(*id),
                    status: r.status.0.as_str().to_string(),
                    amount: m(s.amount_minor),
                    reason: s.reason.clone(),
                    provider_ref: r.provider_ref.0.clone(),
                    created_at: rfc3339(s.created_ms),
                })
            })
            .collect();
        refunds.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Self {
            payment,
            refunds,
            captured: m(p.captured()),
            refunded: m(p.refunded()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn luhn_accepts_the_test_cards_and_refuses_a_typo() {
        for n in [
            "4242424242424242",
            "4000000000000002",
            "4000000000009995",
            "4000002760003184",
        ] {
            assert!(super::luhn(n), "{n}");
        }
        assert!(!super::luhn("4242424242424241"));
    }
}
