//! Holds: keeping a request's batches out of the flush until the request
//! has staged all of them, so they reach the disk in one group commit.
//!
//! A keyed write stages its change, renders its answer, then stages the
//! idempotency record of that answer. Were the flusher to take the first
//! batch alone, the record would wait for the next round — a second sync on
//! the request's path — and a crash between the rounds would keep the write
//! without its record. Inside [`Store::holding`], the request's first staged
//! batch is *held*: the flusher takes only batches staged before it (tickets
//! are made durable in order, so later ones wait too, for the few
//! microseconds the request takes to stage its record). The hold is
//! released when the request waits for durability — at its end, or earlier
//! should it wait for anything (a read, a merge), which can therefore never
//! wait on its own hold — and when the request is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;

tokio::task_local! {
    /// The ticket this task holds (0: none yet), inside [`Store::holding`].
    static HOLD: Arc<AtomicU64>;
}

/// Releases the hold when the request ends, however it ends.
struct Release<'a> {
    store: &'a Store,
    held: Arc<AtomicU64>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.store.release(&self.held);
    }
}

impl Store {
    /// Runs `f` with its first staged batch held until it waits for
    /// durability or ends (see the module documentation).
    pub async fn holding<F: std::future::Future>(&self, f: F) -> F::Output {
        let held = Arc::new(AtomicU64::new(0));
        let _release = Release {
            store: self,
            held: held.clone(),
        };
        HOLD.scope(held, f).await
    }

    /// The hold of the current task, if it runs inside [`Store::holding`]
    /// and holds nothing yet: `stage` then registers its ticket there.
    pub(super) fn vacant_hold() -> Option<Arc<AtomicU64>> {
        HOLD.try_with(|h| h.clone())
            .ok()
            .filter(|h| h.load(Ordering::Acquire) == 0)
    }

    /// Releases the current task's hold, if any (before it waits).
    pub(super) fn release_current(&self) {
        if let Ok(h) = HOLD.try_with(|h| h.clone()) {
            self.release(&h);
        }
    }

    fn release(&self, held: &AtomicU64) {
        let t = held.swap(u64::MAX, Ordering::AcqRel);
        if t != 0 && t != u64::MAX {
            self.holds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&t);
            self.request_flush();
        }
    }

    /// The lowest held ticket: the flusher takes only batches below it.
    pub(super) fn lowest_hold(&self) -> Option<u64> {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .copied()
    }
}
