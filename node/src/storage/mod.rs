//! Storage: one sled database per node, written in atomic batches and made
//! durable by group commit.
//!
//! Layout (one tree, prefixed keys, so one `apply_batch` is one atomic
//! transaction across all of them):
//!
//! | key | value |
//! |---|---|
//! | `s` + state key | the key's entry (envelope) |
//! | `l` + actor + seq | a logged delta (envelope) |
//! | `m` | the replica's causal metadata (envelope) |
//! | `i` | this store's incarnation (u32, big-endian) |
//!
//! Writers stage a batch while they hold the replica lock — encoding only,
//! so the lock is held for microseconds — and wait for [`Store::durable`].
//! One flusher thread (a WAL writer) takes every batch queued since its last
//! round, merges them in ticket order into one atomic sled batch, applies it
//! and flushes: one write-out and one fsync serve every waiter (group
//! commit). No write is acknowledged before the flush that carries it
//! completes. Measured: applying batches to sled under the replica lock
//! serialised writers behind sled's page cache; and `flush_async`'s hand-off
//! to sled's thread pool cost more CPU than the flushes themselves.

pub mod incarnation;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crdt_core::codec::{self, DecodeError};
use crdt_core::{Actor, Dot, Key, NodeId, Replica, ReplicaMeta};
use tokio::sync::watch;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened (locked by another process, corrupt,
    /// unreadable directory).
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// What sled reported.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// Stored bytes could not be decoded.
    #[error("the store holds an undecodable record under {key}: {source}")]
    Decode {
        /// The record's key, printable.
        key: String,
        /// The decoding error.
        source: DecodeError,
    },
    /// The incarnation ledger could not be written.
    #[error("incarnation ledger in {path}: {source}")]
    Ledger {
        /// The node directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The flusher has stopped (the node is shutting down or storage failed).
    #[error("the store is closed")]
    Closed,
}

const STATE: u8 = b's';
const LOG: u8 = b'l';
const META: &[u8] = b"m";
const INCARNATION: &[u8] = b"i";

fn log_key(dot: &Dot) -> Vec<u8> {
    let node = dot.actor.node.as_str().as_bytes();
    let mut k = Vec::with_capacity(2 + node.len() + 12);
    k.push(LOG);
    k.push(node.len() as u8);
    k.extend_from_slice(node);
    k.extend_from_slice(&dot.actor.inc.to_be_bytes());
    k.extend_from_slice(&dot.seq.to_be_bytes());
    k
}

fn state_key(key: &Key) -> Vec<u8> {
    let mut k = vec![STATE];
    k.extend_from_slice(&key.to_bytes());
    k
}

/// One staged batch: keys to set (`Some`) or remove (`None`).
type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What was on disk when the store opened.
pub struct Loaded {
    /// This store's actor.
    pub actor: Actor,
    /// Whether the store was created just now.
    pub fresh: bool,
    /// The replica's metadata (default for a fresh store).
    pub meta: ReplicaMeta,
    /// Every state entry.
    pub entries: Vec<(Key, Vec<u8>)>,
    /// Every logged delta.
    pub log: Vec<Vec<u8>>,
}

/// A node's store.
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    staged: AtomicU64,
    flushed: watch::Sender<u64>,
    wanted: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    closing: std::sync::atomic::AtomicBool,
    /// Staged batches not yet applied, with their tickets, in ticket order.
    queue: std::sync::Mutex<Vec<(u64, Ops)>>,
    /// The highest ticket on disk (a fast path for readers).
    durable_ticket: AtomicU64,
    /// The highest ticket written into sled (not yet necessarily synced),
    /// and whether the writing stage has stopped: the syncing stage waits on it.
    written: std::sync::Mutex<Written>,
    written_cv: std::sync::Condvar,
}

#[derive(Default)]
struct Written {
    ticket: u64,
    finished: bool,
}

