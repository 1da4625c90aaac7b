//! Payments: charging an order exactly once, refunding no more than was
//! captured, and merging what the provider reports.
//!
//! Only the selling node talks to the provider about an order (the rule
//! that makes it the only one to ship); other nodes forward payment and
//! refund requests to it. Every step is written durably *before* the
//! provider hears of it — the attempt, then the call — and every call
//! carries an idempotency key derived from the order, the attempt and the
//! step, so a retry, a forwarded request or a node restarted mid-call
//! repeats the same call and the provider answers it once. The provider's
//! answers and webhooks become observations (max-registers), merged on any
//! node; merging one twice changes nothing.
//!
//! The reconciler ([`reconcile`]) finishes what a crash or an outage left
//! open: attempts that never heard back, refunds still pending, and the
//! automatic release or refund of a cancelled order's payment.

pub mod provider;
pub mod reconcile;
pub mod stripe;
pub mod test_provider;
pub mod webhook;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crdt_core::ops::{PaymentChange, PaymentError};
use crdt_core::payment::{AttemptId, Observation, PaymentStatus, RefundId, RefundStatus};
use crdt_core::{Op, OpError, OrderId};

use crate::api::error::ApiError;
use crate::config::{PaymentsConfig, ProviderKind};
use crate::engine::{Engine, WriteError};
use provider::{Intent, NewIntent, PayMethod, Provider, ProviderError, within};
use test_provider::TestProvider;

/// A request only the seller carries out, as forwarded between nodes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum SellerCall {
    /// Pay for the order (start or resume an attempt).
    Pay {
        /// What pays.
        method: PayMethod,
    },
    /// Refund some or all of the capture.
    Refund {
        /// Minor units; `None`: all that remains.
        amount: Option<u64>,
        /// Why.
        reason: String,
    },
}

/// The node's payment service.
pub struct Payments {
    config: PaymentsConfig,
    provider: Provider,
    engine: Arc<Engine>,
    /// Orders a request on this node is driving now (the reconciler leaves
    /// them alone).
    busy: Mutex<HashSet<OrderId>>,
}

/// Marks an order busy for as long as it lives.
struct Busy<'a>(&'a Payments, OrderId);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().expect("busy lock").remove(&self.1);
    }
}

