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
//! Writers stage a batch while they hold the replica lock (so disk order is
//! memory order), then wait for [`Store::durable`]. One flusher task serves
//! every waiter with a single `flush_async`: sled's flush makes stable
//! everything written before it, so a flush that starts after a batch was
//! staged covers it. No write is acknowledged before its flush completes.

pub mod incarnation;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crdt_core::codec::{self, DecodeError};
use crdt_core::{Actor, Dot, Key, NodeId, Replica, ReplicaMeta};
use tokio::sync::{Notify, watch};

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
    wake: Notify,
}

/// Counts of what one flush covered, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct FlushStats {
    /// Batches made durable by this flush.
    pub batches: u64,
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
            wake: Notify::new(),
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
    /// lock. Returns the ticket to wait on with [`Store::durable`].
    pub fn stage<'a>(
        &self,
        replica: &Replica,
        keys: impl IntoIterator<Item = &'a Key>,
        logged: impl IntoIterator<Item = &'a crdt_core::delta_log::LoggedDelta>,
        dropped: impl IntoIterator<Item = &'a Dot>,
    ) -> Result<u64, StorageError> {
        let mut b = sled::Batch::default();
        for key in keys {
            match replica.state().encode_entry(key) {
                Some(bytes) => b.insert(state_key(key), bytes),
                None => b.remove(state_key(key)),
            }
        }
        for l in logged {
            b.insert(log_key(&l.dot), &l.bytes[..]);
        }
        for d in dropped {
            b.remove(log_key(d));
        }
        b.insert(META, codec::encode(&replica.meta()));
        self.db.apply_batch(b)?;
        Ok(self.staged.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The ticket of the latest staged batch.
    pub fn staged(&self) -> u64 {
        self.staged.load(Ordering::SeqCst)
    }

    /// Waits until the batch with `ticket` (and every batch before it) is on
    /// disk.
    pub async fn durable(&self, ticket: u64) -> Result<(), StorageError> {
        let mut rx = self.flushed.subscribe();
        loop {
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
            self.wake.notify_one();
            if rx.changed().await.is_err() {
                return Err(StorageError::Closed);
            }
        }
    }

    /// The flusher: one `flush_async` per round serves every batch staged
    /// before it started. Runs until `shutdown`; a failed flush stops the
    /// process (fail-stop), because acknowledged-means-durable can no longer
    /// be kept.
    pub async fn run_flusher(
        self: Arc<Self>,
        mut on_flush: impl FnMut(FlushStats) + Send,
        shutdown: crate::shutdown::Shutdown,
    ) {
        let mut done = 0u64;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait() => {
                    let target = self.staged();
                    if let Err(e) = self.db.flush_async().await {
                        tracing::error!(error = %e, "final flush failed");
                    } else {
                        self.flushed.send_replace(target);
                    }
                    return;
                }
            }
            let target = self.staged();
            if target <= done {
                continue;
            }
            match self.db.flush_async().await {
                Ok(_) => {
                    self.flushed.send_replace(target);
                    on_flush(FlushStats {
                        batches: target - done,
                    });
                    done = target;
                }
                Err(e) => {
                    tracing::error!(error = %e, path = %self.path.display(), "flush failed: stopping so that no write is acknowledged undurably");
                    std::process::exit(70);
                }
            }
        }
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
