//! The payment provider adapter: what Concord asks of a provider, in
//! Stripe's terms (a PaymentIntent per attempt, captured, cancelled or
//! refunded), every call carrying an idempotency key so that a retry — from
//! a client, a forwarded request or a restarted node — never moves money
//! twice.
//!
//! Adapters are variants of [`Provider`] rather than trait objects: there
//! are few, each is known at build time, and async methods stay plain.

use std::time::Duration;

use crdt_core::payment::{CaptureMode, PaymentStatus, RefundStatus};

use super::stripe::Stripe;
use super::test_provider::TestProvider;

/// A card, as the test provider takes it. Never stored, logged or
/// replicated: `Debug` shows only the last four digits.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// 12–19 digits.
    pub number: String,
    /// 1–12.
    pub exp_month: u32,
    /// Four digits.
    pub exp_year: u32,
    /// 3 or 4 digits.
    pub cvc: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card(…{})", self.last4())
    }
}

impl Card {
    /// The last four digits.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }

    /// The brand its first digits name (enough to show the shopper).
    pub fn brand(&self) -> &'static str {
        match self.number.as_bytes().first() {
            Some(b'4') => "visa",
            Some(b'5') | Some(b'2') => "mastercard",
            Some(b'3') => "amex",
            _ => "card",
        }
    }
}

/// What pays for an attempt.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum PayMethod {
    /// A raw card (the test provider only).
    Card(Card),
    /// A provider's payment-method id from the storefront (`pm_…`).
    Token(String),
}

impl PayMethod {
    /// How the attempt shows it: a card's brand and last four, or the id.
    pub fn shown(&self) -> String {
        match self {
            PayMethod::Card(c) => format!("{} {}", c.brand(), c.last4()),
            PayMethod::Token(t) => t.clone(),
        }
    }
}

/// A provider's view of one PaymentIntent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// Its id (`pi_…`).
    pub id: String,
    /// Its status.
    pub status: PaymentStatus,
    /// Minor units captured.
    pub captured_minor: u64,
    /// The decline code of its last failure.
    pub failure: Option<String>,
}

/// A provider's view of one refund.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundOutcome {
    /// Its id (`re_…`).
    pub id: String,
    /// Its status.
    pub status: RefundStatus,
}

/// What a new intent is for.
#[derive(Clone, Debug)]
pub struct NewIntent {
    /// Minor units.
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// When the amount is captured.
    pub capture: CaptureMode,
    /// The order id, carried in the intent's metadata so that its webhooks
    /// find the order on any node.
    pub order: String,
    /// The attempt, `actor/number`, likewise.
    pub attempt: String,
}

/// Why a provider call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time, or an outage: the call may or may not have been
    /// carried out, and is safe to repeat with the same key.
    #[error("the payment provider did not answer: {0}")]
    Unavailable(String),
    /// The provider refused the request itself (not a decline).
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
}

/// The configured provider.
pub enum Provider {
    /// The in-process test provider.
    Test(TestProvider),
    /// Stripe.
    Stripe(Stripe),
}

impl Provider {
    /// Its name (as the attempt records it).
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Test(_) => "test",
            Provider::Stripe(_) => "stripe",
        }
    }

    /// Creates an intent for `intent` (status `requires_payment_method`).
    pub async fn create(&self, key: &str, intent: &NewIntent) -> Result<Intent, ProviderError> {
        match self {
            Provider::Test(p) => p.create(key, intent).await,
            Provider::Stripe(p) => p.create(key, intent).await,
        }
    }

    /// Confirms intent `id` with `method`.
    pub async fn confirm(
        &self,
        key: &str,
        id: &str,
        method: &PayMethod,
    ) -> Result<Intent, ProviderError> {
        match self {
            Provider::Test(p) => p.confirm(key, id, method).await,
            Provider::Stripe(p) => p.confirm(key, id, method).await,
        }
    }

    /// Captures an authorised intent.
    pub async fn capture(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        match self {
            Provider::Test(p) => p.capture(key, id).await,
            Provider::Stripe(p) => p.capture(key, id).await,
        }
    }

    /// Cancels an intent that moved no money (releasing an authorisation).
    pub async fn cancel(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        match self {
            Provider::Test(p) => p.cancel(key, id).await,
            Provider::Stripe(p) => p.cancel(key, id).await,
        }
    }

    /// Refunds `amount_minor` of intent `id`'s capture.
    pub async fn refund(
        &self,
        key: &str,
        id: &str,
        amount_minor: u64,
    ) -> Result<RefundOutcome, ProviderError> {
        match self {
            Provider::Test(p) => p.refund(key, id, amount_minor).await,
            Provider::Stripe(p) => p.refund(key, id, amount_minor).await,
        }
    }

    /// The intent as the provider holds it now.
    pub async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        match self {
            Provider::Test(p) => p.retrieve(id).await,
            Provider::Stripe(p) => p.retrieve(id).await,
        }
    }
}

/// Runs a provider call with a deadline: past it the call counts as
/// unanswered (it may still complete at the provider).
pub async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Unavailable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
