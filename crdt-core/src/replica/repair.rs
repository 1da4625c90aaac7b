//! Repairs: joining a peer's full-state snapshot of the buckets where two
//! digest trees differ — soundly, while both replicas keep taking writes.
//!
//! A repair is a conversation: the receiver reports its tree hashes, the
//! sender descends where they differ and sends the differing buckets whole,
//! with the contexts it took them under. Two things make the result sound
//! although deltas keep arriving on both sides meanwhile:
//!
//! - **A base.** [`Replica::begin_repair`] freezes a copy of the receiver's
//!   four digest trees and starts a *journal*: from then on, the first change
//!   to any key records the entry the key held at the base. Every hash the
//!   receiver reports comes from the frozen trees, so the sender's "equal"
//!   verdicts all refer to one moment. Where the sender judged a bucket
//!   equal, its entry *is* the receiver's entry at the base — so for a key
//!   the receiver changed since, the journal holds exactly the sender's entry,
//!   and the receiver joins it under the sender's context. Without this, a
//!   remove the sender had seen would be lost on a key the receiver changed
//!   in the meantime (the sender's context would be adopted without the
//!   entry it belongs to).
//! - **Two modes.** A *catch-up* repair (the sender's delta log no longer
//!   reaches back to the receiver) joins entries under their contexts and
//!   adopts the sender's contexts: the receiver now holds everything they
//!   claim. A *divergence* repair (equal version vectors, different digests:
//!   a write lost to a fault) keeps every sibling either side holds, except
//!   those removed by a delta that one side had applied and the other had not
//!   — the covers of both sides' newer deltas, which travel with the
//!   snapshot. Contexts are not adopted: each side's history stays its own,
//!   and normal replication carries the newer deltas.

use std::collections::{BTreeMap, BTreeSet};

use super::{RepairOutcome, Replica};
use crate::codec::DecodeError;
use crate::context::{Covers, Dot, VersionVector};
use crate::delta::{Delta, RepairSnapshot};
use crate::digest::{DigestTree, Hash128, NodeRef, bucket_of};
use crate::ids::Actor;
use crate::state::{KEYSPACES, Key, KeyEntry, KeyspaceId};

/// Most keys a journal records before the repair is given up (it will be
/// retried): bounds the memory a repair can hold under heavy traffic.
pub const MAX_JOURNAL_KEYS: usize = 200_000;

/// Most of its own newer deltas a replica reads back for a divergence repair.
pub const MAX_EXTRA_DELTAS: u64 = 100_000;

/// What kind of repair is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RepairMode {
    /// The sender's log no longer holds what the receiver lacks: join under
    /// contexts and adopt the sender's contexts.
    CatchUp,
    /// Equal version vectors with different digests: restore what one side
    /// lost, keep both histories.
    Divergence,
}

/// The receiver's side of a repair in progress: its frozen tree hashes and
/// version vector at the start.
pub struct RepairBase {
    id: u64,
    trees: Box<[DigestTree; KEYSPACES]>,
    vv: VersionVector,
}

impl RepairBase {
    /// The keyspace roots at the base, in tag order.
    pub fn roots(&self) -> [Hash128; KEYSPACES] {
        std::array::from_fn(|i| self.trees[i].root())
    }

    /// The hashes of a node's children at the base.
    pub fn children(&self, ks: KeyspaceId, n: NodeRef) -> Vec<Hash128> {
        self.trees[usize::from(ks.tag() - 1)].children(n)
    }

    /// The frozen tree of one keyspace.
    pub fn tree(&self, ks: KeyspaceId) -> &DigestTree {
        &self.trees[usize::from(ks.tag() - 1)]
    }

    /// The receiver's version vector at the base.
    pub fn version_vector(&self) -> &VersionVector {
        &self.vv
    }
}

/// Why a repair was not joined. Nothing changed in any case; the caller
/// retries later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairRefused {
    /// The base is not the repair in progress (another one began since).
    #[error("the repair's base is stale: another repair began since")]
    Stale,
    /// So many keys changed during the repair that the journal gave up.
    #[error("more than {MAX_JOURNAL_KEYS} keys changed while the repair ran")]
    Busy,
    /// One of this replica's newer deltas has left its log, so the removals
    /// it made cannot be told apart from a lost write.
    #[error("delta {0:?} is no longer in the log")]
    MissingHistory(Dot),
    /// A delta of the snapshot's history did not decode.
    #[error("a delta of the repair did not decode: {0}")]
    Decode(DecodeError),
}

/// The journal of a repair in progress: each key's entry at the base, for
/// the keys that changed since.
#[derive(Default)]
pub(super) struct Journal {
    id: u64,
    before: BTreeMap<Key, Option<KeyEntry>>,
    overflow: bool,
}

