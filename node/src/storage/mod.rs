//! Storage: one sled database per node, written in atomic batches and made
//! durable by group commit.
//!
//! Layout (one tree, prefixed keys, so one `apply_batch` is one atomic
//! transaction across all of them):
//!
//! | key | value |
//! |---|---|
//! | `s` + state key | the key's entry (envelope) |
//! | `L` + segment number (u64, big-endian) | a log segment: the deltas logged by one group commit, each a u32 little-endian length and its envelope |
//! | `l` + actor + seq | a logged delta (envelope) — the layout before segments, still read |
//! | `r` + newest HLC ms (u64, big-endian) + round (u64, big-endian) | a record segment: the idempotency records one group commit changed (module `records`) |
//! | `m` | the replica's causal metadata (envelope) |
//! | `i` | this store's incarnation (u32, big-endian) |
//!
//! Writers stage a batch while they hold the replica lock — encoding only,
//! so the lock is held for microseconds — and wait for [`Store::durable`].
//! Two pipelined threads (a WAL writer) take every batch queued since their
//! last round, merge them in ticket order into one atomic sled batch, apply
//! it and flush: one write-out and one fsync serve every waiter (group
//! commit). No write is acknowledged before the flush that carries it
//! completes. The deltas a round logs go into one segment — one sled insert
//! per round instead of one per write (measured: a quarter of a durable
//! write's cost was sled's per-insert work); a segment is deleted when the
//! last of its deltas leaves the log. Measured too: applying batches to sled
//! under the replica lock serialised writers behind sled's page cache; and
//! `flush_async`'s hand-off to sled's thread pool cost more CPU than the
//! flushes themselves.

pub mod disk_sync;
pub mod flusher;
pub mod incarnation;
mod records;
mod segments;

