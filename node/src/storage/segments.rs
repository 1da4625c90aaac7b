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
    use super::super::{LOG, SEGMENT, open_replica};
    use super::*;
    use crdt_core::{Actor, NodeId, Replica};
    use std::sync::atomic::Ordering;

    fn product_op(i: u128) -> crdt_core::Op {
        use crdt_core::catalog::NewProduct;
        use crdt_core::money::{Currency, Money};
        crdt_core::Op::CreateProduct {
            id: crdt_core::ProductId(uuid::Uuid::from_u128(i + 1)),
            product: NewProduct {
                sku: format!("SEG-{i}"),
                name: format!("Segment product {i}"),
                description: "Written to test log segments.".into(),
                price: Money {
                    minor: 1_000 + i as u64,
                    currency: Currency::new("USD").expect("currency"),
                },
                category: "test".into(),
                tags: vec![],
                attributes: Default::default(),
                embedding: None,
            },
            initial_stock: 3,
        }
    }

    /// Real sled files: many group-commit rounds, a log bound small enough
    /// that old deltas are evicted, a restart. The log comes back exactly,
    /// and no segment outlives its deltas.
    #[test]
    fn the_delta_log_survives_a_restart_and_evicted_segments_are_deleted() {
        let dir = std::env::temp_dir().join(format!("concord-seg-{}", uuid::Uuid::new_v4()));
        let id = NodeId::new("n1").expect("id");
        let cfg = |a| {
            let mut c = crdt_core::ReplicaConfig::new(a);
            c.log_max_bytes = 8 * 1024;
            c
        };
        let (store, mut r, fresh) = open_replica(&dir, id, cfg).expect("open");
        assert!(fresh);
        let flusher = store.start_flusher(|_| {});
        let mut i = 0u128;
        for _round in 0..40 {
            let mut ticket = 0;
            for _ in 0..5 {
                let a = r.apply_local(product_op(i), 1_000 + i as u64).expect("op");
                ticket = store
                    .stage(&r, &a.changed, [&a.logged], &a.evicted)
                    .expect("stage");
                i += 1;
            }
            while store.durable_ticket.load(Ordering::Acquire) < ticket {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        flusher.stop();
        let dots = |r: &Replica| {
            let floor = r.log().floors().get(&r.actor()).copied().unwrap_or(0);
            (floor + 1..=r.version_vector().get(&r.actor())).collect::<Vec<u64>>()
        };
        let (held, floor) = (
            dots(&r),
            r.log().floors().get(&r.actor()).copied().unwrap_or(0),
        );
        assert!(
            floor > 0,
            "the bound evicted nothing: the test proves nothing"
        );
        assert_eq!(held.len(), r.log().len());
        // Every segment still on disk holds at least one delta of the log.
        let mut segments = 0;
        for kv in store.db.scan_prefix([SEGMENT]) {
            let (k, v) = kv.expect("scan");
            segments += 1;
            let live = segment_deltas(&v)
                .expect("segment")
                .into_iter()
                .map(|b| crdt_core::Delta::decode(b).expect("delta").dot.seq)
                .filter(|seq| *seq > floor)
                .count();
            assert!(live > 0, "segment {k:?} outlived its deltas");
        }
        assert!(
            segments < held.len(),
            "one segment per round, not per delta"
        );
        assert!(store.db.scan_prefix([LOG]).next().is_none());
        let digest = r.digest();
        drop((store, r));

        let (store, r2, fresh) = open_replica(&dir, id, cfg).expect("reopen");
        assert!(!fresh);
        assert_eq!(r2.digest(), digest);
        assert_eq!(dots(&r2), held);
        for seq in &held {
            let dot = Dot::new(r2.actor(), *seq);
            assert!(r2.log().get(&dot).is_some(), "delta {seq} lost");
        }
        drop((store, r2));

        // Reopened with a smaller bound: what no longer fits is deleted
        // from disk by the first group commit, not carried to the next start.
        let small = |a| {
            let mut c = crdt_core::ReplicaConfig::new(a);
            c.log_max_bytes = 2 * 1024;
            c
        };
        let (store, r3, _) = open_replica(&dir, id, small).expect("reopen smaller");
        assert!(
            r3.log().len() < held.len(),
            "the smaller bound evicted nothing"
        );
        let flusher = store.start_flusher(|_| {});
        flusher.stop();
        let floor3 = r3.log().floors().get(&r3.actor()).copied().unwrap_or(0);
        let mut live_on_disk = 0;
        for kv in store.db.scan_prefix([SEGMENT]) {
            let (k, v) = kv.expect("scan");
            let live = segment_deltas(&v)
                .expect("segment")
                .into_iter()
                .filter(|b| crdt_core::Delta::decode(b).expect("delta").dot.seq > floor3)
                .count();
            assert!(
                live > 0,
                "segment {k:?} outlived its deltas after the restart"
            );
            live_on_disk += live;
        }
        assert_eq!(live_on_disk, r3.log().len());
        drop(store);
        let (_, r4, _) = open_replica(&dir, id, small).expect("reopen again");
        assert_eq!(r4.log().len(), r3.log().len());
        let _ = std::fs::remove_dir_all(&dir);
    }

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
