//! The replica: the whole state of one node, the causal bookkeeping around
//! it, and the only two ways it changes — a local operation
//! ([`Replica::apply_local`]) or a delta from a peer ([`Replica::merge`]).
//!
//! Sans-IO: the caller passes the wall time into every call and persists what
//! each call reports as changed. Both paths end in the same place: the delta
//! is joined into the state, its dots into the causal context, its dot into
//! the version vector of applied deltas, and it is appended to the delta
//! log. Deltas of one actor are applied in sequence: one that arrives early
//! waits (`Pending`) until the gap is filled, by a later push or by
//! anti-entropy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{ProductRecord, resolve};
use crate::clock::{Hlc, HlcClock};
use crate::codec::{self, DecodeError, Kind, Versioned};
use crate::context::{CausalContext, Dot, VersionVector};
use crate::delta::{Delta, Part, RepairSnapshot};
use crate::delta_log::{DeltaLog, LoggedDelta, Truncated};
use crate::idem::{IdemEntry, IdemRecord};
use crate::ids::{AccountId, Actor, IdemKey, OrderId, ProductId};
use crate::ops::{AccountChange, Op, OpError, PlanCtx, plan};
use crate::state::{Key, KeyspaceId, State};

mod accounts;
mod idem;
mod index;
pub mod repair;

use index::{Indexes, ProductKeys};
use repair::Journal;

/// How a replica is set up.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica's actor.
    pub actor: Actor,
    /// How far ahead of our wall clock a peer's reading may be and still move
    /// our clock.
    pub max_drift_ms: u64,
    /// Bound of the delta log, in bytes of encoded deltas.
    pub log_max_bytes: usize,
    /// Most early deltas held while waiting for a gap to fill.
    pub max_pending: usize,
    /// Key of the state's hash maps; a node draws it at random so that
    /// clients choosing ids cannot aim for collisions.
    pub hash_seed: u64,
    /// Most lines a local write may bring a cart to (lines added
    /// concurrently on other nodes can go past it, by at most one per node).
    pub max_cart_lines: usize,
    /// Bytes of early deltas held while waiting for a gap to fill.
    pub max_pending_bytes: usize,
    /// How long an idempotency record is kept, from its stamp.
    pub idem_window_ms: u64,
}

impl ReplicaConfig {
    /// Defaults for `actor`: 60 s drift, a 256 MiB log, 100,000 (and 64 MiB
    /// of) pending deltas, a fixed hash seed, 100 lines per cart, 24 h of
    /// idempotency records.
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            max_drift_ms: 60_000,
            log_max_bytes: 256 << 20,
            max_pending: 100_000,
            hash_seed: 0x243F_6A88_85A3_08D3,
            max_cart_lines: 100,
            max_pending_bytes: 64 << 20,
            idem_window_ms: 24 * 3_600_000,
        }
    }
}

/// One delta joined into the replica: what to persist and publish.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The delta.
    pub delta: Arc<Delta>,
    /// Its logged form (encoded bytes).
    pub logged: LoggedDelta,
    /// Keys whose stored entries changed.
    pub changed: Vec<Key>,
    /// Logged deltas evicted to keep the log within its bound (delete them
    /// from disk too).
    pub evicted: Vec<Dot>,
}

/// The result of merging a delta from a peer.
#[derive(Debug)]
pub enum MergeOutcome {
    /// Joined — with any early deltas of the same actor it unblocked.
    Applied(Vec<Applied>),
    /// Already applied before: nothing changed.
    AlreadySeen,
    /// Arrived before an earlier delta of its actor; held until the gap fills.
    Pending,
}

/// What a repair changed.
#[derive(Debug, Default)]
pub struct RepairOutcome {
    /// Keys whose stored entries changed.
    pub changed: Vec<Key>,
    /// Early deltas that became applicable once the vector moved.
    pub unblocked: Vec<Applied>,
    /// Logged deltas that left the log because the vector moved past them
    /// (delete them from disk too).
    pub evicted: Vec<Dot>,
}

