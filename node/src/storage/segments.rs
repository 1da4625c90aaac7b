//! The delta log's layout on disk: one *segment* per group commit holding
//! every delta that round logged, and the bookkeeping that deletes a segment
//! when the last of its deltas leaves the log.
//!
//! A segment value is a sequence of (u32 little-endian length, delta
//! envelope). One sled insert per round instead of one per delta: measured, a
//! quarter of a durable write's cost was sled's per-insert work.

use std::sync::Arc;

use crdt_core::Dot;

use super::{LOG, SEGMENT};

pub(super) fn log_key(dot: &Dot) -> Vec<u8> {
    let node = dot.actor.node.as_str().as_bytes();
    let mut k = Vec::with_capacity(2 + node.len() + 12);
    k.push(LOG);
    k.push(node.len() as u8);
    k.extend_from_slice(node);
    k.extend_from_slice(&dot.actor.inc.to_be_bytes());
    k.extend_from_slice(&dot.seq.to_be_bytes());
    k
}

pub(super) fn segment_key(segment: u64) -> [u8; 9] {
    let mut k = [SEGMENT; 9];
    k[1..].copy_from_slice(&segment.to_be_bytes());
    k
}

/// Appends one delta's envelope to a segment value.
pub(super) fn push_to_segment(segment: &mut Vec<u8>, delta: &[u8]) {
    segment.extend_from_slice(&(delta.len() as u32).to_le_bytes());
    segment.extend_from_slice(delta);
}

/// The deltas of a segment value, or `None` when it is cut short.
pub(super) fn segment_deltas(mut value: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (len, rest) = value.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (delta, rest) = rest.split_at(len);
        out.push(delta);
        value = rest;
    }
    Some(out)
}

/// Where each logged delta is stored, so that dropping the last delta of a
/// segment deletes the segment. Owned by the writing stage.
#[derive(Default)]
pub(super) struct LogPlaces {
    /// Dot → its segment (`None`: a key of the older one-key-per-delta layout).
    pub(super) place: std::collections::HashMap<Dot, Option<u64>>,
    /// Segment → how many of its deltas are still in the log.
    pub(super) live: std::collections::HashMap<u64, u32>,
    /// The number the next segment takes.
    pub(super) next: u64,
}

impl LogPlaces {
    /// Writes into `batch` the removal of `dropped` (and of each segment
    /// they empty) and one new segment holding `logged`.
    pub(super) fn apply(
        &mut self,
        batch: &mut sled::Batch,
        logged: Vec<(Dot, Arc<[u8]>)>,
        dropped: Vec<Dot>,
    ) {
        let mut logged = logged;
        if !dropped.is_empty() {
            let mut dropped: std::collections::HashSet<Dot> = dropped.into_iter().collect();
            // Logged and dropped within this round: never written.
            logged.retain(|(d, _)| !dropped.remove(d));
            for d in dropped {
                match self.place.remove(&d) {
                    Some(None) => batch.remove(log_key(&d)),
                    Some(Some(seg)) => {
                        if let Some(n) = self.live.get_mut(&seg) {
                            *n -= 1;
                            if *n == 0 {
                                self.live.remove(&seg);
                                batch.remove(&segment_key(seg)[..]);
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        if logged.is_empty() {
            return;
        }
        let seg = self.next;
        self.next += 1;
        let mut value = Vec::with_capacity(logged.iter().map(|(_, b)| b.len() + 4).sum());
        for (d, bytes) in &logged {
            push_to_segment(&mut value, bytes);
            self.place.insert(*d, Some(seg));
        }
        self.live.insert(seg, logged.len() as u32);
        batch.insert(&segment_key(seg)[..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::{Actor, NodeId};

    #[test]
    fn log_keys_sort_by_actor_then_sequence() {
        let a = Actor {
            node: NodeId::new("n1").expect("id"),
            inc: 0,
        };
        assert!(log_key(&Dot::new(a, 2)) < log_key(&Dot::new(a, 10)));
    }

    #[test]
    fn segments_round_trip_and_refuse_a_cut_short_value() {
        let mut v = Vec::new();
        push_to_segment(&mut v, b"first");
        push_to_segment(&mut v, b"");
        push_to_segment(&mut v, b"third delta");
        let got = segment_deltas(&v).expect("whole segment");
        assert_eq!(got, vec![&b"first"[..], b"", b"third delta"]);
        for cut in 1..v.len() {
            let parsed = segment_deltas(&v[..cut]);
            // A prefix parses only if it ends exactly between two deltas.
            if let Some(p) = parsed {
                assert!(p.len() < 3, "a prefix of {cut} bytes parsed as the whole");
            }
        }
        assert_eq!(segment_deltas(&[9, 0, 0, 0, 1]), None);
    }
}