/// The running flusher; [`Flusher::stop`] makes the last flush and joins it.
pub struct Flusher {
    store: Arc<Store>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Flushes what is staged and stops the flusher's threads.
    pub fn stop(self) {
        self.store.closing.store(true, Ordering::Release);
        self.store.request_flush();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What one flush covered and cost, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct FlushStats {
    /// Batches made durable by this flush.
    pub batches: u64,
    /// How long the flush took.
    pub took: std::time::Duration,
}

impl Store {
    /// Opens (or creates) the store of node `id` under `node_dir`, and reads
    /// everything back.
    pub fn open(node_dir: &Path, id: NodeId) -> Result<(Arc<Store>, Loaded), StorageError> {
        let path = node_dir.join("store");
        let fresh = !path.join("conf").exists() && !path.join("db").exists();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(512 << 20)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from our own flushes; a background fsync
            // every 500 ms would only add work.
            .flush_every_ms(None)
            .open()
            .map_err(|source| StorageError::Open {
                path: path.clone(),
                source,
            })?;
        let inc = match db.get(INCARNATION)? {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            _ => {
                let (inc, found) =
                    incarnation::take_next(node_dir).map_err(|source| StorageError::Ledger {
                        path: node_dir.to_path_buf(),
                        source,
                    })?;
                if !found {
                    tracing::warn!(
                        inc,
                        "no incarnation ledger beside an empty store: taking a random incarnation"
                    );
                }
                db.insert(INCARNATION, &inc.to_be_bytes())?;
                db.flush()?;
                inc
            }
        };
        let actor = Actor { node: id, inc };
        let meta = match db.get(META)? {
            Some(v) => codec::decode::<ReplicaMeta>(&v).map_err(|source| StorageError::Decode {
                key: "meta".into(),
                source,
            })?,
            None => ReplicaMeta::default(),
        };
        let mut entries = Vec::new();
        for kv in db.scan_prefix([STATE]) {
            let (k, v) = kv?;
            let key = Key::from_bytes(&k[1..]).map_err(|source| StorageError::Decode {
                key: format!("{:?}", &k[..]),
                source,
            })?;
            entries.push((key, v.to_vec()));
        }
        let floors = &meta.log_floors;
        let mut log = Vec::new();
        let mut stale = sled::Batch::default();
        for kv in db.scan_prefix([LOG]) {
            let (k, v) = kv?;
            let d: crdt_core::Delta = codec::decode(&v).map_err(|source| StorageError::Decode {
                key: format!("log {:?}", &k[..]),
                source,
            })?;
            if d.dot.seq <= floors.get(&d.dot.actor).copied().unwrap_or(0) {
                stale.remove(k);
            } else {
                log.push(v.to_vec());
            }
        }
        db.apply_batch(stale)?;
        let (flushed, _) = watch::channel(0);
        let store = Arc::new(Store {
            db,
            path,
            staged: AtomicU64::new(0),
            flushed,
            wanted: std::sync::Mutex::new(false),
            wake: std::sync::Condvar::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            queue: std::sync::Mutex::new(Vec::new()),
            durable_ticket: AtomicU64::new(0),
            written: std::sync::Mutex::new(Written::default()),
            written_cv: std::sync::Condvar::new(),
        });
        Ok((
            store,
            Loaded {
                actor,
                fresh,
                meta,
                entries,
                log,
            },
        ))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stages, as one atomic batch, the entries of `keys` as they are in
    /// `replica` now, the given logged deltas, the removal of `dropped` log
    /// entries, and the replica's metadata. Call while holding the replica
    /// lock: tickets, and so the order in which batches reach disk, follow
    /// the order of changes in memory. The flusher applies the batch; wait
    /// for it with [`Store::durable`].
    pub fn stage<'a>(
        &self,
        replica: &Replica,
        keys: impl IntoIterator<Item = &'a Key>,
        logged: impl IntoIterator<Item = &'a crdt_core::delta_log::LoggedDelta>,
        dropped: impl IntoIterator<Item = &'a Dot>,
    ) -> Result<u64, StorageError> {
        let mut ops: Ops = Vec::with_capacity(4);
        for key in keys {
            ops.push((state_key(key), replica.state().encode_entry(key)));
        }
        for l in logged {
            ops.push((log_key(&l.dot), Some(l.bytes.to_vec())));
        }
        for d in dropped {
            ops.push((log_key(d), None));
        }
        ops.push((META.to_vec(), Some(codec::encode(&replica.meta()))));
        let ticket = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let t = self.staged.fetch_add(1, Ordering::SeqCst) + 1;
            q.push((t, ops));
            t
        };
        self.request_flush();
        Ok(ticket)
    }

    /// The ticket of the latest staged batch.
    pub fn staged(&self) -> u64 {
        self.staged.load(Ordering::SeqCst)
    }

    /// Waits until the batch with `ticket` (and every batch before it) is on
    /// disk.
    pub async fn durable(&self, ticket: u64) -> Result<(), StorageError> {
        if self.durable_ticket.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let mut rx = self.flushed.subscribe();
        if *rx.borrow_and_update() >= ticket {
            return Ok(());
        }
        loop {
            if rx.changed().await.is_err() {
                return Err(StorageError::Closed);
            }
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
        }
    }

    fn request_flush(&self) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        // Already asked for: the writer will take this batch with the others
        // (one wake-up per round, not one per write).
        if !*wanted {
            *wanted = true;
            self.wake.notify_one();
        }
    }

