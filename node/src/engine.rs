//! The engine: the node's replica, its store, and the one write path every
//! change takes — apply under the lock, stage to sled in the same critical
//! section, wait for the group flush, then publish.
//!
//! Readers go through [`Engine::read`], which holds a read lock only while it
//! copies what it needs, then waits until everything it saw is durable: no
//! read ever shows a write that a crash could still take back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crdt_core::delta_log::LoggedDelta;
use crdt_core::{
    Actor, Applied, Dot, Key, MergeOutcome, NodeId, Op, OpError, RepairSnapshot, Replica,
    VersionVector,
};
use tokio::sync::broadcast;

use crate::clock;
use crate::metrics as m;
use crate::storage::{StorageError, Store};

/// Where an applied delta came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A local operation.
    Local,
    /// A peer's push or anti-entropy (from this peer, when known).
    Remote(Option<NodeId>),
}

/// What the engine publishes after a change is durable.
#[derive(Clone, Debug)]
pub enum Event {
    /// A delta was joined.
    Applied(Arc<Applied>, Origin),
    /// A repair changed these keys (no delta to forward).
    Repaired(Arc<Vec<Key>>),
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The operation was refused; nothing changed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// Storage failed; the write is not acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a batch of peer deltas did.
#[derive(Debug, Default, Clone, Copy)]
pub struct MergeReport {
    /// Deltas joined (including unblocked early ones).
    pub applied: usize,
    /// Deltas already held.
    pub duplicates: usize,
    /// Deltas held until a gap fills.
    pub pending: usize,
    /// Undecodable deltas, refused.
    pub malformed: usize,
}

/// The node's replica and store.
pub struct Engine {
    id: NodeId,
    actor: Actor,
    replica: RwLock<Replica>,
    store: Arc<Store>,
    events: broadcast::Sender<Event>,
    returns_running: AtomicBool,
}

impl Engine {
    /// An engine over a restored replica and its open store.
    pub fn new(id: NodeId, replica: Replica, store: Arc<Store>) -> Arc<Self> {
        let (events, _) = broadcast::channel(65_536);
        Arc::new(Self {
            id,
            actor: replica.actor(),
            replica: RwLock::new(replica),
            store,
            events,
            returns_running: AtomicBool::new(false),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's actor (id and incarnation).
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Subscribes to published changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Replica> {
        self.replica.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Replica> {
        self.replica.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Storage failed between changing memory and disk: memory is now ahead
    /// of disk, so stop rather than serve or acknowledge from it.
    fn fail_stop(&self, e: &StorageError) -> ! {
        tracing::error!(error = %e, node = %self.id, "storage write failed: stopping");
        std::process::exit(70)
    }

    /// Carries out a local operation; returns once it is durable.
    pub async fn write(&self, op: Op) -> Result<Arc<Applied>, WriteError> {
        let kind = op_kind(&op);
        let (applied, ticket) = {
            let mut r = self.write_lock();
            let applied = r.apply_local(op, clock::now_ms())?;
            let ticket = self
                .store
                .stage(&r, &applied.changed, [&applied.logged], &applied.evicted)
                .unwrap_or_else(|e| self.fail_stop(&e));
            gauge_log(&r);
            (Arc::new(applied), ticket)
        };
        self.store.durable(ticket).await?;
        ::metrics::counter!(m::WRITES, "op" => kind).increment(1);
        let _ = self
            .events
            .send(Event::Applied(applied.clone(), Origin::Local));
        Ok(applied)
    }

    /// Reads from the replica, then waits until everything read is durable.
    pub async fn read<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        let (value, ticket) = {
            let r = self.read_lock();
            (f(&r), self.store.staged())
        };
        // Only fails when shutting down, when no answer matters any more.
        let _ = self.store.durable(ticket).await;
        value
    }

    /// Reads without waiting for durability: for metrics and status, which
    /// show internals rather than data.
    pub fn peek<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        f(&self.read_lock())
    }

    /// Merges encoded deltas from a peer; returns once the result is durable.
    pub async fn merge_remote(
        &self,
        batch: &[Arc<[u8]>],
        from: Option<NodeId>,
    ) -> Result<MergeReport, StorageError> {
        let mut report = MergeReport::default();
        let mut applied_all: Vec<Arc<Applied>> = Vec::new();
        let ticket = {
            let mut r = self.write_lock();
            let now = clock::now_ms();
            for bytes in batch {
                let delta: crdt_core::Delta = match crdt_core::codec::decode(bytes) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "refusing a malformed delta from a peer");
                        report.malformed += 1;
                        continue;
                    }
                };
                match r.merge(delta, bytes.clone(), now) {
                    MergeOutcome::Applied(v) => {
                        report.applied += v.len();
                        applied_all.extend(v.into_iter().map(Arc::new));
                    }
                    MergeOutcome::AlreadySeen => report.duplicates += 1,
                    MergeOutcome::Pending => report.pending += 1,
                }
            }
            if applied_all.is_empty() {
                None
            } else {
                let keys: Vec<&Key> = applied_all.iter().flat_map(|a| a.changed.iter()).collect();
                let logged: Vec<&LoggedDelta> = applied_all.iter().map(|a| &a.logged).collect();
                let evicted: Vec<&Dot> =
                    applied_all.iter().flat_map(|a| a.evicted.iter()).collect();
                let t = self
                    .store
                    .stage(&r, keys, logged, evicted)
                    .unwrap_or_else(|e| self.fail_stop(&e));
                gauge_log(&r);
                Some(t)
            }
        };
        ::metrics::counter!(m::MERGED, "outcome" => "applied").increment(report.applied as u64);
        ::metrics::counter!(m::MERGED, "outcome" => "duplicate")
            .increment(report.duplicates as u64);
        ::metrics::counter!(m::MERGED, "outcome" => "pending").increment(report.pending as u64);
        if let Some(t) = ticket {
            self.store.durable(t).await?;
            for a in applied_all {
                let _ = self.events.send(Event::Applied(a, Origin::Remote(from)));
            }
        }
        Ok(report)
    }

