//! The causal delta log: every delta a replica applied, kept per actor in
//! sequence order, so a peer that reports its version vector can be sent
//! exactly what it lacks.
//!
//! The log is bounded by size: when it outgrows its bound, the oldest deltas
//! (by clock reading) go first, and the replica remembers per actor the
//! highest sequence it no longer holds (its *floor*). A peer whose vector is
//! below a floor cannot be served from the log; it gets a repair snapshot
//! instead (`Replica::repair_for`). Deltas every peer has acknowledged can
//! be dropped early with [`DeltaLog::truncate_acked`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::clock::Hlc;
use crate::context::{Dot, VersionVector};
use crate::ids::Actor;

/// A delta as logged: its dot and reading (for ordering) and its encoded bytes
/// (what goes on the wire and to disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedDelta {
    /// The delta's dot.
    pub dot: Dot,
    /// The delta's clock reading.
    pub hlc: Hlc,
    /// The delta in its envelope.
    pub bytes: Arc<[u8]>,
}

#[derive(Default)]
struct ActorLog {
    /// Every sequence number up to here has left the log (or never entered).
    floor: u64,
    /// Deltas floor+1, floor+2, … in order.
    entries: VecDeque<LoggedDelta>,
}

impl ActorLog {
    fn last_seq(&self) -> u64 {
        self.floor + self.entries.len() as u64
    }
}

/// Why the log cannot serve a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the delta log no longer holds {actor}'s deltas after {peer_has} (it starts after {floor})"
)]
pub struct Truncated {
    /// The actor whose deltas are gone.
    pub actor: Actor,
    /// What the peer has of that actor.
    pub peer_has: u64,
    /// The log's floor for that actor.
    pub floor: u64,
}

/// The bounded delta log.
pub struct DeltaLog {
    actors: BTreeMap<Actor, ActorLog>,
    bytes: usize,
    len: usize,
    max_bytes: usize,
}