    /// Starts the flusher: a write-ahead-log style group commit in two
    /// pipelined stages on two OS threads. The writing stage takes every
    /// batch staged so far and writes them into sled as one atomic batch; the
    /// syncing stage runs sled's `flush` (write-out and fsync) and then
    /// declares durable every batch written before that flush began. While
    /// one group is being synced the next is already being written, so the
    /// CPU work of a group overlaps the fsync of the one before. A failed
    /// write or flush stops the process (fail-stop): acknowledged-means-
    /// durable could no longer be kept.
    pub fn start_flusher(
        self: &Arc<Self>,
        on_flush: impl FnMut(FlushStats) + Send + 'static,
    ) -> Flusher {
        let writer = {
            let store = self.clone();
            std::thread::Builder::new()
                .name("concord-write".into())
                .spawn(move || store.write_stage())
        };
        let syncer = {
            let store = self.clone();
            std::thread::Builder::new()
                .name("concord-flush".into())
                .spawn(move || store.sync_stage(on_flush))
        };
        Flusher {
            store: self.clone(),
            threads: [writer, syncer]
                .into_iter()
                .filter_map(Result::ok)
                .collect(),
        }
    }

    /// The writing stage: staged batches into sled, in ticket order.
    fn write_stage(&self) {
        let mut written = 0u64;
        loop {
            {
                let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
                while !*wanted && !self.closing.load(Ordering::Acquire) {
                    wanted = self.wake.wait(wanted).unwrap_or_else(|p| p.into_inner());
                }
                *wanted = false;
            }
            // Everything queued so far, in ticket order, as one batch: a
            // later write to a key replaces an earlier one, which is what
            // applying them one by one would leave on disk.
            let queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            if let Some(&(target, _)) = queued.last() {
                let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
                    std::collections::BTreeMap::new();
                for (_, ops) in queued {
                    merged.extend(ops);
                }
                let mut batch = sled::Batch::default();
                for (k, v) in merged {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                if let Err(e) = self.db.apply_batch(batch) {
                    self.fail_stop(&e);
                }
                written = target;
                let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
                w.ticket = target;
                self.written_cv.notify_one();
            }
            if self.closing.load(Ordering::Acquire) && self.staged() <= written {
                let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
                w.finished = true;
                self.written_cv.notify_one();
                return;
            }
        }
    }

    /// The syncing stage: one flush per round, covering every batch the
    /// writing stage finished before the round began.
    fn sync_stage(&self, mut on_flush: impl FnMut(FlushStats)) {
        let mut done = 0u64;
        loop {
            let (target, finished) = {
                let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
                while w.ticket <= done && !w.finished {
                    w = self.written_cv.wait(w).unwrap_or_else(|p| p.into_inner());
                }
                (w.ticket, w.finished)
            };
            if target > done {
                let started = std::time::Instant::now();
                if let Err(e) = self.db.flush() {
                    self.fail_stop(&e);
                }
                self.durable_ticket.store(target, Ordering::Release);
                self.flushed.send_replace(target);
                on_flush(FlushStats {
                    batches: target - done,
                    took: started.elapsed(),
                });
                done = target;
            } else if finished {
                return;
            }
        }
    }

    fn fail_stop(&self, e: &sled::Error) -> ! {
        tracing::error!(error = %e, path = %self.path.display(), "writing to the store failed: stopping so that no write is acknowledged undurably");
        std::process::exit(70);
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Opens the store and rebuilds the replica from it.
pub fn open_replica(
    node_dir: &Path,
    id: NodeId,
    mut cfg: impl FnMut(Actor) -> crdt_core::ReplicaConfig,
) -> Result<(Arc<Store>, Replica, bool), StorageError> {
    let (store, loaded) = Store::open(node_dir, id)?;
    let replica = Replica::restore(cfg(loaded.actor), loaded.meta, loaded.entries, loaded.log)
        .map_err(|source| StorageError::Decode {
            key: "state".into(),
            source,
        })?;
    Ok((store, replica, loaded.fresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_actor_then_sequence() {
        let a = Actor {
            node: NodeId::new("n1").unwrap(),
            inc: 0,
        };
        assert!(log_key(&Dot::new(a, 2)) < log_key(&Dot::new(a, 10)));
    }
}