/// A set of dots as a context: the removals a divergence repair honours.
struct Removed(BTreeSet<Dot>);

impl Covers for Removed {
    fn covers(&self, dot: &Dot) -> bool {
        self.0.contains(dot)
    }
}

/// What a snapshot covers: its buckets, its entries there, and every key
/// either side holds in them.
struct Covered<'a> {
    buckets: BTreeSet<(KeyspaceId, u16)>,
    theirs: BTreeMap<Key, &'a KeyEntry>,
    keys: BTreeSet<Key>,
}

fn bucket_key(k: &Key) -> (KeyspaceId, u16) {
    (k.keyspace(), bucket_of(&k.to_bytes()[1..]))
}

impl Replica {
    /// Starts a repair in which this replica receives: freezes its tree
    /// hashes and starts the journal. Any repair begun before is abandoned.
    pub fn begin_repair(&mut self) -> RepairBase {
        self.next_repair += 1;
        self.journal = Some(Journal {
            id: self.next_repair,
            ..Journal::default()
        });
        let s = &self.state;
        RepairBase {
            id: self.next_repair,
            trees: Box::new(KeyspaceId::ALL.map(|ks| s.tree(ks).clone())),
            vv: self.applied.clone(),
        }
    }

    /// Abandons the repair in progress (the conversation failed).
    pub fn abort_repair(&mut self) {
        self.journal = None;
    }

