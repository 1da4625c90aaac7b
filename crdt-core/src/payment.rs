//! An order's payments: the attempts to charge it, the refunds of what was
//! captured, and the provider events already merged.
//!
//! Only the actor that sold an order talks to the payment provider for it,
//! so every attempt and every refund is created by one writer, numbered by
//! it, and keyed by (that actor, number): two sales of one checkout made on
//! two sides of a partition never name the same attempt. What happens to an
//! attempt afterwards — the provider's answers, and webhooks that may land
//! on any node — is merged as observations into max-registers, so a
//! duplicate or late observation changes nothing.
//!
//! Lattice: maps join per key; an attempt's fixed part and a refund's fixed
//! part join by `max` (one writer makes each, so `max` only keeps the join
//! total); status, captured amount and provider reference are
//! max-registers; the event set grows by union. A product of semilattices.
//!
//! No register moves backwards: a declined attempt ends as `failed` and the
//! next try is a new attempt, where Stripe would move one intent back to
//! `requires_payment_method`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::Actor;
use crate::money::Currency;
use crate::status::MaxReg;

/// Most provider event ids kept per order (beyond it, events still merge —
/// merging is idempotent — but are no longer remembered by id).
pub const MAX_EVENTS: usize = 64;
/// Most attempts one actor makes on one order.
pub const MAX_ATTEMPTS: u32 = 20;
/// Most refunds of one order.
pub const MAX_REFUNDS: usize = 50;

/// Where a payment attempt is, in the provider's terms. The declaration
/// order is the lattice order (a verdict above the wait for one): the ends (`failed`, `canceled`, `succeeded`)
/// come last, and money that moved (`succeeded`) beats everything, so a
/// capture is never forgotten whatever arrives after it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum PaymentStatus {
    /// Created; no payment method confirmed yet.
    #[default]
    RequiresPaymentMethod,
    /// Started and sent to the provider; no verdict yet. (Stripe passes
    /// through `processing` after `requires_action` too; here that report
    /// carries no news, so it sits below the states that do.)
    Processing,
    /// The customer must authenticate (3-D Secure).
    RequiresAction,
    /// Authorised; the seller captures when it ships.
    RequiresCapture,
    /// Declined or refused: the attempt is over.
    Failed,
    /// Cancelled (an authorisation released): the attempt is over.
    Canceled,
    /// Captured: the money moved.
    Succeeded,
}

impl PaymentStatus {
    /// The snake-case name the API and Stripe use.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::RequiresPaymentMethod => "requires_payment_method",
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Processing => "processing",
            PaymentStatus::RequiresCapture => "requires_capture",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Succeeded => "succeeded",
        }
    }

    /// The status named `s` (Stripe's names).
    pub fn parse(s: &str) -> Option<Self> {
        use PaymentStatus::*;
        [
            RequiresPaymentMethod,
            Processing,
            RequiresAction,
            RequiresCapture,
            Failed,
            Canceled,
            Succeeded,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the attempt is over without moving money.
    pub fn is_dead(self) -> bool {
        matches!(self, PaymentStatus::Failed | PaymentStatus::Canceled)
    }

    /// Whether the provider has authorised (or captured) the amount: what
    /// makes an order paid.
    pub fn is_authorised(self) -> bool {
        matches!(
            self,
            PaymentStatus::RequiresCapture | PaymentStatus::Succeeded
        )
    }
}

/// When an authorised amount is captured.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum CaptureMode {
    /// At once: the confirmation captures.
    #[default]
    Immediate,
    /// When the seller ships the order.
    OnShip,
}

/// Names one attempt: the actor that made it and its number there.
pub type AttemptId = (Actor, u32);
/// Names one refund: the actor that made it and its number there.
pub type RefundId = (Actor, u32);

/// What an attempt is, fixed when it starts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptStart {
    /// The provider's name (`test`, `stripe`).
    pub provider: String,
    /// The amount asked for, in minor units of `currency`.
    pub amount_minor: u64,
    /// The order's currency.
    pub currency: Currency,
    /// When the amount is captured.
    pub capture: CaptureMode,
    /// What pays, as shown to people: a card's brand and last four digits,
    /// or a provider's payment-method id — never a card number.
    pub method: String,
    /// When it started (wall milliseconds at the seller).
    pub created_ms: u64,
}

