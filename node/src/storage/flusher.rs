//! Group commit: the two pipelined threads that make staged batches durable.
//!
//! The writing stage takes every batch staged since its last round, merges
//! them in ticket order into one atomic sled batch and applies it. The
//! syncing stage runs one sled `flush` (write-out), then one real sync of the
//! store's files ([`super::disk_sync`]), and only then declares durable every
//! batch written before that round began. While one group is being synced the
//! next is already being written, so the CPU work of a group overlaps the
//! sync of the one before.
//!
//! After each sync, and before any waiter is woken, the flusher calls the
//! `on_durable` hook with the new durable ticket: the engine publishes there
//! the changes that just became durable, on this thread, whether or not the
//! client that asked for them is still waiting. A failed write, flush or sync
//! stops the process (fail-stop): acknowledged-means-durable could no longer
//! be kept, and a failed fsync must never be retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Store;
use super::disk_sync::DiskSync;

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

/// One group made durable: what it covered and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct Durable {
    /// Every batch with a ticket up to this one is now on stable storage.
    pub ticket: u64,
    /// Batches this group covered.
    pub batches: u64,
    /// How long the flush and the sync took together.
    pub took: Duration,
    /// Sync calls (`fdatasync`/`fsync`) this group made.
    pub syncs: u32,
}

impl Store {
    /// Starts the flusher's two threads. `on_durable` runs on the syncing
    /// thread after each group is synced and before its waiters wake.
    pub fn start_flusher(
        self: &Arc<Self>,
        on_durable: impl FnMut(Durable) + Send + 'static,
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
                .spawn(move || store.sync_stage(on_durable))
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
                let (mut logged, mut dropped, mut records) = (Vec::new(), Vec::new(), Vec::new());
                for (_, st) in queued {
                    merged.extend(st.ops);
                    logged.extend(st.logged);
                    dropped.extend(st.dropped);
                    records.extend(st.records);
                }
                let mut batch = sled::Batch::default();
                for (k, v) in merged {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                if let Some((newest, value)) = super::records::encode_segment(records) {
                    let round = self.record_round.fetch_add(1, Ordering::Relaxed);
                    batch.insert(&super::records::segment_key(newest, round), value);
                }
                self.places
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .apply(&mut batch, logged, dropped);
                if let Err(e) = self.db.apply_batch(batch) {
                    self.fail_stop("writing a batch", &e);
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

    /// The syncing stage: one flush and one sync per round, covering every
    /// batch the writing stage finished before the round began.
    fn sync_stage(&self, mut on_durable: impl FnMut(Durable)) {
        let mut disk: DiskSync = match self.disk.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(d) => d,
            None => self.fail_stop("starting the flusher", &"the store has no sync handle"),
        };
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
                let started = Instant::now();
                if let Err(e) = self.db.flush() {
                    self.fail_stop("flushing sled", &e);
                }
                let syncs = match disk.sync() {
                    Ok(n) => n,
                    Err(e) => self.fail_stop("syncing the store's files", &e),
                };
                on_durable(Durable {
                    ticket: target,
                    batches: target - done,
                    took: started.elapsed(),
                    syncs,
                });
                self.durable_ticket.store(target, Ordering::Release);
                self.flushed.send_replace(target);
                done = target;
            } else if finished {
                return;
            }
        }
    }

    fn fail_stop(&self, what: &str, e: &dyn std::fmt::Display) -> ! {
        tracing::error!(error = %e, path = %self.path.display(), "{what} failed: stopping so that no write is acknowledged undurably");
        std::process::exit(70);
    }
}
