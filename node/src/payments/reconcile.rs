//! The payment reconciler: on every node, finishes the payment work only
//! that node can do — the orders it sold — whenever a change or a timer
//! says some may be due.
//!
//! - An attempt that never heard back (a timeout, a crash mid-call) is
//!   looked up at the provider, recreating its intent under the same key if
//!   the id was lost; one still unconfirmed after [`ABANDONED`] is
//!   cancelled, so the shopper may start another.
//! - A cancelled order (or a sale that lost to another seller's) has its
//!   authorisation released, or what was captured refunded.
//! - A refund reserved but unanswered is sent again, under its own key.
//!
//! Provider calls back off per order (doubling to a minute) while they fail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crdt_core::payment::{Attempt, PaymentStatus, RefundStatus};
use crdt_core::status::OrderStatus;
use crdt_core::{Key, OrderId};
use tokio::sync::broadcast;

use super::provider::ProviderError;
use super::{Payments, key, new_intent};
use crate::engine::Event;
use crate::shutdown::Shutdown;

/// An attempt unconfirmed this long is abandoned.
pub const ABANDONED: Duration = Duration::from_secs(600);
/// How often due orders are visited without a change to prompt it.
const TICK: Duration = Duration::from_secs(5);
/// Longest wait between visits to an order whose calls keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the reconciler until shutdown.
pub async fn run(payments: Arc<Payments>, shutdown: Shutdown) {
    let mut rx = payments.engine.subscribe();
    let mut tick = tokio::time::interval(TICK);
    let mut backoff: HashMap<OrderId, (Instant, Duration)> = HashMap::new();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let touches = |keys: &[Key]| keys.iter().any(|k| matches!(k, Key::Order(_)));
                match ev {
                    Ok(Event::Applied(a, _)) if touches(&a.changed) => {}
                    Ok(Event::Repaired(keys)) if touches(&keys) => {}
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let due = payments.engine.peek(|r| r.payments_due());
        backoff.retain(|o, _| due.contains(o));
        for order in due {
            if payments.is_busy(&order) {
                continue;
            }
            let now = Instant::now();
            if backoff.get(&order).is_some_and(|(at, _)| *at > now) {
                continue;
            }
            match payments.reconcile(order).await {
                Ok(()) => {
                    backoff.remove(&order);
                }
                Err(e) => {
                    let delay = backoff
                        .get(&order)
                        .map_or(Duration::from_secs(1), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                    tracing::info!(%order, error = %e, retry_in_ms = delay.as_millis() as u64,
                        "payment work for an order failed; will retry");
                    backoff.insert(order, (now + delay, delay));
                }
            }
        }
    }
}

impl Payments {
    /// Does what is due on `order` for this node, once.
    pub async fn reconcile(&self, order: OrderId) -> Result<(), ProviderError> {
        let actor = self.engine.actor();
        // What leaves for the provider is decided on durable state only (a
        // cancel not yet on disk must not refund).
        let Some(entry) = self
            .engine
            .read(|r| r.state().orders.get(&order).cloned())
            .await
        else {
            return Ok(());
        };
        let _busy = self.hold(order);
        let given_up = entry.status.0 == OrderStatus::Cancelled
            || entry.header().is_some_and(|h| h.seller != actor);
        let now_ms = crate::clock::now_ms();
        let attempts: Vec<(u32, Attempt)> = entry
            .payments
            .attempts_of(actor)
            .map(|(n, a)| (n, a.clone()))
            .collect();
        for (n, a) in attempts {
            let id = (actor, n);
            match a.status.0 {
                PaymentStatus::Processing | PaymentStatus::RequiresPaymentMethod => {
                    let age = now_ms.saturating_sub(a.start.as_ref().map_or(0, |s| s.created_ms));
                    let intent = match a.provider_ref.0.clone() {
                        Some(i) => self.provider.retrieve(&i).await?,
                        None => {
                            let Some(s) = &a.start else { continue };
                            let new = new_intent(order, id, s);
                            self.provider
                                .create(&key(order, id, "create"), &new)
                                .await?
                        }
                    };
                    let unconfirmed = intent.status == PaymentStatus::RequiresPaymentMethod;
                    if unconfirmed && (given_up || age >= ABANDONED.as_millis() as u64) {
                        let i = self
                            .provider
                            .cancel(&key(order, id, "cancel"), &intent.id)
                            .await?;
                        self.observe(order, id, &i).await.map_err(api_fault)?;
                    } else {
                        self.observe(order, id, &intent).await.map_err(api_fault)?;
                    }
                }
                PaymentStatus::RequiresCapture | PaymentStatus::RequiresAction if given_up => {
                    if let Some(i) = &a.provider_ref.0 {
                        let i = self.provider.cancel(&key(order, id, "cancel"), i).await?;
                        self.observe(order, id, &i).await.map_err(api_fault)?;
                        tracing::info!(%order, attempt = n, "released the payment of a cancelled order");
                    }
                }
                _ if given_up && a.captured_minor.0 > entry.payments.refunded_of(id) => {
                    let why = if entry.status.0 == OrderStatus::Cancelled {
                        "order cancelled"
                    } else {
                        "checkout sold twice; this sale lost"
                    };
                    match self.refund_held(order, None, why).await {
                        Ok(true) => tracing::info!(%order, "refunded a cancelled order"),
                        Ok(false) => {
                            return Err(ProviderError::Unavailable("refund pending".into()));
                        }
                        Err(e) => return Err(api_fault(e)),
                    }
                }
                _ => {}
            }
        }
        let pending: Vec<_> = entry
            .payments
            .refunds
            .range((actor, 0)..=(actor, u32::MAX))
            .filter(|(_, r)| r.status.0 == RefundStatus::Pending)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            self.send_refund(order, id).await.map_err(api_fault)?;
        }
        Ok(())
    }
}

fn api_fault(e: crate::api::error::ApiError) -> ProviderError {
    ProviderError::Unavailable(e.message)
}
