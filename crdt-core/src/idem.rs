//! Idempotency records: the first final answer to a write sent with an
//! `Idempotency-Key`, kept so that a retry — on this node or, once
//! replication has caught up, on any other — gets that answer again instead
//! of applying the write twice.
//!
//! Lattice: an entry is "no record" (bottom) or one record; two records for
//! one key join to the *first* by `(hlc, writer)`, a total order, so the join
//! is commutative, associative and idempotent. Two records for one key only
//! exist when two nodes both answered the key while cut off from each other;
//! both answers were sent, and keeping the earlier one is as good as any
//! deterministic choice.
//!
//! Expiry: a record is kept for a window (24 h by default) measured on the
//! hybrid clock from the record's stamp. [`IdemEntry::expired`] is the one
//! rule every node applies: a node drops its expired records in a local
//! sweep, and a join treats an expired record as absent, so a repair from a
//! node that has not swept yet cannot bring one back. Nodes whose clocks
//! differ by δ disagree about a record for at most δ plus one sweep period
//! around its deadline.

use serde::{Deserialize, Serialize};

use crate::clock::Hlc;
use crate::ids::Actor;

/// The longest answer body a record keeps; a longer one is recorded without
/// its body (see [`IdemRecord::body`]).
pub const MAX_RECORDED_BODY: usize = 64 * 1024;

/// The first final answer to one idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdemRecord {
    /// When it was recorded (the writer's clock): orders records and ages
    /// them out.
    pub hlc: Hlc,
    /// The node that answered.
    pub writer: Actor,
    /// A hash of the request (method, path, body) the key was first used
    /// with: the same key with another request is refused.
    pub fingerprint: [u8; 16],
    /// The HTTP status of the answer.
    pub status: u16,
    /// The answer's `Location` header, if it had one.
    pub location: Option<String>,
    /// The answer's body (JSON), or `None` when it was longer than
    /// [`MAX_RECORDED_BODY`]; never card data or secrets, which no answer
    /// carries.
    pub body: Option<Vec<u8>>,
}

/// One key's entry: bottom, or the first record.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdemEntry(pub Option<IdemRecord>);

impl IdemEntry {
    /// The lattice join: the first record by `(hlc, writer)`.
    pub fn join(&mut self, o: &Self) {
        match (&self.0, &o.0) {
            (_, None) => {}
            (None, Some(_)) => self.0 = o.0.clone(),
            (Some(a), Some(b)) => {
                // Ordered by (hlc, writer) first (the field order); the
                // rest only keeps the join total for bytes from outside.
                if b < a {
                    self.0 = o.0.clone();
                }
            }
        }
    }

    /// Whether this entry is the lattice bottom.
    pub fn is_bottom(&self) -> bool {
        self.0.is_none()
    }

    /// Whether the record is past its window at wall time `now_ms`.
    pub fn expired(&self, now_ms: u64, window_ms: u64) -> bool {
        self.0
            .as_ref()
            .is_some_and(|r| r.hlc.ms.saturating_add(window_ms) < now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn rec(ms: u64, node: &str, status: u16) -> IdemEntry {
        IdemEntry(Some(IdemRecord {
            hlc: Hlc::from_ms(ms),
            writer: Actor::first(NodeId::new(node).expect("node id")),
            fingerprint: [0; 16],
            status,
            location: None,
            body: Some(b"{}".to_vec()),
        }))
    }

    #[test]
    fn the_first_record_wins_in_any_order() {
        let a = rec(10, "n2", 201);
        let b = rec(10, "n1", 200);
        let c = rec(11, "n0", 202);
        let mut x = a.clone();
        x.join(&c);
        x.join(&b);
        let mut y = c.clone();
        y.join(&b);
        y.join(&a);
        assert_eq!(x, y);
        assert_eq!(x, b);
        let mut z = IdemEntry::default();
        z.join(&a);
        assert_eq!(z, a);
        z.join(&IdemEntry::default());
        assert_eq!(z, a);
    }

    #[test]
    fn expiry_is_measured_from_the_stamp() {
        let a = rec(1_000, "n1", 201);
        assert!(!a.expired(1_500, 500));
        assert!(a.expired(1_501, 500));
        assert!(!IdemEntry::default().expired(u64::MAX, 0));
    }
}