impl Payments {
    /// The service for `engine`, with its provider (the test provider keeps
    /// its ledger under `node_dir`).
    pub fn open(
        config: PaymentsConfig,
        node_dir: &Path,
        engine: Arc<Engine>,
    ) -> anyhow::Result<Arc<Self>> {
        let provider = match config.provider {
            ProviderKind::Test => Provider::Test(TestProvider::open(
                &node_dir.join("payments-test"),
                config.test_latency,
                config.test_fail_every,
            )?),
            ProviderKind::Stripe => Provider::Stripe(
                stripe::Stripe::new(
                    &config.api_base,
                    config.secret_key.clone().unwrap_or_default(),
                )
                .map_err(anyhow::Error::msg)?,
            ),
        };
        Ok(Arc::new(Self {
            config,
            provider,
            engine,
            busy: Mutex::new(HashSet::new()),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &PaymentsConfig {
        &self.config
    }

    /// The test provider's ledger, when that is the provider.
    pub fn test_ledger(&self) -> Option<Vec<test_provider::LedgerIntent>> {
        match &self.provider {
            Provider::Test(p) => Some(p.ledger()),
            Provider::Stripe(_) => None,
        }
    }

    fn hold(&self, order: OrderId) -> Busy<'_> {
        self.busy.lock().expect("busy lock").insert(order);
        Busy(self, order)
    }

    fn is_busy(&self, order: &OrderId) -> bool {
        self.busy.lock().expect("busy lock").contains(order)
    }

    /// At the seller: starts an attempt for `order` (or resumes the one
    /// under way) and confirms it with `method`. `Ok` when the order is
    /// paid or waits on the shopper's authentication; 402 when declined.
    pub async fn pay(&self, order: OrderId, method: &PayMethod) -> Result<(), ApiError> {
        let _busy = self.hold(order);
        let actor = self.engine.actor();
        let start = Op::Payment {
            order,
            change: PaymentChange::Start {
                provider: self.provider.name().to_string(),
                capture: self.config.capture,
                method: method.shown(),
            },
        };
        let n = match self
            .engine
            .write_with(|r| {
                let n = r
                    .state()
                    .orders
                    .get(&order)
                    .map_or(1, |e| e.payments.next_attempt(actor));
                Ok((start, n))
            })
            .await
        {
            Ok((_, n)) => n,
            Err(WriteError::Op(OpError::Payment(PaymentError::InProgress { attempt, .. }))) => {
                attempt
            }
            Err(WriteError::Op(OpError::Payment(PaymentError::AlreadyPaid(_)))) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let intent = self.confirm((actor, n), order, method).await?;
        match intent.status {
            PaymentStatus::Failed => {
                let code = intent.failure.as_deref().unwrap_or("payment_declined");
                Err(ApiError::new(
                    axum::http::StatusCode::PAYMENT_REQUIRED,
                    declined_code(code),
                    format!("the payment was declined ({code}); try another card"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Drives attempt `id` to the provider's verdict: creates its intent if
    /// it has none, then confirms it (again, after an authentication).
    async fn confirm(
        &self,
        id: AttemptId,
        order: OrderId,
        method: &PayMethod,
    ) -> Result<Intent, ApiError> {
        let attempt = self
            .engine
            .read(|r| {
                r.state()
                    .orders
                    .get(&order)?
                    .payments
                    .attempts
                    .get(&id)
                    .cloned()
            })
            .await
            .ok_or_else(|| ApiError::not_found("order_not_found", format!("order {order}")))?;
        let intent_id = match attempt.provider_ref.0.clone() {
            Some(r) => r,
            None => {
                let new = attempt
                    .start
                    .as_ref()
                    .map(|s| new_intent(order, id, s))
                    .ok_or_else(|| {
                        ApiError::not_found(
                            "order_not_found",
                            format!("attempt {} of order {order}", id.1),
                        )
                    })?;
                let intent = self
                    .call(self.provider.create(&key(order, id, "create"), &new))
                    .await?;
                self.observe(order, id, &intent).await?;
                intent.id
            }
        };
        let step = match attempt.status.0 {
            PaymentStatus::RequiresAction => "confirm-after-action",
            PaymentStatus::Processing | PaymentStatus::RequiresPaymentMethod => "confirm",
            _ => return self.call(self.provider.retrieve(&intent_id)).await,
        };
        let intent = self
            .call(
                self.provider
                    .confirm(&key(order, id, step), &intent_id, method),
            )
            .await?;
        self.observe(order, id, &intent).await?;
        Ok(intent)
    }

    /// At the seller, before it ships: captures the authorised amount when
    /// capture waits for the ship. 503 while the provider does not answer
    /// (the ship waits too: goods never leave unpaid).
    pub async fn before_ship(&self, order: OrderId) -> Result<(), ApiError> {
        let actor = self.engine.actor();
        let due = self
            .engine
            .read(|r| {
                let e = r.state().orders.get(&order)?;
                let (n, a) = e.payments.live_attempt(actor)?;
                (a.status.0 == PaymentStatus::RequiresCapture)
                    .then(|| (n, a.provider_ref.0.clone()))
            })
            .await;
        let Some((n, Some(intent_id))) = due else {
            return Ok(());
        };
        let _busy = self.hold(order);
        let intent = self
            .call(
                self.provider
                    .capture(&key(order, (actor, n), "capture"), &intent_id),
            )
            .await?;
        self.observe(order, (actor, n), &intent).await
    }

    /// At the seller: reserves a refund against its capture, then asks the
    /// provider. `Ok(true)` when refunded, `Ok(false)` when the provider did
    /// not answer and the reconciler will finish it.
    pub async fn refund(
        &self,
        order: OrderId,
        amount: Option<u64>,
        reason: &str,
    ) -> Result<bool, ApiError> {
        let _busy = self.hold(order);
        self.refund_held(order, amount, reason).await
    }

    /// [`Payments::refund`] for a caller that already holds the order busy
    /// (the reconciler).
    async fn refund_held(
        &self,
        order: OrderId,
        amount: Option<u64>,
        reason: &str,
    ) -> Result<bool, ApiError> {
        let actor = self.engine.actor();
        let op = Op::Payment {
            order,
            change: PaymentChange::StartRefund {
                amount,
                reason: reason.to_string(),
            },
        };
        let (_, m) = self
            .engine
            .write_with(|r| {
                let m = r
                    .state()
                    .orders
                    .get(&order)
                    .map_or(1, |e| e.payments.next_refund(actor));
                Ok((op, m))
            })
            .await?;
        match self.send_refund(order, (actor, m)).await {
            Ok(()) => Ok(true),
            Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends reserved refund `id` to the provider and merges its verdict (a
    /// refusal frees the amount again).
    async fn send_refund(&self, order: OrderId, id: RefundId) -> Result<(), ApiError> {
        let found = self
            .engine
            .read(|r| {
                let e = r.state().orders.get(&order)?;
                let s = e.payments.refunds.get(&id)?.start.clone()?;
                let intent = e
                    .payments
                    .attempts
                    .get(&s.attempt)?
                    .provider_ref
                    .0
                    .clone()?;
                Some((s.amount_minor, intent))
            })
            .await;
        let Some((amount, intent)) = found else {
            return Err(ApiError::not_found(
                "order_not_found",
                format!("refund {} of order {order} is not here", id.1),
            ));
        };
        let refund_key = format!("{order}:{}:refund:{}", id.0, id.1);
        let outcome = within(
            self.config.call_timeout,
            self.provider.refund(&refund_key, &intent, amount),
        )
        .await;
        let (status, provider_ref, err) = match outcome {
            Ok(r) => (r.status, Some(r.id), None),
            Err(ProviderError::Refused(m)) => (RefundStatus::Failed, None, Some(m)),
            Err(e @ ProviderError::Unavailable(_)) => return Err(unavailable(&e)),
        };
        self.write_ignoring_unchanged(Op::Payment {
            order,
            change: PaymentChange::ObserveRefund {
                refund: id,
                status,
                provider_ref,
                event: None,
            },
        })
        .await?;
        match err {
            Some(m) => Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "provider_refused",
                m,
            )),
            None => Ok(()),
        }
    }

    /// Merges what the provider said of attempt `id`.
    async fn observe(&self, order: OrderId, id: AttemptId, i: &Intent) -> Result<(), ApiError> {
        self.write_ignoring_unchanged(Op::Payment {
            order,
            change: PaymentChange::Observe {
                attempt: id,
                observation: observation(i),
                event: None,
            },
        })
        .await
    }

    async fn write_ignoring_unchanged(&self, op: Op) -> Result<(), ApiError> {
        match self.engine.write(op).await {
            Ok(_) | Err(WriteError::Op(OpError::Unchanged)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A provider call within the configured deadline, its failure as the
    /// API answers it.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ApiError> {
        within(self.config.call_timeout, f)
            .await
            .map_err(|e| match e {
                ProviderError::Unavailable(_) => unavailable(&e),
                ProviderError::Refused(m) => {
                    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "provider_refused", m)
                }
            })
    }
}

/// The observation an intent makes.
pub fn observation(i: &Intent) -> Observation {
    Observation {
        status: i.status,
        provider_ref: Some(i.id.clone()),
        captured_minor: i.captured_minor,
        failure: i.failure.clone(),
    }
}

/// What the provider is asked to create for attempt `id`: everything from
/// its fixed start, so the request repeated under the same key (by a retry,
/// or by the reconciler after a restart) is the same request.
fn new_intent(order: OrderId, id: AttemptId, s: &crdt_core::payment::AttemptStart) -> NewIntent {
    NewIntent {
        amount_minor: s.amount_minor,
        currency: s.currency.code().to_string(),
        capture: s.capture,
        order: order.to_string(),
        attempt: attempt_label(id),
    }
}

/// The idempotency key of one step of one attempt: the same on every node
/// and across restarts.
fn key(order: OrderId, id: AttemptId, step: &str) -> String {
    format!("{order}:{}:{}:{step}", id.0, id.1)
}

/// How an attempt is named in the provider's metadata: `actor/number`.
pub fn attempt_label(id: AttemptId) -> String {
    format!("{}/{}", id.0, id.1)
}

/// The attempt an `actor/number` label names.
pub fn parse_attempt(s: &str) -> Option<AttemptId> {
    let (a, n) = s.rsplit_once('/')?;
    Some((crdt_core::Actor::parse(a)?, n.parse().ok()?))
}

fn declined_code(code: &str) -> &'static str {
    match code {
        "card_declined" => "card_declined",
        "insufficient_funds" => "insufficient_funds",
        _ => "payment_declined",
    }
}

fn unavailable(e: &ProviderError) -> ApiError {
    ApiError::unavailable(
        "provider_unavailable",
        format!("{e}; repeating the request is safe: it charges at most once"),
    )
}