/// The causal metadata persisted beside the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaMeta {
    /// Causal context.
    pub cc: CausalContext,
    /// Version vector of applied deltas.
    pub applied: VersionVector,
    /// The clock's last reading.
    pub hlc: Hlc,
    /// Per actor, the highest sequence the delta log no longer holds.
    pub log_floors: BTreeMap<Actor, u64>,
}

impl Versioned for ReplicaMeta {
    const KIND: Kind = Kind::META;
    const REVISION: u8 = 1;
}

/// Counters about the replica's own work, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaStats {
    /// Early deltas dropped because the pending buffer was full.
    pub pending_dropped: u64,
    /// Deltas merged from peers.
    pub merged: u64,
    /// Deltas seen twice.
    pub duplicates: u64,
}

/// One node's replica of the whole store.
pub struct Replica {
    actor: Actor,
    clock: HlcClock,
    state: State,
    cc: CausalContext,
    applied: VersionVector,
    log: DeltaLog,
    pending: BTreeMap<Dot, (Delta, Arc<[u8]>)>,
    max_pending: usize,
    /// Encoded bytes of the deltas in `pending`, and their bound.
    pending_bytes: usize,
    max_pending_bytes: usize,
    max_cart_lines: usize,
    idem_window_ms: u64,
    /// Products by SKU and category, orders by customer and status.
    index: Indexes,
    /// Idempotency records by (HLC ms, key), oldest first, so the expiry
    /// sweep costs O(what expires), not a scan of every record. An entry
    /// may be stale (its record since replaced by an earlier one, or gone):
    /// the sweep skips those.
    idem_expiry: BTreeSet<(u64, IdemKey)>,
    returns_due: BTreeSet<OrderId>,
    payments_due: BTreeSet<OrderId>,
    stats: ReplicaStats,
    /// The repair in progress, if any (see [`repair`]).
    journal: Option<Journal>,
    /// Number of the last repair begun.
    next_repair: u64,
}

impl Replica {
    /// An empty replica.
    pub fn new(cfg: ReplicaConfig) -> Self {
        Self {
            actor: cfg.actor,
            clock: HlcClock::new(cfg.max_drift_ms),
            state: State::new(cfg.hash_seed),
            cc: CausalContext::new(),
            applied: VersionVector::new(),
            log: DeltaLog::new(cfg.log_max_bytes),
            pending: BTreeMap::new(),
            max_pending: cfg.max_pending,
            pending_bytes: 0,
            max_pending_bytes: cfg.max_pending_bytes,
            max_cart_lines: cfg.max_cart_lines,
            idem_window_ms: cfg.idem_window_ms,
            index: Indexes::default(),
            idem_expiry: BTreeSet::new(),
            returns_due: BTreeSet::new(),
            payments_due: BTreeSet::new(),
            stats: ReplicaStats::default(),
            journal: None,
            next_repair: 0,
        }
    }