pub use flusher::{Durable, Flusher};
use records::StagedRecord;
use segments::{LogPlaces, segment_deltas};

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
    /// A stored record is cut short or malformed around its envelopes.
    #[error("the store holds a malformed record under {key}: {reason}")]
    Corrupt {
        /// The record's key, printable.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store's files could not be opened or synced.
    #[error("syncing the store at {path}: {source}")]
    Sync {
        /// The store directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
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
const SEGMENT: u8 = b'L';
const RECORDS: u8 = b'r';
const META: &[u8] = b"m";
const INCARNATION: &[u8] = b"i";

fn state_key(key: &Key) -> Vec<u8> {
    let mut k = vec![STATE];
    k.extend_from_slice(&key.to_bytes());
    k
}

/// One staged batch: keys to set (`Some`) or remove (`None`), deltas
/// entering the log and deltas leaving it.
struct Staged {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    records: Vec<StagedRecord>,
    logged: Vec<(Dot, Arc<[u8]>)>,
    dropped: Vec<Dot>,
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
    wanted: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    closing: std::sync::atomic::AtomicBool,
    /// Staged batches not yet applied, with their tickets, in ticket order.
    queue: std::sync::Mutex<Vec<(u64, Staged)>>,
    /// Where the logged deltas are stored (the writing stage's own).
    places: std::sync::Mutex<LogPlaces>,
    /// The number of the next record segment (the writing stage's).
    record_round: AtomicU64,
    /// The highest ticket on disk (a fast path for readers).
    durable_ticket: AtomicU64,
    /// The highest ticket written into sled (not yet necessarily synced),
    /// and whether the writing stage has stopped: the syncing stage waits on it.
    written: std::sync::Mutex<Written>,
    written_cv: std::sync::Condvar,
    /// The files to sync after each flush (taken by the syncing stage).
    disk: std::sync::Mutex<Option<disk_sync::DiskSync>>,
}

#[derive(Default)]
struct Written {
    ticket: u64,
    finished: bool,
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
        let mut next_round = 0u64;
        for kv in db.scan_prefix([RECORDS]) {
            let (k, v) = kv?;
            let (_, round) =
                records::parse_segment_key(&k).ok_or_else(|| StorageError::Corrupt {
                    key: format!("{:?}", &k[..]),
                    reason: "a record segment key is not 17 bytes long",
                })?;
            next_round = next_round.max(round + 1);
            let found = records::decode_segment(&v).ok_or_else(|| StorageError::Corrupt {
                key: format!("record segment {round}"),
                reason: "a record's length runs past the end of its segment",
            })?;
            entries.extend(found.into_iter().map(|(key, e)| (key, e.to_vec())));
        }
        let floors = &meta.log_floors;
        let below_floor = |dot: &Dot| dot.seq <= floors.get(&dot.actor).copied().unwrap_or(0);
        let mut log = Vec::new();
        let mut places = LogPlaces::default();
        let mut stale = sled::Batch::default();
        for kv in db.scan_prefix([LOG]) {
            let (k, v) = kv?;
            let d = crdt_core::Delta::decode(&v).map_err(|source| StorageError::Decode {
                key: format!("log {:?}", &k[..]),
                source,
            })?;
            if below_floor(&d.dot) {
                stale.remove(k);
            } else {
                places.place.insert(d.dot, None);
                log.push(v.to_vec());
            }
        }
        for kv in db.scan_prefix([SEGMENT]) {
            let (k, v) = kv?;
            let seg = <[u8; 8]>::try_from(&k[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt {
                    key: format!("{:?}", &k[..]),
                    reason: "a segment key is not 8 bytes long",
                })?;
            places.next = places.next.max(seg + 1);
            let deltas = segment_deltas(&v).ok_or_else(|| StorageError::Corrupt {
                key: format!("segment {seg}"),
                reason: "a delta's length runs past the end of the segment",
            })?;
            let mut live = 0u32;
            for bytes in deltas {
                let d = crdt_core::Delta::decode(bytes).map_err(|source| StorageError::Decode {
                    key: format!("segment {seg}"),
                    source,
                })?;
                if !below_floor(&d.dot) {
                    places.place.insert(d.dot, Some(seg));
                    live += 1;
                    log.push(bytes.to_vec());
                }
            }
            if live == 0 {
                stale.remove(k);
            } else {
                places.live.insert(seg, live);
            }
        }
        db.apply_batch(stale)?;
        db.flush()?;
        let disk = disk_sync::DiskSync::open(&path).map_err(|source| StorageError::Sync {
            path: path.clone(),
            source,
        })?;
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
            places: std::sync::Mutex::new(places),
            record_round: AtomicU64::new(next_round),
            durable_ticket: AtomicU64::new(0),
            written: std::sync::Mutex::new(Written::default()),
            written_cv: std::sync::Condvar::new(),
            disk: std::sync::Mutex::new(Some(disk)),
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
        let mut ops = Vec::with_capacity(2);
        let mut records = Vec::new();
        for key in keys {
            let entry = replica.state().encode_entry(key);
            match (key, entry) {
                (Key::Idem(k), Some(entry)) => records.push(StagedRecord {
                    key: *k,
                    entry,
                    ms: replica.idem_record(k, 0).map_or(0, |r| r.hlc.ms),
                }),
                // A record gone from memory leaves its segment to expire;
                // this removes one kept under a state key by earlier builds.
                (key, entry) => ops.push((state_key(key), entry)),
            }
        }
        ops.push((META.to_vec(), Some(codec::encode(&replica.meta()))));
        let staged = Staged {
            ops,
            records,
            logged: logged
                .into_iter()
                .map(|l| (l.dot, l.bytes.clone()))
                .collect(),
            dropped: dropped.into_iter().copied().collect(),
        };
        Ok(self.enqueue(staged))
    }

    /// Stages the deletion of record segments whose newest record was
    /// stamped before `cutoff_ms` (at most `max` of them): the on-disk half
    /// of the idempotency sweep. Returns the ticket and how many, or `None`
    /// when there are none.
    pub fn stage_expired_records(
        &self,
        cutoff_ms: u64,
        max: usize,
    ) -> Result<Option<(u64, usize)>, StorageError> {
        let end = records::segment_key(cutoff_ms, 0);
        let mut ops = Vec::new();
        let start = records::segment_key(0, 0);
        for kv in self.db.range(start..end).keys().take(max) {
            ops.push((kv?.to_vec(), None));
        }
        if ops.is_empty() {
            return Ok(None);
        }
        let n = ops.len();
        let staged = Staged {
            ops,
            records: Vec::new(),
            logged: Vec::new(),
            dropped: Vec::new(),
        };
        Ok(Some((self.enqueue(staged), n)))
    }

    /// Queues a staged batch for the flusher under the next ticket.
    fn enqueue(&self, staged: Staged) -> u64 {
        let ticket = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let t = self.staged.fetch_add(1, Ordering::SeqCst) + 1;
            q.push((t, staged));
            t
        };
        self.request_flush();
        ticket
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
    let (replica, stale) =
        Replica::restore(cfg(loaded.actor), loaded.meta, loaded.entries, loaded.log).map_err(
            |source| StorageError::Decode {
                key: "state".into(),
                source,
            },
        )?;
    if !stale.is_empty() {
        // Deltas the log's bound no longer holds: delete them with the
        // first group commit rather than carry them until the next restart.
        tracing::info!(
            deltas = stale.len(),
            "dropping logged deltas beyond the log's bound"
        );
        store.stage(&replica, std::iter::empty(), std::iter::empty(), &stale)?;
    }
    Ok((store, replica, loaded.fresh))
}
