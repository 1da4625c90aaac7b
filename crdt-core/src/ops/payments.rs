//! Planning of the payment operations: the seller starts attempts and
//! refunds (one writer each, so numbers never collide and a refund can be
//! checked against its capture without a race), and anyone merges what the
//! provider said (an answer at the seller, or a webhook on any node).

use super::{OpError, PlanCtx, delta};
use crate::delta::{Delta, Part};
use crate::ids::OrderId;
use crate::order::OrderEntry;
use crate::payment::{
    Attempt, AttemptId, AttemptStart, CaptureMode, MAX_ATTEMPTS, MAX_EVENTS, MAX_REFUNDS,
    Observation, Payments, Refund, RefundId, RefundStart, RefundStatus,
};
use crate::state::State;
use crate::status::{MaxReg, OrderStatus};

/// A payment operation.
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentChange {
    /// The seller starts an attempt for the order's total.
    Start {
        /// The provider's name.
        provider: String,
        /// When to capture.
        capture: CaptureMode,
        /// What pays, as shown (never a card number).
        method: String,
    },
    /// What the provider said of an attempt.
    Observe {
        /// The attempt.
        attempt: AttemptId,
        /// What it said.
        observation: Observation,
        /// The provider's event id, when a webhook said it.
        event: Option<String>,
    },
    /// The seller reserves a refund of its capture (all that remains when
    /// `amount` is `None`).
    StartRefund {
        /// Minor units.
        amount: Option<u64>,
        /// Why.
        reason: String,
    },
    /// What the provider said of a refund.
    ObserveRefund {
        /// The refund.
        refund: RefundId,
        /// Its status.
        status: RefundStatus,
        /// The provider's id of it.
        provider_ref: Option<String>,
        /// The provider's event id, when a webhook said it.
        event: Option<String>,
    },
}

/// Why a payment operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The order is paid (authorised or captured) already.
    #[error("order {0} is paid already")]
    AlreadyPaid(OrderId),
    /// An attempt is under way; it must end before another starts.
    #[error("order {order} has payment attempt {attempt} under way")]
    InProgress {
        /// The order.
        order: OrderId,
        /// The attempt's number.
        attempt: u32,
    },
    /// The order's status takes no payment.
    #[error("order {order} is {status}: it takes no payment")]
    NotPayable {
        /// The order.
        order: OrderId,
        /// Its status.
        status: OrderStatus,
    },
    /// The seller made as many attempts as allowed.
    #[error("order {0} has had as many payment attempts as allowed")]
    TooManyAttempts(OrderId),
    /// Nothing was captured that could be refunded.
    #[error("nothing of order {0} was captured")]
    NothingCaptured(OrderId),
    /// A refund beyond what remains of the capture.
    #[error("a refund of {asked} exceeds the {remaining} that remains of the capture")]
    ExceedsCapture {
        /// Minor units asked.
        asked: u64,
        /// Minor units captured and not refunded.
        remaining: u64,
    },
    /// The order has had as many refunds as allowed.
    #[error("order {0} has had as many refunds as allowed")]
    TooManyRefunds(OrderId),
    /// This provider event was merged before.
    #[error("event {0} was merged already")]
    EventSeen(String),
}