/// One attempt to charge an order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attempt {
    /// Fixed at the start; `None` in an observation that arrives alone.
    pub start: Option<AttemptStart>,
    /// Where the attempt is.
    pub status: MaxReg<PaymentStatus>,
    /// The provider's id of the charge (a PaymentIntent id).
    pub provider_ref: MaxReg<Option<String>>,
    /// Minor units captured.
    pub captured_minor: MaxReg<u64>,
    /// Why it failed, in the provider's words (a decline code).
    pub failure: MaxReg<Option<String>>,
}

impl Attempt {
    /// A new attempt, sent to the provider.
    pub fn started(start: AttemptStart) -> Self {
        Self {
            start: Some(start),
            status: MaxReg(PaymentStatus::Processing),
            provider_ref: MaxReg(None),
            captured_minor: MaxReg(0),
            failure: MaxReg(None),
        }
    }

    /// An observation of an attempt's progress.
    pub fn observed(o: &Observation) -> Self {
        Self {
            start: None,
            status: MaxReg(o.status),
            provider_ref: MaxReg(o.provider_ref.clone()),
            captured_minor: MaxReg(o.captured_minor),
            failure: MaxReg(o.failure.clone()),
        }
    }

    /// The lattice join.
    pub fn join(&mut self, o: &Self) {
        if o.start > self.start {
            self.start = o.start.clone();
        }
        self.status.join(&o.status);
        self.provider_ref.join(&o.provider_ref);
        self.captured_minor.join(&o.captured_minor);
        self.failure.join(&o.failure);
    }
}

/// What the provider said of an attempt (an answer or a webhook).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The status it reported.
    pub status: PaymentStatus,
    /// Its id of the charge.
    pub provider_ref: Option<String>,
    /// Minor units captured so far.
    pub captured_minor: u64,
    /// A decline code.
    pub failure: Option<String>,
}

/// Where a refund is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum RefundStatus {
    /// Reserved against the capture and sent to the provider.
    #[default]
    Pending,
    /// The provider refused it: the amount is free again.
    Failed,
    /// The money went back.
    Succeeded,
}

impl RefundStatus {
    /// The snake-case name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Failed => "failed",
            RefundStatus::Succeeded => "succeeded",
        }
    }
}

/// What a refund is, fixed when it is made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RefundStart {
    /// The attempt whose capture it returns.
    pub attempt: AttemptId,
    /// Minor units.
    pub amount_minor: u64,
    /// Why (free text from the admin, or what the system did).
    pub reason: String,
    /// When it was made (wall milliseconds at the seller).
    pub created_ms: u64,
}

/// One refund.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Refund {
    /// Fixed when made; `None` in an observation that arrives alone.
    pub start: Option<RefundStart>,
    /// Where it is.
    pub status: MaxReg<RefundStatus>,
    /// The provider's id of the refund.
    pub provider_ref: MaxReg<Option<String>>,
}

impl Refund {
    /// The lattice join.
    pub fn join(&mut self, o: &Self) {
        if o.start > self.start {
            self.start = o.start.clone();
        }
        self.status.join(&o.status);
        self.provider_ref.join(&o.provider_ref);
    }
}

/// An order's payments.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Payments {
    /// Every attempt, by (actor, number).
    pub attempts: BTreeMap<AttemptId, Attempt>,
    /// Every refund, by (actor, number).
    pub refunds: BTreeMap<RefundId, Refund>,
    /// Provider event ids already merged (at most [`MAX_EVENTS`]).
    pub events: BTreeSet<String>,
}

impl Payments {
    /// The lattice join.
    pub fn join(&mut self, o: &Self) {
        for (id, a) in &o.attempts {
            match self.attempts.get_mut(id) {
                Some(mine) => mine.join(a),
                None => {
                    self.attempts.insert(*id, a.clone());
                }
            }
        }
        for (id, r) in &o.refunds {
            match self.refunds.get_mut(id) {
                Some(mine) => mine.join(r),
                None => {
                    self.refunds.insert(*id, r.clone());
                }
            }
        }
        self.events.extend(o.events.iter().cloned());
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.refunds.is_empty() && self.events.is_empty()
    }

