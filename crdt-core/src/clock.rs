//! The hybrid logical clock (Kulkarni et al., 2014) and the stamps that order
//! last-writer-wins registers.
//!
//! The clock never reads the wall clock itself: every call is handed the
//! current wall time in milliseconds, so the crate stays deterministic.

use serde::{Deserialize, Serialize};

use crate::ids::Actor;

/// A hybrid logical clock reading: wall milliseconds plus a logical counter
/// that orders events within one millisecond (and while the wall clock lags
/// behind a reading already seen).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    /// Events within the same millisecond.
    pub logical: u32,
}

impl Hlc {
    /// A reading at a wall time with no logical part.
    pub fn from_ms(ms: u64) -> Self {
        Self { ms, logical: 0 }
    }

    /// The smallest reading strictly greater than `self`.
    pub fn tick(self) -> Self {
        match self.logical.checked_add(1) {
            Some(logical) => Self {
                ms: self.ms,
                logical,
            },
            None => Self {
                ms: self.ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

/// Why a remote reading was not taken into the local clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The remote reading is further ahead of our wall clock than we accept.
    #[error(
        "remote clock reading {remote_ms} ms is {ahead_ms} ms ahead of local wall time (limit {limit_ms} ms)"
    )]
    TooFarAhead {
        /// The remote reading's milliseconds.
        remote_ms: u64,
        /// How far ahead of our wall clock it is.
        ahead_ms: u64,
        /// The drift we accept.
        limit_ms: u64,
    },
}

/// A node's hybrid logical clock.
///
/// Readings are strictly increasing. A reading received from a peer is taken
/// in only when it is at most `max_drift_ms` ahead of our wall clock, so one
/// peer with a clock set to next year cannot drag every node's clock along;
/// such readings are counted and the data they stamp still merges.
#[derive(Clone, Debug)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
    rejected: u64,
}

impl HlcClock {
    /// A clock that accepts peer readings up to `max_drift_ms` ahead.
    pub fn new(max_drift_ms: u64) -> Self {
        Self {
            last: Hlc::default(),
            max_drift_ms,
            rejected: 0,
        }
    }

    /// A new reading for a local event at wall time `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let candidate = Hlc::from_ms(wall_ms);
        self.last = if candidate > self.last {
            candidate
        } else {
            self.last.tick()
        };
        self.last
    }

    /// A new reading for a local event that must also be above `floor`
    /// (the highest stamp already seen on the key being written).
    pub fn now_above(&mut self, wall_ms: u64, floor: Hlc) -> Hlc {
        let t = self.now(wall_ms);
        if t > floor {
            t
        } else {
            self.last = floor.tick();
            self.last
        }
    }

    /// Takes a reading seen on a peer's data into account.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), ClockError> {
        let ahead_ms = remote.ms.saturating_sub(wall_ms);
        if ahead_ms > self.max_drift_ms {
            self.rejected += 1;
            return Err(ClockError::TooFarAhead {
                remote_ms: remote.ms,
                ahead_ms,
                limit_ms: self.max_drift_ms,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }

    /// The last reading handed out or taken in.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// How many peer readings were too far ahead to take in.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}

/// The order of last-writer-wins registers: a clock reading, then the actor
/// that wrote it, so two writes never tie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// When the write happened, by the writer's hybrid logical clock.
    pub hlc: Hlc,
    /// Who wrote it.
    pub actor: Actor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_strictly_increase_even_when_the_wall_clock_goes_back() {
        let mut c = HlcClock::new(1_000);
        let a = c.now(100);
        let b = c.now(100);
        let d = c.now(50);
        assert!(a < b && b < d);
        assert_eq!(d.ms, 100);
    }

    #[test]
    fn now_above_beats_the_floor() {
        let mut c = HlcClock::new(1_000);
        let floor = Hlc {
            ms: 10_000,
            logical: 3,
        };
        let t = c.now_above(5, floor);
        assert!(t > floor);
        assert!(c.now(5) > t);
    }

    #[test]
    fn far_future_readings_are_refused_and_counted() {
        let mut c = HlcClock::new(1_000);
        assert!(c.observe(Hlc::from_ms(1_500), 1_000).is_ok());
        assert!(c.observe(Hlc::from_ms(5_000), 1_000).is_err());
        assert_eq!(c.rejected(), 1);
        assert_eq!(c.last(), Hlc::from_ms(1_500));
    }

    #[test]
    fn tick_carries_into_milliseconds() {
        let h = Hlc {
            ms: 1,
            logical: u32::MAX,
        };
        assert_eq!(h.tick(), Hlc { ms: 2, logical: 0 });
    }
}