    /// Joins a repair snapshot from a peer; returns the number of keys changed.
    pub async fn merge_repair(&self, snap: &RepairSnapshot) -> Result<usize, StorageError> {
        let (ticket, changed, unblocked) = {
            let mut r = self.write_lock();
            let out = r.merge_repair(snap, clock::now_ms());
            let mut keys: Vec<Key> = out.changed.clone();
            keys.extend(out.unblocked.iter().flat_map(|a| a.changed.iter().cloned()));
            let logged: Vec<&LoggedDelta> = out.unblocked.iter().map(|a| &a.logged).collect();
            let evicted: Vec<&Dot> = out
                .unblocked
                .iter()
                .flat_map(|a| a.evicted.iter())
                .collect();
            let t = self
                .store
                .stage(&r, &keys, logged, evicted)
                .unwrap_or_else(|e| self.fail_stop(&e));
            (t, out.changed, out.unblocked)
        };
        self.store.durable(ticket).await?;
        let n = changed.len();
        let _ = self.events.send(Event::Repaired(Arc::new(changed)));
        for a in unblocked {
            let _ = self
                .events
                .send(Event::Applied(Arc::new(a), Origin::Remote(None)));
        }
        Ok(n)
    }

    /// Drops logged deltas every peer has acknowledged.
    pub async fn truncate_log(&self, acked: &VersionVector) -> Result<usize, StorageError> {
        let (ticket, n) = {
            let mut r = self.write_lock();
            let dropped = r.truncate_acked(acked);
            if dropped.is_empty() {
                return Ok(0);
            }
            let t = self
                .store
                .stage(&r, std::iter::empty(), std::iter::empty(), &dropped)
                .unwrap_or_else(|e| self.fail_stop(&e));
            gauge_log(&r);
            (t, dropped.len())
        };
        self.store.durable(ticket).await?;
        Ok(n)
    }

    /// Returns the units of orders this node sold that were cancelled
    /// elsewhere (the cancel/ship rule). Safe to call often: one runs at a time.
    pub async fn process_returns(&self) {
        if self.returns_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let due = self.peek(|r| r.returns_due());
        for order in due {
            match self.write(Op::ReturnUnits { order }).await {
                Ok(_) => tracing::info!(%order, "returned the units of a cancelled order"),
                Err(WriteError::Op(e)) => tracing::debug!(%order, error = %e, "no return needed"),
                Err(e) => tracing::warn!(%order, error = %e, "returning units failed"),
            }
        }
        self.returns_running.store(false, Ordering::Release);
    }
}

fn gauge_log(r: &Replica) {
    ::metrics::gauge!(m::DELTA_LOG_LEN).set(r.log().len() as f64);
    ::metrics::gauge!(m::DELTA_LOG_BYTES).set(r.log().bytes() as f64);
}

/// A short name of an operation, for metrics.
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::CreateProduct { .. } => "create_product",
        Op::UpdateProduct { .. } => "update_product",
        Op::DeleteProduct { .. } => "delete_product",
        Op::Restock { .. } => "restock",
        Op::TransferRights { .. } => "transfer_rights",
        Op::AddToCart { .. } => "cart_add",
        Op::SetCartItem { .. } => "cart_set",
        Op::RemoveCartItem { .. } => "cart_remove",
        Op::Checkout { .. } => "checkout",
        Op::MoveOrder { .. } => "order_move",
        Op::ReturnUnits { .. } => "return_units",
    }
}
