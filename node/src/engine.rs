//! The engine: the node's replica, its store, and the one write path every
//! change takes — apply under the lock, stage to sled in the same critical
//! section, wait for the group flush, then publish.
//!
//! **The durable frontier.** Nothing leaves the node — to a client or to a
//! peer — before it is on stable storage:
//! - readers go through [`Engine::read`], which holds a read lock only while
//!   it copies what it needs, then waits until everything it saw is durable;
//!   every HTTP read, every pull or repair answer, every rights or move reply
//!   and every vector or digest sent to a peer is taken this way;
//! - changes are published (to the push fan-out, the search indexer, the
//!   event stream) by the flusher itself, right after the sync that made
//!   them durable ([`Engine::publish_durable`]) — so publishing never depends
//!   on the client that asked for a change still waiting for the answer.
//!
//! [`Engine::peek`] reads without waiting, for metrics and for decisions that
//! stay inside the node (which peer to ask for rights, which returns are
//! due); what it returns must never be sent anywhere.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crdt_core::delta_log::LoggedDelta;
use crdt_core::idem::IdemRecord;
use crdt_core::repair::{RepairBase, RepairRefused};
use crdt_core::{
    Actor, Applied, Dot, IdemKey, Key, MergeOutcome, NodeId, Op, OpError, RepairOutcome,
    RepairSnapshot, Replica, VersionVector,
};
use tokio::sync::broadcast;

use crate::clock;
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::storage::{StorageError, Store};

tokio::task_local! {
    /// Set by [`Engine::deferred`]: the highest ticket staged or read by
    /// the request running in this task, whose answer waits for it.
    static DEFERRED: std::cell::Cell<u64>;
}

/// Raises the deferred ticket of this task, if it defers; returns whether
/// it does (the caller then need not wait for durability itself).
fn defer(ticket: u64) -> bool {
    DEFERRED.try_with(|d| d.set(d.get().max(ticket))).is_ok()
}

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