    /// Records, for a repair in progress, the entries of `keys` before they
    /// change (the first change of each key only).
    pub(super) fn journal_before(&mut self, keys: impl IntoIterator<Item = Key>) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        for k in keys {
            if j.overflow {
                return;
            }
            if !j.before.contains_key(&k) {
                if j.before.len() >= MAX_JOURNAL_KEYS {
                    j.overflow = true;
                    j.before.clear();
                    return;
                }
                let e = self.state.key_entry(&k);
                j.before.insert(k, e);
            }
        }
    }

    fn take_journal(&mut self, base: &RepairBase) -> Result<Journal, RepairRefused> {
        match self.journal.take() {
            Some(j) if j.id == base.id && !j.overflow => Ok(j),
            Some(j) if j.id == base.id => Err(RepairRefused::Busy),
            other => {
                self.journal = other;
                Err(RepairRefused::Stale)
            }
        }
    }

    /// Joins one key's entry from a peer under the given contexts (ours is
    /// this replica's context when `ours` is `None`), keeping the SKU index
    /// and the due returns current. Returns whether the entry changed.
    fn join_key(
        &mut self,
        key: &Key,
        other: Option<&KeyEntry>,
        ours: Option<&dyn Covers>,
        theirs: &dyn Covers,
    ) -> bool {
        let old_sku = match key {
            Key::Product(id) => Some((*id, self.product_keys(id))),
            _ => None,
        };
        let changed = match ours {
            Some(c) => self.state.join_full(key, other, c, theirs),
            None => self.state.join_full(key, other, &self.cc, theirs),
        };
        if changed {
            if let Some((id, old)) = old_sku {
                self.reindex_product(&id, old);
            }
            match key {
                Key::Order(id) => self.recheck_return(id),
                Key::Idem(k) => self.note_idem(k),
                Key::Account(k) => self.reindex_account(k),
                _ => {}
            }
        }
        changed
    }

    /// The snapshot's entries in the buckets it covers, and every key either
    /// side holds there.
    fn covered_keys<'a>(&self, snap: &'a RepairSnapshot) -> Covered<'a> {
        let covered: BTreeSet<(KeyspaceId, u16)> = snap.buckets.iter().copied().collect();
        let mut theirs: BTreeMap<Key, &KeyEntry> = BTreeMap::new();
        for e in &snap.entries {
            let k = e.key();
            if covered.contains(&bucket_key(&k)) {
                theirs.insert(k, e);
            }
        }
        let mut keys: BTreeSet<Key> = theirs.keys().cloned().collect();
        for &(ks, b) in &covered {
            keys.extend(self.state.keys_in_bucket(ks, b));
        }
        Covered {
            buckets: covered,
            theirs,
            keys,
        }
    }

    /// Joins a catch-up repair: the peer's snapshot covers its buckets
    /// completely, and it judged every other bucket equal to this replica's
    /// at `base` (re-checked under its lock). Afterwards this replica holds
    /// everything the sender's contexts claim, and adopts them.
    pub fn merge_repair(
        &mut self,
        snap: &RepairSnapshot,
        base: &RepairBase,
        wall_ms: u64,
    ) -> Result<RepairOutcome, RepairRefused> {
        let journal = self.take_journal(base)?;
        let Covered {
            buckets: covered,
            theirs,
            keys,
        } = self.covered_keys(snap);
        let mut out = RepairOutcome::default();
        for key in keys {
            if self.join_key(&key, theirs.get(&key).copied(), None, &snap.cc) {
                out.changed.push(key);
            }
        }
        // Keys changed since the base in buckets the sender judged equal:
        // its entry there is the one this replica held at the base.
        for (key, before) in &journal.before {
            if covered.contains(&bucket_key(key)) {
                continue;
            }
            if self.join_key(key, before.as_ref(), None, &snap.cc) && !out.changed.contains(key) {
                out.changed.push(key.clone());
            }
        }
        self.cc.union(&snap.cc);
        let mut moved: Vec<Actor> = Vec::new();
        for (actor, &seq) in &snap.applied.dots {
            if seq > self.applied.get(actor) {
                self.applied.dots.insert(*actor, seq);
                out.evicted.extend(self.log.raise_floor(*actor, seq));
                moved.push(*actor);
            }
        }
        let waiting: BTreeSet<Actor> = self.pending.keys().map(|d| d.actor).collect();
        for actor in waiting {
            out.unblocked.extend(self.drain_pending(actor, wall_ms));
        }
        Ok(out)
    }

    /// This replica's deltas beyond `vv` that a peer needs for a divergence
    /// repair it receives from us: at most `max_bytes`, or `None` when the
    /// log no longer holds them (the peer is not at our vector: no divergence
    /// repair then, a normal pull first).
    pub fn newer_than(&self, vv: &VersionVector, max_bytes: usize) -> Option<Vec<Vec<u8>>> {
        let v = self.log.missing_for(&self.applied, vv, max_bytes).ok()?;
        let all: u64 = self
            .applied
            .dots
            .iter()
            .map(|(a, s)| s.saturating_sub(vv.get(a)))
            .sum();
        (v.len() as u64 == all).then(|| v.into_iter().map(|l| l.bytes.to_vec()).collect())
    }

    /// Joins a divergence repair: every sibling either side holds in the
    /// covered buckets survives, unless a delta one side applied and the other
    /// had not removes it — the covers of `their_newer` (the sender's deltas
    /// beyond this replica's base vector) and of this replica's deltas beyond
    /// the snapshot's vector. Contexts and vectors stay as they are.
    pub fn merge_divergent(
        &mut self,
        snap: &RepairSnapshot,
        their_newer: &[Vec<u8>],
        base: &RepairBase,
    ) -> Result<RepairOutcome, RepairRefused> {
        let journal = self.take_journal(base)?;
        drop(journal);
        let mut removed = BTreeSet::new();
        for bytes in their_newer {
            let d = Delta::decode(bytes).map_err(RepairRefused::Decode)?;
            removed.extend(d.covers);
        }
        let mut read = 0u64;
        for (actor, &seq) in &self.applied.dots {
            for s in snap.applied.get(actor) + 1..=seq {
                read += 1;
                let dot = Dot::new(*actor, s);
                let logged = match self.log.get(&dot) {
                    Some(l) if read <= MAX_EXTRA_DELTAS => l,
                    _ => return Err(RepairRefused::MissingHistory(dot)),
                };
                let d = Delta::decode(&logged.bytes).map_err(RepairRefused::Decode)?;
                removed.extend(d.covers);
            }
        }
        let removed = Removed(removed);
        let Covered { theirs, keys, .. } = self.covered_keys(snap);
        let mut out = RepairOutcome::default();
        for key in keys {
            if self.join_key(&key, theirs.get(&key).copied(), Some(&removed), &removed) {
                out.changed.push(key);
            }
        }
        Ok(out)
    }

    /// Fault injection for tests: forgets one key's entry as a disk that lost
    /// a write would, leaving the causal context and vectors as they are.
    /// Returns whether there was an entry.
    pub fn forget_entry(&mut self, key: &Key) -> bool {
        self.journal_before([key.clone()]);
        let had = self.state.key_entry(key).is_some();
        match key {
            Key::Product(k) => {
                let old = self.product_keys(k);
                self.state.products.modify(k, |e| *e = Default::default());
                self.reindex_product(k, old);
            }
            Key::Cart(k) => {
                self.state.carts.modify(k, |e| *e = Default::default());
            }
            Key::Stock(k) => {
                self.state.stock.modify(k, |e| *e = Default::default());
            }
            Key::Order(k) => {
                self.state.orders.modify(k, |e| *e = Default::default());
                self.recheck_return(k);
            }
            Key::Idem(k) => {
                self.state.forget_idem(k);
            }
            Key::Account(k) => {
                self.state.accounts.modify(k, |e| *e = Default::default());
                self.reindex_account(k);
            }
        }
        had
    }
}