    /// `actor`'s attempts, oldest first.
    pub fn attempts_of(&self, actor: Actor) -> impl Iterator<Item = (u32, &Attempt)> + '_ {
        self.attempts
            .range((actor, 0)..=(actor, u32::MAX))
            .map(|((_, n), a)| (*n, a))
    }

    /// `actor`'s newest attempt, if it is not over without moving money:
    /// the one a new attempt would compete with.
    pub fn live_attempt(&self, actor: Actor) -> Option<(u32, &Attempt)> {
        self.attempts_of(actor)
            .last()
            .filter(|(_, a)| !a.status.0.is_dead())
    }

    /// The attempt shown as the order's payment: the newest by start time
    /// (then id).
    pub fn current(&self) -> Option<(&AttemptId, &Attempt)> {
        self.attempts
            .iter()
            .max_by_key(|(id, a)| (a.start.as_ref().map(|s| s.created_ms), **id))
    }

    /// Minor units refunded or reserved for refunds (pending and succeeded)
    /// of `attempt`'s capture.
    pub fn refunded_of(&self, attempt: AttemptId) -> u64 {
        self.refunds
            .values()
            .filter(|r| r.status.0 != RefundStatus::Failed)
            .filter_map(|r| r.start.as_ref())
            .filter(|s| s.attempt == attempt)
            .map(|s| s.amount_minor)
            .sum()
    }

    /// Minor units captured, over every attempt.
    pub fn captured(&self) -> u64 {
        self.attempts.values().map(|a| a.captured_minor.0).sum()
    }

    /// Minor units refunded (succeeded only), over every refund.
    pub fn refunded(&self) -> u64 {
        self.refunds
            .values()
            .filter(|r| r.status.0 == RefundStatus::Succeeded)
            .filter_map(|r| r.start.as_ref())
            .map(|s| s.amount_minor)
            .sum()
    }

    /// The next free number for an attempt by `actor`.
    pub fn next_attempt(&self, actor: Actor) -> u32 {
        self.attempts_of(actor).last().map_or(1, |(n, _)| n + 1)
    }

    /// The next free number for a refund by `actor`.
    pub fn next_refund(&self, actor: Actor) -> u32 {
        self.refunds
            .range((actor, 0)..=(actor, u32::MAX))
            .last()
            .map_or(1, |((_, n), _)| n + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn actor(n: &str) -> Actor {
        Actor::first(NodeId::new(n).expect("node id"))
    }

    fn start(amount: u64) -> AttemptStart {
        AttemptStart {
            provider: "test".into(),
            amount_minor: amount,
            currency: Currency::new("USD").expect("currency"),
            capture: CaptureMode::Immediate,
            method: "visa 4242".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn a_late_observation_never_moves_an_attempt_back() {
        let mut p = Payments::default();
        p.attempts
            .insert((actor("n1"), 1), Attempt::started(start(500)));
        let done = Observation {
            status: PaymentStatus::Succeeded,
            provider_ref: Some("pi_1".into()),
            captured_minor: 500,
            failure: None,
        };
        let mut o = Payments::default();
        o.attempts
            .insert((actor("n1"), 1), Attempt::observed(&done));
        p.join(&o);
        let stale = Observation {
            status: PaymentStatus::RequiresCapture,
            provider_ref: Some("pi_1".into()),
            ..Observation::default()
        };
        let mut s = Payments::default();
        s.attempts
            .insert((actor("n1"), 1), Attempt::observed(&stale));
        p.join(&s);
        let a = &p.attempts[&(actor("n1"), 1)];
        assert_eq!(a.status.0, PaymentStatus::Succeeded);
        assert_eq!(a.captured_minor.0, 500);
        assert_eq!(p.captured(), 500);
        assert!(a.start.is_some());
    }

    #[test]
    fn a_failed_attempt_leaves_room_for_the_next() {
        let n1 = actor("n1");
        let mut p = Payments::default();
        p.attempts.insert((n1, 1), Attempt::started(start(500)));
        assert_eq!(p.live_attempt(n1).map(|(n, _)| n), Some(1));
        p.attempts.get_mut(&(n1, 1)).expect("attempt").status = MaxReg(PaymentStatus::Failed);
        assert!(p.live_attempt(n1).is_none());
        assert_eq!(p.next_attempt(n1), 2);
        assert_eq!(p.next_attempt(actor("n2")), 1);
    }

    #[test]
    fn failed_refunds_free_their_amount() {
        let n1 = actor("n1");
        let mut p = Payments::default();
        for (n, amount, status) in [
            (1, 100, RefundStatus::Succeeded),
            (2, 50, RefundStatus::Failed),
            (3, 30, RefundStatus::Pending),
        ] {
            p.refunds.insert(
                (n1, n),
                Refund {
                    start: Some(RefundStart {
                        attempt: (n1, 1),
                        amount_minor: amount,
                        reason: "r".into(),
                        created_ms: 1,
                    }),
                    status: MaxReg(status),
                    provider_ref: MaxReg(None),
                },
            );
        }
        assert_eq!(p.refunded_of((n1, 1)), 130);
        assert_eq!(p.refunded(), 100);
        assert_eq!(p.next_refund(n1), 4);
    }
}
