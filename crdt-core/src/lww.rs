//! The last-writer-wins register, ordered by (hybrid logical clock, actor).
//!
//! Lattice: the register with the greater [`Stamp`] wins; two registers with
//! equal stamps hold equal values (a stamp names one write), and should bytes
//! from outside ever disagree, the greater value wins so that the join stays
//! commutative. The join is therefore a max over a total order: commutative,
//! associative and idempotent.
//!
//! The clock-skew rule: a node writing a register stamps it above *both* its
//! own clock and the register's current stamp ([`Lww::set`]), so a later
//! write on a node whose wall clock runs behind never loses to an earlier
//! one it has seen (Garage's clock-skew bug came from stamping with the raw
//! clock).

use serde::{Deserialize, Serialize};

use crate::clock::{Hlc, HlcClock, Stamp};
use crate::ids::Actor;

/// A last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lww<V> {
    /// The current value.
    pub value: V,
    /// Who wrote it, and when.
    pub stamp: Stamp,
}

impl<V: Ord + Clone> Lww<V> {
    /// A register holding `value`, written with `stamp`.
    pub fn new(value: V, stamp: Stamp) -> Self {
        Self { value, stamp }
    }

    /// The lattice join.
    pub fn join(&mut self, other: &Self) {
        if (other.stamp, &other.value) > (self.stamp, &self.value) {
            *self = other.clone();
        }
    }

    /// Writes `value` at `actor`, stamped above both the clock and the
    /// register's current stamp.
    pub fn set(&mut self, value: V, actor: Actor, clock: &mut HlcClock, wall_ms: u64) {
        let hlc = clock.now_above(wall_ms, self.stamp.hlc);
        self.value = value;
        self.stamp = Stamp { hlc, actor };
    }

    /// The reading a new write to this register must exceed.
    pub fn floor(&self) -> Hlc {
        self.stamp.hlc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn a_skewed_clock_cannot_make_a_later_write_lose() {
        let fast = Actor::first(NodeId::new("fast").unwrap());
        let slow = Actor::first(NodeId::new("slow").unwrap());
        let mut fast_clock = HlcClock::new(u64::MAX);
        let mut slow_clock = HlcClock::new(u64::MAX);
        // The fast node's clock is an hour ahead.
        let mut r = Lww::new(
            1u32,
            Stamp {
                hlc: Hlc::default(),
                actor: fast,
            },
        );
        r.set(2, fast, &mut fast_clock, 3_600_000 + 1_000);
        // The slow node sees that write, then writes after it.
        let mut seen = r.clone();
        seen.set(3, slow, &mut slow_clock, 1_001);
        r.join(&seen);
        assert_eq!(r.value, 3);
    }
}