pub(super) fn plan_payment(
    state: &State,
    ctx: &mut PlanCtx<'_>,
    order: OrderId,
    change: PaymentChange,
) -> Result<Delta, OpError> {
    let entry = state
        .orders
        .get(&order)
        .ok_or(OpError::OrderNotFound(order))?;
    let mut payments = Payments::default();
    let mut status = None;
    match change {
        PaymentChange::Start {
            provider,
            capture,
            method,
        } => {
            let header = entry.header().ok_or(OpError::OrderNotFound(order))?;
            if header.seller != ctx.actor {
                return Err(OpError::NotSeller {
                    order,
                    seller: header.seller,
                });
            }
            match entry.status.0 {
                OrderStatus::Placed => {}
                OrderStatus::Paid => return Err(PaymentError::AlreadyPaid(order).into()),
                s => return Err(PaymentError::NotPayable { order, status: s }.into()),
            }
            if let Some((n, a)) = entry.payments.live_attempt(ctx.actor) {
                return Err(if a.status.0.is_authorised() {
                    PaymentError::AlreadyPaid(order)
                } else {
                    PaymentError::InProgress { order, attempt: n }
                }
                .into());
            }
            let n = entry.payments.next_attempt(ctx.actor);
            if n > MAX_ATTEMPTS {
                return Err(PaymentError::TooManyAttempts(order).into());
            }
            let start = AttemptStart {
                provider,
                amount_minor: header.total_minor,
                currency: header.currency,
                capture,
                method,
                created_ms: ctx.wall_ms,
            };
            payments
                .attempts
                .insert((ctx.actor, n), Attempt::started(start));
        }
        PaymentChange::Observe {
            attempt,
            observation,
            event,
        } => {
            let fresh = remember(entry, &mut payments, event)?;
            let seen = Attempt::observed(&observation);
            let changes = match entry.payments.attempts.get(&attempt) {
                Some(a) => {
                    let mut joined = a.clone();
                    joined.join(&seen);
                    joined != *a
                }
                None => true,
            };
            if !changes && !fresh {
                return Err(OpError::Unchanged);
            }
            if observation.status.is_authorised() && entry.status.0 == OrderStatus::Placed {
                status = Some(OrderStatus::Paid);
            }
            payments.attempts.insert(attempt, seen);
        }
        PaymentChange::StartRefund { amount, reason } => {
            // The refund draws on this actor's own capture: the one writer of
            // its refunds, so the check below cannot race another node's.
            let Some((n, a)) = entry
                .payments
                .attempts_of(ctx.actor)
                .find(|(_, a)| a.captured_minor.0 > 0)
            else {
                let holder = entry
                    .payments
                    .attempts
                    .iter()
                    .find(|(_, a)| a.captured_minor.0 > 0)
                    .map(|((actor, _), _)| *actor);
                return Err(match holder {
                    Some(seller) => OpError::NotSeller { order, seller },
                    None => PaymentError::NothingCaptured(order).into(),
                });
            };
            let id = (ctx.actor, n);
            let remaining = a
                .captured_minor
                .0
                .saturating_sub(entry.payments.refunded_of(id));
            let asked = amount.unwrap_or(remaining);
            if asked == 0 || asked > remaining {
                return Err(PaymentError::ExceedsCapture { asked, remaining }.into());
            }
            if entry.payments.refunds.len() >= MAX_REFUNDS {
                return Err(PaymentError::TooManyRefunds(order).into());
            }
            let start = RefundStart {
                attempt: id,
                amount_minor: asked,
                reason,
                created_ms: ctx.wall_ms,
            };
            payments.refunds.insert(
                (ctx.actor, entry.payments.next_refund(ctx.actor)),
                Refund {
                    start: Some(start),
                    status: MaxReg(RefundStatus::Pending),
                    provider_ref: MaxReg(None),
                },
            );
        }
        PaymentChange::ObserveRefund {
            refund,
            status: seen,
            provider_ref,
            event,
        } => {
            let fresh = remember(entry, &mut payments, event)?;
            let r = Refund {
                start: None,
                status: MaxReg(seen),
                provider_ref: MaxReg(provider_ref),
            };
            let changes = match entry.payments.refunds.get(&refund) {
                Some(mine) => {
                    let mut joined = mine.clone();
                    joined.join(&r);
                    joined != *mine
                }
                None => true,
            };
            if !changes && !fresh {
                return Err(OpError::Unchanged);
            }
            payments.refunds.insert(refund, r);
        }
    }
    let hlc = ctx.clock.now(ctx.wall_ms);
    let parts = vec![Part::Order {
        id: order,
        entry: Box::new(OrderEntry::paying(payments, status)),
    }];
    Ok(delta(ctx, hlc, Vec::new(), parts))
}

/// Notes a provider event in `payments` (refusing one merged before);
/// whether it is newly remembered. Past [`MAX_EVENTS`] an event still
/// merges but is not remembered: the merge is idempotent anyway.
fn remember(
    entry: &OrderEntry,
    payments: &mut Payments,
    event: Option<String>,
) -> Result<bool, OpError> {
    let Some(event) = event else { return Ok(false) };
    if entry.payments.events.contains(&event) {
        return Err(PaymentError::EventSeen(event).into());
    }
    if entry.payments.events.len() >= MAX_EVENTS {
        return Ok(false);
    }
    payments.events.insert(event);
    Ok(true)
}