/// Why a repair could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The replica refused it (stale base, too busy, missing history);
    /// nothing changed.
    #[error(transparent)]
    Refused(#[from] RepairRefused),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The node's replica and store.
pub struct Engine {
    id: NodeId,
    actor: Actor,
    replica: RwLock<Replica>,
    store: Arc<Store>,
    events: broadcast::Sender<Event>,
    /// Changes staged but not yet durable, with their tickets, in ticket
    /// order: published by [`Engine::publish_durable`] once synced.
    outbox: Mutex<VecDeque<(u64, Event)>>,
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
            outbox: Mutex::new(VecDeque::new()),
            returns_running: AtomicBool::new(false),
        })
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Event)>> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes every change staged up to `ticket`: called by the flusher
    /// once that ticket is on stable storage, before its waiters wake.
    pub fn publish_durable(&self, ticket: u64) {
        let ready: Vec<Event> = {
            let mut q = self.outbox();
            let n = q.iter().take_while(|(t, _)| *t <= ticket).count();
            q.drain(..n).map(|(_, e)| e).collect()
        };
        for e in ready {
            let _ = self.events.send(e);
        }
    }

    /// Stages `keys`, `logged` and `dropped` from `r` and queues `events`
    /// for publication once durable. The outbox lock is held across the
    /// stage, so the flusher cannot publish this ticket's round before the
    /// events are queued.
    fn stage<'a>(
        &self,
        r: &Replica,
        keys: impl IntoIterator<Item = &'a Key>,
        logged: impl IntoIterator<Item = &'a LoggedDelta>,
        dropped: impl IntoIterator<Item = &'a Dot>,
        events: impl IntoIterator<Item = Event>,
    ) -> u64 {
        let mut q = self.outbox();
        let ticket = self
            .store
            .stage(r, keys, logged, dropped)
            .unwrap_or_else(|e| self.fail_stop(&e));
        q.extend(events.into_iter().map(|e| (ticket, e)));
        ticket
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

    /// Carries out a local operation; returns once it is durable. The
    /// change is published when it is durable even if this future is
    /// dropped first (a client that hung up).
    pub async fn write(&self, op: Op) -> Result<Arc<Applied>, WriteError> {
        self.write_with(|_| Ok((op, ()))).await.map(|(a, ())| a)
    }

    /// Like [`Engine::write`], with the operation built under the write lock
    /// from the replica as it is at that moment (so a decision such as how
    /// many rights to give cannot race with other writers); `plan` also
    /// returns a value for the caller.
    pub async fn write_with<T>(
        &self,
        plan: impl FnOnce(&Replica) -> Result<(Op, T), OpError>,
    ) -> Result<(Arc<Applied>, T), WriteError> {
        self.write_inner(plan, |_| ((), None))
            .await
            .map(|(a, t, ())| (a, t))
    }

    /// Like [`Engine::write`]; then `render`, under the same lock, builds
    /// the answer from the state the write leaves and may return the
    /// idempotency record of that answer, which joins the write's own delta
    /// ([`Replica::apply_local_then`]): one stage, one sync, and a peer
    /// receives the write and its record together or not at all.
    pub async fn write_then<U>(
        &self,
        op: Op,
        render: impl FnOnce(&Replica) -> (U, Option<(IdemKey, IdemRecord)>),
    ) -> Result<(Arc<Applied>, U), WriteError> {
        self.write_inner(|_| Ok((op, ())), render)
            .await
            .map(|(a, (), u)| (a, u))
    }

    async fn write_inner<T, U>(
        &self,
        plan: impl FnOnce(&Replica) -> Result<(Op, T), OpError>,
        render: impl FnOnce(&Replica) -> (U, Option<(IdemKey, IdemRecord)>),
    ) -> Result<(Arc<Applied>, T, U), WriteError> {
        let (applied, ticket, kind, extra, answer) = {
            let mut r = self.write_lock();
            let (op, extra) = plan(&r)?;
            let kind = op_kind(&op);
            let (applied, answer) = r.apply_local_then(op, clock::now_ms(), render)?;
            let applied = Arc::new(applied);
            let ticket = self.stage(
                &r,
                &applied.changed,
                [&applied.logged],
                &applied.evicted,
                [Event::Applied(applied.clone(), Origin::Local)],
            );
            gauge_log(&r);
            (applied, ticket, kind, extra, answer)
        };
        if !defer(ticket) {
            self.store.durable(ticket).await?;
        }
        ::metrics::counter!(m::WRITES, "op" => kind).increment(1);
        Ok((applied, extra, answer))
    }

    /// Runs one request's handling with durability deferred: its writes and
    /// its answer reads ([`Engine::read_answer`]) do not wait for the disk
    /// one by one; this waits once, at the end, for everything they staged
    /// or saw, so the answer still leaves only when all of it is on stable
    /// storage. Reads that go to peers ([`Engine::read`]) keep waiting as
    /// always.
    pub async fn deferred<F: std::future::Future>(&self, f: F) -> Result<F::Output, StorageError> {
        let (out, ticket) = DEFERRED
            .scope(std::cell::Cell::new(0), async {
                let out = f.await;
                (out, DEFERRED.with(|d| d.get()))
            })
            .await;
        self.store.durable(ticket).await?;
        Ok(out)
    }

    /// Reads the answer to a client: like [`Engine::read`], except inside
    /// [`Engine::deferred`], where the wait is left to the end of the request.
    pub async fn read_answer<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        let (value, ticket) = {
            let r = self.read_lock();
            (f(&r), self.store.staged())
        };
        if !defer(ticket) {
            let _ = self.store.durable(ticket).await;
        }
        value
    }

    /// Drops up to `max` idempotency records past their window (the local
    /// expiry sweep), in memory and — a whole record segment at a time —
    /// on disk; returns how many records and segments went.
    pub async fn sweep_idem(&self, now_ms: u64, max: usize) -> usize {
        let (ticket, swept, window) = {
            let mut r = self.write_lock();
            let keys = r.sweep_idem(now_ms, max);
            let window = r.idem_window_ms();
            if keys.is_empty() {
                (None, 0, window)
            } else {
                (Some(self.stage(&r, &keys, [], [], [])), keys.len(), window)
            }
        };
        let cutoff = now_ms.saturating_sub(window);
        let segments = match self.store.stage_expired_records(cutoff, max) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not list expired record segments");
                None
            }
        };
        let last = segments.map(|(t, _)| t).into_iter().chain(ticket).max();
        if let Some(t) = last {
            let _ = self.store.durable(t).await;
        }
        swept + segments.map_or(0, |(_, n)| n)
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

    /// Reads without waiting for durability: for metrics, and for decisions
    /// that stay inside this node. Never send what it returns to a client or
    /// a peer — use [`Engine::read`] for that.
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
                let delta = match crdt_core::Delta::decode(bytes) {
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
                let events: Vec<Event> = applied_all
                    .iter()
                    .map(|a| Event::Applied(a.clone(), Origin::Remote(from)))
                    .collect();
                let t = self.stage(&r, keys, logged, evicted, events);
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
        }
        Ok(report)
    }

    /// Starts a repair in which this node receives (see
    /// `crdt_core::repair`): its tree hashes are frozen for the conversation.
    pub fn begin_repair(&self) -> RepairBase {
        self.write_lock().begin_repair()
    }

    /// Abandons the repair in progress.
    pub fn abort_repair(&self) {
        self.write_lock().abort_repair();
    }

    /// Joins a catch-up repair snapshot from a peer; returns the keys changed.
    pub async fn merge_repair(
        &self,
        snap: &RepairSnapshot,
        base: &RepairBase,
    ) -> Result<Vec<Key>, RepairError> {
        self.join_repair(|r| r.merge_repair(snap, base, clock::now_ms()))
            .await
    }

    /// Joins a divergence repair snapshot from a peer (equal vectors,
    /// different digests); returns the keys changed.
    pub async fn merge_divergent(
        &self,
        snap: &RepairSnapshot,
        their_newer: &[Vec<u8>],
        base: &RepairBase,
    ) -> Result<Vec<Key>, RepairError> {
        self.join_repair(|r| r.merge_divergent(snap, their_newer, base))
            .await
    }

    async fn join_repair(
        &self,
        join: impl FnOnce(&mut Replica) -> Result<RepairOutcome, RepairRefused>,
    ) -> Result<Vec<Key>, RepairError> {
        let (ticket, changed) = {
            let mut r = self.write_lock();
            let out = join(&mut r)?;
            let mut keys: Vec<Key> = out.changed.clone();
            keys.extend(out.unblocked.iter().flat_map(|a| a.changed.iter().cloned()));
            let logged: Vec<&LoggedDelta> = out.unblocked.iter().map(|a| &a.logged).collect();
            let mut dropped: Vec<&Dot> = out.evicted.iter().collect();
            dropped.extend(out.unblocked.iter().flat_map(|a| a.evicted.iter()));
            let mut events = vec![Event::Repaired(Arc::new(out.changed.clone()))];
            events.extend(
                out.unblocked
                    .iter()
                    .map(|a| Event::Applied(Arc::new(a.clone()), Origin::Remote(None))),
            );
            let t = self.stage(&r, &keys, logged, dropped, events);
            gauge_log(&r);
            (t, out.changed)
        };
        self.store.durable(ticket).await?;
        Ok(changed)
    }

    /// Fault injection for tests (`CONCORD_TEST_HOOKS=1`): forgets one key's
    /// entry in memory and on disk, as a disk that lost a write would,
    /// leaving the causal context and vectors as they are.
    pub async fn forget_key(&self, key: &Key) -> Result<bool, StorageError> {
        let (ticket, had) = {
            let mut r = self.write_lock();
            let had = r.forget_entry(key);
            let t = self.stage(
                &r,
                [key],
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            (t, had)
        };
        self.store.durable(ticket).await?;
        Ok(had)
    }

    /// Drops logged deltas every peer has acknowledged.
    pub async fn truncate_log(&self, acked: &VersionVector) -> Result<usize, StorageError> {
        let (ticket, n) = {
            let mut r = self.write_lock();
            let dropped = r.truncate_acked(acked);
            if dropped.is_empty() {
                return Ok(0);
            }
            let t = self.stage(
                &r,
                std::iter::empty(),
                std::iter::empty(),
                &dropped,
                std::iter::empty(),
            );
            gauge_log(&r);
            (t, dropped.len())
        };
        self.store.durable(ticket).await?;
        Ok(n)
    }

    /// Drops every logged delta: for a node with no peers, which nobody will
    /// ever pull from.
    pub async fn truncate_all(&self) -> Result<usize, StorageError> {
        let all = self.peek(|r| r.version_vector().clone());
        self.truncate_log(&all).await
    }

    /// Returns the units of orders this node sold whenever a change — by any
    /// path: a push, a pull, a rights or move reply, a repair, this node's
    /// own restart — leaves one of them cancelled and not yet returned.
    pub async fn run_returns(self: Arc<Self>, shutdown: Shutdown) {
        let mut rx = self.subscribe();
        self.process_returns().await;
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.wait() => break,
            };
            let touches_orders = |keys: &[Key]| keys.iter().any(|k| matches!(k, Key::Order(_)));
            match ev {
                Ok(Event::Applied(a, _)) if touches_orders(&a.changed) => {}
                Ok(Event::Repaired(keys)) if touches_orders(&keys) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
            self.process_returns().await;
        }
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
        Op::Notified { .. } => "order_notified",
        Op::MoveOrder { .. } => "order_move",
        Op::ReturnUnits { .. } => "return_units",
        Op::Record { .. } => "idempotency_record",
        Op::ClearCart { .. } => "cart_clear",
        Op::Account { change, .. } => match change {
            crdt_core::ops::AccountChange::Register { .. } => "account_register",
            crdt_core::ops::AccountChange::StartSession { .. } => "account_login",
            crdt_core::ops::AccountChange::Rotate { .. } => "account_refresh",
            crdt_core::ops::AccountChange::Revoke { .. } => "account_revoke",
            crdt_core::ops::AccountChange::FailedLogin => "account_failed_login",
            _ => "account_update",
        },
        Op::Payment { change, .. } => match change {
            crdt_core::ops::PaymentChange::Start { .. } => "payment_start",
            crdt_core::ops::PaymentChange::Observe { .. } => "payment_observe",
            crdt_core::ops::PaymentChange::StartRefund { .. } => "refund_start",
            crdt_core::ops::PaymentChange::ObserveRefund { .. } => "refund_observe",
        },
    }
}