    /// Rebuilds a replica from what was persisted: its metadata, every stored
    /// entry, and the stored delta log (in any order). Also returns the
    /// logged deltas that did not fit the log's bound (delete them from disk).
    pub fn restore(
        cfg: ReplicaConfig,
        meta: ReplicaMeta,
        entries: impl IntoIterator<Item = (Key, Vec<u8>)>,
        log: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<(Self, Vec<Dot>), DecodeError> {
        let mut r = Self::new(cfg);
        for (key, bytes) in entries {
            r.state.load_entry(&key, &bytes)?;
        }
        r.cc = meta.cc;
        r.applied = meta.applied;
        r.clock.observe(meta.hlc, u64::MAX).ok();
        for (actor, floor) in meta.log_floors {
            r.log.raise_floor(actor, floor);
        }
        let mut logged = Vec::new();
        for bytes in log {
            let d = Delta::decode(&bytes)?;
            logged.push(LoggedDelta {
                dot: d.dot,
                hlc: d.hlc,
                bytes: bytes.into(),
            });
        }
        logged.sort_by_key(|l| l.dot);
        let mut stale = Vec::new();
        for l in logged {
            if l.dot.seq <= r.applied.get(&l.dot.actor) {
                stale.extend(r.log.push(l));
            } else {
                stale.push(l.dot);
            }
        }
        let ids: Vec<ProductId> = r.state.products.iter().map(|(k, _)| *k).collect();
        for id in ids {
            r.reindex_product(&id, None);
        }
        let orders: Vec<OrderId> = r.state.orders.iter().map(|(k, _)| *k).collect();
        for id in orders {
            r.recheck_return(&id);
        }
        let accounts: Vec<AccountId> = r.state.accounts.iter().map(|(k, _)| *k).collect();
        for id in accounts {
            r.reindex_account(&id);
        }
        r.idem_expiry = r
            .state
            .idem
            .iter()
            .filter_map(|(k, e)| e.0.as_ref().map(|rec| (rec.hlc.ms, *k)))
            .collect();
        Ok((r, stale))
    }

    /// The metadata to persist beside the state.
    pub fn meta(&self) -> ReplicaMeta {
        ReplicaMeta {
            cc: self.cc.clone(),
            applied: self.applied.clone(),
            hlc: self.clock.last(),
            log_floors: self.log.floors(),
        }
    }

    /// This replica's actor.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// Carries out a local operation at wall time `wall_ms`: plans its delta
    /// (or refuses it, changing nothing), then joins it like any other.
    pub fn apply_local(&mut self, op: Op, wall_ms: u64) -> Result<Applied, OpError> {
        self.apply_local_then(op, wall_ms, |_| ((), None))
            .map(|(applied, ())| applied)
    }

    /// Like [`Replica::apply_local`]; then `then` sees the state with the
    /// operation joined and may return the idempotency record of the answer
    /// it renders from that state. The record joins the operation's own
    /// delta — one dot, one log entry — so a write and the record of its
    /// answer are stored, replicated and lost only together. Its stamp and
    /// writer are the delta's, whatever the caller filled in.
    pub fn apply_local_then<T>(
        &mut self,
        op: Op,
        wall_ms: u64,
        then: impl FnOnce(&Replica) -> (T, Option<(IdemKey, IdemRecord)>),
    ) -> Result<(Applied, T), OpError> {
        let sku_owner = match &op {
            Op::CreateProduct { product, .. } => self
                .index
                .sku
                .get(&product.sku)
                .and_then(|s| s.iter().next().copied()),
            _ => None,
        };
        let email_owner = match &op {
            Op::Account {
                change: AccountChange::Register { email, .. },
                ..
            } => self.account_by_email(email).map(|(id, _)| id),
            _ => None,
        };
        let dot = Dot::new(self.actor, self.applied.get(&self.actor) + 1);
        let mut ctx = PlanCtx {
            actor: self.actor,
            dot,
            clock: &mut self.clock,
            wall_ms,
            sku_owner,
            max_cart_lines: self.max_cart_lines,
            email_owner,
        };
        let mut delta = plan(op, &self.state, &mut ctx)?;
        let mut changed = self.join_delta(&delta);
        let (out, record) = then(self);
        if let Some((key, mut record)) = record {
            record.hlc = delta.hlc;
            record.writer = self.actor;
            let extra = Delta {
                dot: delta.dot,
                hlc: delta.hlc,
                covers: Vec::new(),
                parts: vec![Part::Idem {
                    key,
                    entry: Box::new(IdemEntry(Some(record))),
                }],
            };
            changed.extend(self.join_delta(&extra));
            delta.parts.extend(extra.parts);
        }
        let bytes: Arc<[u8]> = codec::encode(&delta).into();
        Ok((self.log_delta(delta, bytes, changed), out))
    }

    /// Merges a delta from a peer at wall time `wall_ms`.
    pub fn merge(&mut self, delta: Delta, bytes: Arc<[u8]>, wall_ms: u64) -> MergeOutcome {
        let have = self.applied.get(&delta.dot.actor);
        if delta.dot.seq <= have {
            self.stats.duplicates += 1;
            return MergeOutcome::AlreadySeen;
        }
        if delta.dot.seq > have + 1 {
            if self.pending.contains_key(&delta.dot) {
                self.stats.duplicates += 1;
            } else if self.pending.len() < self.max_pending
                && self.pending_bytes + bytes.len() <= self.max_pending_bytes
            {
                // Bounded in count and bytes: a hostile peer cannot grow it
                // without bound; anti-entropy refetches what was dropped.
                self.pending_bytes += bytes.len();
                self.pending.insert(delta.dot, (delta, bytes));
            } else {
                self.stats.pending_dropped += 1;
            }
            return MergeOutcome::Pending;
        }
        // A reading far ahead of our clock is data, not time: it still merges.
        self.clock.observe(delta.hlc, wall_ms).ok();
        let actor = delta.dot.actor;
        let mut out = vec![self.integrate(delta, bytes)];
        out.extend(self.drain_pending(actor, wall_ms));
        self.stats.merged += out.len() as u64;
        MergeOutcome::Applied(out)
    }

    /// Decodes a delta in its envelope and merges it.
    pub fn merge_bytes(&mut self, bytes: &[u8], wall_ms: u64) -> Result<MergeOutcome, DecodeError> {
        let delta = Delta::decode(bytes)?;
        Ok(self.merge(delta, bytes.into(), wall_ms))
    }

    fn drain_pending(&mut self, actor: Actor, wall_ms: u64) -> Vec<Applied> {
        let mut out = Vec::new();
        // Forget what a repair already covered.
        let have = self.applied.get(&actor);
        let stale: Vec<Dot> = self
            .pending
            .range(Dot::new(actor, 0)..=Dot::new(actor, have))
            .map(|(d, _)| *d)
            .collect();
        for d in stale {
            if let Some((_, b)) = self.pending.remove(&d) {
                self.pending_bytes -= b.len();
            }
        }
        loop {
            let next = Dot::new(actor, self.applied.get(&actor) + 1);
            let Some((delta, bytes)) = self.pending.remove(&next) else {
                break;
            };
            self.pending_bytes -= bytes.len();
            self.clock.observe(delta.hlc, wall_ms).ok();
            out.push(self.integrate(delta, bytes));
        }
        out
    }

    /// Joins a delta whose predecessors are all applied.
    fn integrate(&mut self, delta: Delta, bytes: Arc<[u8]>) -> Applied {
        let changed = self.join_delta(&delta);
        self.log_delta(delta, bytes, changed)
    }

    /// Joins a delta into the state, its dots into the causal context and
    /// the version vector, and re-derives the indexes; returns the keys
    /// whose entries changed. Joining the same delta twice changes nothing.
    fn join_delta(&mut self, delta: &Delta) -> Vec<Key> {
        if self.journal.is_some() {
            self.journal_before(delta.parts.iter().map(Part::key));
        }
        let old_keys: Vec<(ProductId, Option<ProductKeys>)> = delta
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Product { id, .. } => Some((*id, self.product_keys(id))),
                _ => None,
            })
            .collect();
        let changed = delta.join_into(&mut self.state, &self.cc);
        for d in delta.dots() {
            self.cc.insert(d);
        }
        self.applied.dots.insert(delta.dot.actor, delta.dot.seq);
        for (id, old) in old_keys {
            self.reindex_product(&id, old);
        }
        for k in &changed {
            match k {
                Key::Order(id) => self.recheck_return(id),
                Key::Idem(key) => self.note_idem(key),
                Key::Account(id) => self.reindex_account(id),
                _ => {}
            }
        }
        changed
    }

    /// Appends a joined delta to the log.
    fn log_delta(&mut self, delta: Delta, bytes: Arc<[u8]>, changed: Vec<Key>) -> Applied {
        let logged = LoggedDelta {
            dot: delta.dot,
            hlc: delta.hlc,
            bytes,
        };
        let evicted = self.log.push(logged.clone());
        Applied {
            delta: Arc::new(delta),
            logged,
            changed,
            evicted,
        }
    }

    fn product_keys(&self, id: &ProductId) -> Option<ProductKeys> {
        self.product(id).map(|r| (r.sku.value, r.category.value))
    }

    fn reindex_product(&mut self, id: &ProductId, old: Option<ProductKeys>) {
        let new = self.product_keys(id);
        self.index.set_product(*id, old, new);
    }

    /// Re-derives what depends on an order: the indexes, and whether its
    /// units are due back to this node.
    fn recheck_return(&mut self, id: &OrderId) {
        let entry = self.state.orders.get(id);
        let due = entry.is_some_and(|e| e.owes_return(self.actor));
        let keys = entry.and_then(|e| {
            e.header()
                .map(|h| (h.customer.clone(), e.status.0, h.created_ms, h.cart).into())
        });
        self.index.set_order(*id, keys);
        if due {
            self.returns_due.insert(*id);
        } else {
            self.returns_due.remove(id);
        }
        if entry.is_some_and(|e| e.payment_work(self.actor)) {
            self.payments_due.insert(*id);
        } else {
            self.payments_due.remove(id);
        }
    }

    /// The deltas a peer with vector `peer` lacks, in causal order, at most
    /// `max_bytes` of them; `Err` when the log no longer holds them and the
    /// peer needs a repair instead.
    pub fn missing_for(
        &self,
        peer: &VersionVector,
        max_bytes: usize,
    ) -> Result<Vec<LoggedDelta>, Truncated> {
        self.log.missing_for(&self.applied, peer, max_bytes)
    }

    /// Like [`Replica::missing_for`], and whether the size bound left some
    /// out (see `DeltaLog::missing_chunk`).
    pub fn missing_chunk(
        &self,
        peer: &VersionVector,
        max_bytes: usize,
    ) -> Result<(Vec<LoggedDelta>, bool), Truncated> {
        self.log.missing_chunk(&self.applied, peer, max_bytes)
    }

    /// The full state of some buckets, with the contexts it was taken under.
    pub fn repair_for(&self, buckets: &[(KeyspaceId, u16)]) -> RepairSnapshot {
        let mut entries = Vec::new();
        for &(ks, b) in buckets {
            for key in self.state.keys_in_bucket(ks, b) {
                entries.extend(self.state.key_entry(&key));
            }
        }
        RepairSnapshot {
            cc: self.cc.clone(),
            applied: self.applied.clone(),
            buckets: buckets.to_vec(),
            entries,
        }
    }

    /// The digest of the whole state: equal exactly when two replicas hold the
    /// same state (entries and causal context).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"concord-state-digest-v1");
        for r in self.state.roots() {
            h.update(&r.to_le_bytes());
        }
        h.update(&postcard::to_allocvec(&self.cc).unwrap_or_default());
        *h.finalize().as_bytes()
    }

    /// The version vector of applied deltas.
    pub fn version_vector(&self) -> &VersionVector {
        &self.applied
    }

    /// The causal context.
    pub fn causal_context(&self) -> &CausalContext {
        &self.cc
    }

    /// The state, for reads.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The delta log.
    pub fn log(&self) -> &DeltaLog {
        &self.log
    }

    /// Drops logged deltas every peer has acknowledged; returns their dots.
    pub fn truncate_acked(&mut self, acked: &VersionVector) -> Vec<Dot> {
        self.log.truncate_acked(acked)
    }

    /// The clock, for callers that need a reading consistent with the data.
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// Work counters.
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }

    /// How many early deltas are waiting.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The product a reader sees.
    pub fn product(&self, id: &ProductId) -> Option<ProductRecord> {
        self.state.products.get(id).and_then(resolve)
    }

    /// Live products with this SKU (normally one).
    pub fn products_with_sku(&self, sku: &str) -> impl Iterator<Item = &ProductId> {
        self.index.sku.get(sku).into_iter().flatten()
    }

    /// Orders this node sold whose units it must give back — cancelled
    /// elsewhere, or a sale that lost to another seller's — and has yet to
    /// return (issue [`Op::ReturnUnits`] for each).
    pub fn returns_due(&self) -> Vec<OrderId> {
        self.returns_due.iter().copied().collect()
    }

    /// Orders with payment work for this node (see
    /// [`crate::order::OrderEntry::payment_work`]): what the node's payment
    /// reconciler visits, instead of every order.
    pub fn payments_due(&self) -> Vec<OrderId> {
        self.payments_due.iter().copied().collect()
    }
}