impl DeltaLog {
    /// An empty log holding at most `max_bytes` of encoded deltas.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            actors: BTreeMap::new(),
            bytes: 0,
            len: 0,
            max_bytes,
        }
    }

    /// Appends a delta. Deltas of one actor arrive in sequence; should one
    /// arrive after a gap (the replica jumped ahead through a repair), the
    /// actor's log restarts just below it. Returns every delta that left the
    /// log — those the gap made useless and those evicted to stay within the
    /// bound — so the caller deletes them from disk too.
    pub fn push(&mut self, d: LoggedDelta) -> Vec<Dot> {
        let log = self.actors.entry(d.dot.actor).or_default();
        if d.dot.seq <= log.last_seq() {
            return Vec::new();
        }
        let mut dropped = Vec::new();
        if d.dot.seq != log.last_seq() + 1 {
            for e in log.entries.drain(..) {
                self.bytes -= e.bytes.len();
                self.len -= 1;
                dropped.push(e.dot);
            }
            log.floor = d.dot.seq - 1;
        }
        self.bytes += d.bytes.len();
        self.len += 1;
        log.entries.push_back(d);
        dropped.extend(self.enforce_bound());
        dropped
    }

    /// Marks everything up to `seq` of `actor` as not held: used at start-up,
    /// when the stored log begins above zero, and after a repair moved the
    /// replica's vector past what the log holds. Entries at or below `seq`
    /// are dropped; their dots are returned so the caller deletes them from
    /// disk too.
    pub fn raise_floor(&mut self, actor: Actor, seq: u64) -> Vec<Dot> {
        let log = self.actors.entry(actor).or_default();
        let mut dropped = Vec::new();
        if seq <= log.floor {
            return dropped;
        }
        if seq >= log.last_seq() {
            for e in log.entries.drain(..) {
                self.bytes -= e.bytes.len();
                self.len -= 1;
                dropped.push(e.dot);
            }
        } else {
            while log.entries.front().is_some_and(|e| e.dot.seq <= seq) {
                if let Some(e) = log.entries.pop_front() {
                    self.bytes -= e.bytes.len();
                    self.len -= 1;
                    dropped.push(e.dot);
                }
            }
        }
        log.floor = seq;
        dropped
    }

    fn enforce_bound(&mut self) -> Vec<Dot> {
        let mut evicted = Vec::new();
        while self.bytes > self.max_bytes && self.len > 1 {
            let oldest = self
                .actors
                .iter()
                .filter_map(|(a, l)| l.entries.front().map(|e| (e.hlc, *a)))
                .min();
            let Some((_, actor)) = oldest else { break };
            if let Some(log) = self.actors.get_mut(&actor)
                && let Some(e) = log.entries.pop_front()
            {
                log.floor = e.dot.seq;
                self.bytes -= e.bytes.len();
                self.len -= 1;
                evicted.push(e.dot);
            }
        }
        evicted
    }

    /// Drops deltas every peer has: those at or below `acked` (the
    /// element-wise minimum of the peers' vectors). Returns the dropped dots.
    pub fn truncate_acked(&mut self, acked: &VersionVector) -> Vec<Dot> {
        let mut dropped = Vec::new();
        for (actor, log) in self.actors.iter_mut() {
            let upto = acked.get(actor);
            while let Some(front) = log.entries.front() {
                if front.dot.seq > upto {
                    break;
                }
                if let Some(e) = log.entries.pop_front() {
                    log.floor = e.dot.seq;
                    self.bytes -= e.bytes.len();
                    self.len -= 1;
                    dropped.push(e.dot);
                }
            }
        }
        dropped
    }

    /// The deltas a peer with vector `peer` lacks, given that we have applied
    /// everything up to `ours`: in clock order (a causal order), at most
    /// `max_bytes` of them (at least one). `Err` when the log no longer holds
    /// something the peer needs.
    pub fn missing_for(
        &self,
        ours: &VersionVector,
        peer: &VersionVector,
        max_bytes: usize,
    ) -> Result<Vec<LoggedDelta>, Truncated> {
        self.missing_chunk(ours, peer, max_bytes).map(|(v, _)| v)
    }

    /// Like [`DeltaLog::missing_for`], and says whether the size bound cut
    /// the chunk (`true`: more deltas were left out). A chunk that was not
    /// cut held everything the peer lacked at that moment, so a sender can
    /// stop there even while new deltas keep arriving (they go by push).
    pub fn missing_chunk(
        &self,
        ours: &VersionVector,
        peer: &VersionVector,
        max_bytes: usize,
    ) -> Result<(Vec<LoggedDelta>, bool), Truncated> {
        let mut cursors: Vec<(&VecDeque<LoggedDelta>, usize)> = Vec::new();
        for (actor, &have) in &ours.dots {
            let peer_has = peer.get(actor);
            if peer_has >= have {
                continue;
            }
            let log = self.actors.get(actor);
            // Without entries up to `have`, the log cannot serve this actor.
            let floor = match log {
                Some(l) if l.last_seq() >= have => l.floor,
                _ => have,
            };
            if peer_has < floor {
                return Err(Truncated {
                    actor: *actor,
                    peer_has,
                    floor,
                });
            }
            if let Some(l) = log {
                cursors.push((&l.entries, (peer_has - l.floor) as usize));
            }
        }
        // Merge the per-actor runs by clock reading.
        let mut out = Vec::new();
        let mut size = 0usize;
        loop {
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, (q, pos))| q.get(*pos).map(|e| (e.hlc, e.dot, i)))
                .min();
            let Some((_, _, i)) = next else {
                return Ok((out, false));
            };
            let (q, pos) = &mut cursors[i];
            let e = &q[*pos];
            if !out.is_empty() && size + e.bytes.len() > max_bytes {
                return Ok((out, true));
            }
            size += e.bytes.len();
            out.push(e.clone());
            *pos += 1;
        }
    }

    /// The logged delta with this dot, if still held.
    pub fn get(&self, dot: &Dot) -> Option<&LoggedDelta> {
        let log = self.actors.get(&dot.actor)?;
        let idx = dot.seq.checked_sub(log.floor + 1)?;
        log.entries.get(idx as usize)
    }

    /// Number of deltas held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of encoded deltas held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bound the log keeps to, in bytes of encoded deltas.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Per actor, the highest sequence no longer held.
    pub fn floors(&self) -> BTreeMap<Actor, u64> {
        self.actors.iter().map(|(a, l)| (*a, l.floor)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn actor(n: &str) -> Actor {
        Actor::first(NodeId::new(n).unwrap())
    }

    fn ld(a: &str, seq: u64, ms: u64, size: usize) -> LoggedDelta {
        LoggedDelta {
            dot: Dot::new(actor(a), seq),
            hlc: Hlc::from_ms(ms),
            bytes: vec![0u8; size].into(),
        }
    }

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (a, s) in pairs {
            v.dots.insert(actor(a), *s);
        }
        v
    }

    #[test]
    fn serves_what_the_peer_lacks_in_clock_order_and_in_chunks() {
        let mut log = DeltaLog::new(1 << 20);
        log.push(ld("a", 1, 10, 10));
        log.push(ld("b", 1, 5, 10));
        log.push(ld("a", 2, 20, 10));
        let ours = vv(&[("a", 2), ("b", 1)]);
        let got = log.missing_for(&ours, &vv(&[("a", 1)]), 1000).unwrap();
        let dots: Vec<_> = got
            .iter()
            .map(|d| (d.dot.actor.to_string(), d.dot.seq))
            .collect();
        assert_eq!(dots, vec![("b".to_string(), 1), ("a".to_string(), 2)]);
        assert_eq!(log.missing_for(&ours, &vv(&[]), 15).unwrap().len(), 1);
        assert!(log.missing_for(&ours, &ours, 1000).unwrap().is_empty());
    }

    #[test]
    fn bound_evicts_oldest_and_reports_truncation() {
        let mut log = DeltaLog::new(25);
        log.push(ld("a", 1, 1, 10));
        log.push(ld("a", 2, 2, 10));
        let evicted = log.push(ld("a", 3, 3, 10));
        assert_eq!(evicted, vec![Dot::new(actor("a"), 1)]);
        let ours = vv(&[("a", 3)]);
        assert!(log.missing_for(&ours, &vv(&[]), 100).is_err());
        assert_eq!(
            log.missing_for(&ours, &vv(&[("a", 1)]), 100).unwrap().len(),
            2
        );
    }

    #[test]
    fn truncate_acked_drops_only_what_everyone_has() {
        let mut log = DeltaLog::new(1 << 20);
        for s in 1..=5 {
            log.push(ld("a", s, s, 10));
        }
        let dropped = log.truncate_acked(&vv(&[("a", 3)]));
        assert_eq!(dropped.len(), 3);
        assert_eq!(log.len(), 2);
        assert!(log.get(&Dot::new(actor("a"), 4)).is_some());
        assert!(log.get(&Dot::new(actor("a"), 3)).is_none());
    }

    #[test]
    fn every_delta_that_leaves_the_log_is_reported() {
        let mut log = DeltaLog::new(1 << 20);
        for s in 1..=3 {
            log.push(ld("a", s, s, 10));
        }
        // A gap (a repair moved the vector on): the old run leaves the log.
        let dropped = log.push(ld("a", 7, 7, 10));
        assert_eq!(dropped.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(log.len(), 1);
        log.push(ld("a", 8, 8, 10));
        let dropped = log.raise_floor(actor("a"), 7);
        assert_eq!(dropped.iter().map(|d| d.seq).collect::<Vec<_>>(), [7]);
        let dropped = log.raise_floor(actor("a"), 20);
        assert_eq!(dropped.iter().map(|d| d.seq).collect::<Vec<_>>(), [8]);
        assert!(log.is_empty());
        assert_eq!(log.bytes(), 0);
    }
}
