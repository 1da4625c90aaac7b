//! The saved search index: the HNSW graph and its label maps, written
//! beside the store so a restart need not re-embed the catalog; at start-up
//! it is checked product by product against the store.

use std::sync::atomic::Ordering;

use crdt_core::ProductId;
use crdt_core::catalog::ProductRecord;
use crdt_core::codec::{self, Kind};
use serde::{Deserialize, Serialize};
use simd_search::Hnsw;

use super::SearchIndex;
use crate::engine::Engine;
use crate::metrics as m;

/// Revision of the snapshot file's body.
const SNAPSHOT_REVISION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    docs: Vec<(ProductId, u64, u64)>,
    categories: Vec<(String, u32)>,
    next_label: u64,
    hnsw: Vec<u8>,
}

/// A fingerprint of what search indexes of a product.
pub(super) fn version_of(r: &ProductRecord) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(r.search_text().as_bytes());
    h.update(&[0]);
    h.update(r.category.value.as_bytes());
    if let Some(e) = &r.embedding.value {
        for x in &e.0 {
            h.update(&x.to_le_bytes());
        }
    }
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

impl SearchIndex {
    /// Loads the snapshot (if there is a readable one), then checks it
    /// product by product against `replica` — re-indexing what changed since,
    /// dropping what is gone — and marks the index ready. Without a snapshot
    /// this is a full rebuild, with progress in the log.
    pub fn load_or_rebuild(&self, engine: &Engine) {
        let loaded = self.load_snapshot();
        // Read the catalog in small chunks, so writers never wait long on a
        // rebuild; changes made meanwhile reach the indexer as events, which
        // it applies once this is done.
        let ids: Vec<ProductId> =
            engine.peek(|r| r.state().products.iter().map(|(k, _)| *k).collect());
        let total = ids.len();
        tracing::info!(
            products = total,
            snapshot = loaded,
            "bringing the search index in line with the store"
        );
        let (mut reindexed, mut done) = (0usize, 0usize);
        let mut next_report = total / 10;
        for chunk in ids.chunks(256) {
            let records: Vec<(ProductId, ProductRecord)> = engine.peek(|r| {
                chunk
                    .iter()
                    .filter_map(|id| r.product(id).map(|p| (*id, p)))
                    .collect()
            });
            for (id, r) in records {
                let current = {
                    let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
                    g.labels.get(&id).and_then(|l| g.versions.get(l)).copied()
                };
                if current == Some(version_of(&r)) {
                    // The graph is right; the lexical index is not saved.
                    let mut g = self.lock();
                    if let Some(&label) = g.labels.get(&id) {
                        let cat = g.hnsw.category(label).unwrap_or(0);
                        g.bm25.add(label, &r.search_text());
                        g.set_sku(label, &r.sku.value);
                        g.product_category.insert(label, cat);
                    }
                } else {
                    self.upsert(id, &r);
                    reindexed += 1;
                }
                done += 1;
                if total >= 1_000 && done >= next_report {
                    tracing::info!(done, total, "search index progress");
                    next_report += total / 10;
                }
            }
        }
        let live: std::collections::HashSet<ProductId> = ids.into_iter().collect();
        let stale: Vec<ProductId> = {
            let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
            g.labels
                .keys()
                .filter(|p| !live.contains(p))
                .copied()
                .collect()
        };
        stale.iter().for_each(|id| self.remove(id));
        tracing::info!(
            products = done,
            reindexed,
            removed = stale.len(),
            "search index ready"
        );
        ::metrics::gauge!(m::SEARCH_DOCS).set(self.len() as f64);
        self.ready.store(true, Ordering::Release);
        self.became_ready.notify_waiters();
    }

    fn load_snapshot(&self) -> bool {
        let Ok(bytes) = std::fs::read(&self.snapshot_path) else {
            return false;
        };
        let body = match codec::open(Kind::SEARCH_INDEX, SNAPSHOT_REVISION, &bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable search snapshot");
                return false;
            }
        };
        let snap: Snapshot = match postcard::from_bytes(body) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed search snapshot");
                return false;
            }
        };
        let hnsw = match Hnsw::from_bytes(&snap.hnsw) {
            Ok(h) if h.dim() == self.dim => h,
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a corrupt search snapshot");
                return false;
            }
        };
        let mut g = self.lock();
        g.hnsw = hnsw;
        g.labels = snap.docs.iter().map(|(p, l, _)| (*p, *l)).collect();
        g.ids = snap.docs.iter().map(|(p, l, _)| (*l, *p)).collect();
        g.versions = snap.docs.iter().map(|(_, l, v)| (*l, *v)).collect();
        g.categories = snap.categories.into_iter().collect();
        g.next_label = snap.next_label;
        true
    }

    /// Saves the HNSW graph and label maps beside the store. Written to a
    /// temporary file and renamed, so a crash never leaves half a snapshot;
    /// a snapshot that lags the catalog is fixed at load time.
    pub fn save_snapshot(&self) -> std::io::Result<()> {
        let body = {
            let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let snap = Snapshot {
                docs: g
                    .labels
                    .iter()
                    .map(|(p, l)| (*p, *l, g.versions.get(l).copied().unwrap_or(0)))
                    .collect(),
                categories: g.categories.iter().map(|(c, i)| (c.clone(), *i)).collect(),
                next_label: g.next_label,
                hnsw: g.hnsw.to_bytes(),
            };
            postcard::to_allocvec(&snap).map_err(std::io::Error::other)?
        };
        let bytes = codec::seal(Kind::SEARCH_INDEX, SNAPSHOT_REVISION, &body);
        let tmp = self.snapshot_path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.snapshot_path)
    }
}
