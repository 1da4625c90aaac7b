//! The search replica: every node indexes its own copy of the catalog, so a
//! search never leaves the node.
//!
//! Two indexes, fused by reciprocal rank: the HNSW vector index (semantic
//! neighbours of the query's embedding) and a BM25 lexical index (so an
//! exact name or SKU never loses to the approximation). Both are *derived*
//! state: the indexer keeps them in step with applied deltas, a snapshot of
//! the HNSW graph is saved beside the store, and at start-up the node loads
//! the snapshot when it matches the catalog's digest, or rebuilds from the
//! store. `/ready` waits for that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crdt_core::catalog::ProductRecord;
use crdt_core::codec::{self, Kind};
use crdt_core::{Key, ProductId, Replica};
use serde::{Deserialize, Serialize};
use simd_search::{
    Bm25Index, Embedder, Filter, HashingEmbedder, Hnsw, HnswParams, Metric, RRF_C, SearchOptions,
    rrf_fuse,
};
use tokio::sync::broadcast::error::RecvError;

use crate::engine::{Engine, Event};
use crate::metrics as m;
use crate::shutdown::Shutdown;

/// Revision of the snapshot file's body.
const SNAPSHOT_REVISION: u8 = 1;

/// One search hit.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The product.
    pub id: ProductId,
    /// Fused score (reciprocal-rank fusion; higher is better).
    pub score: f32,
}

struct Inner {
    hnsw: Hnsw,
    bm25: Bm25Index,
    labels: HashMap<ProductId, u64>,
    ids: HashMap<u64, ProductId>,
    categories: HashMap<String, u32>,
    product_category: HashMap<u64, u32>,
    /// What each label was indexed from (a hash of its text, category and
    /// embedding): lets a loaded snapshot be checked product by product.
    versions: HashMap<u64, u64>,
    next_label: u64,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    docs: Vec<(ProductId, u64, u64)>,
    categories: Vec<(String, u32)>,
    next_label: u64,
    hnsw: Vec<u8>,
}

/// A fingerprint of what search indexes of a product.
fn version_of(r: &ProductRecord) -> u64 {
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

/// The node's search index.
pub struct SearchIndex {
    inner: RwLock<Inner>,
    embedder: HashingEmbedder,
    dim: usize,
    ready: AtomicBool,
    snapshot_path: PathBuf,
}

/// Why the search index could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Bad parameters (an embedding dimension the index refuses).
    #[error("search index: {0}")]
    Setup(String),
}

fn params() -> HnswParams {
    HnswParams {
        m: 16,
        ef_construction: 200,
        ef_search: 64,
        seed: 0x00C0_FFEE,
        rebuild_ratio: 0.25,
    }
}

fn is_zero(v: &[f32]) -> bool {
    v.iter().all(|x| *x == 0.0)
}

impl SearchIndex {
    /// An empty index for `dim`-dimensional embeddings, snapshotting to
    /// `node_dir/search.idx`.
    pub fn new(dim: usize, node_dir: &Path) -> Result<Arc<Self>, SearchError> {
        let embedder = HashingEmbedder::new(dim).map_err(|e| SearchError::Setup(e.to_string()))?;
        let hnsw = Hnsw::new(dim, Metric::Cosine, params())
            .map_err(|e| SearchError::Setup(e.to_string()))?;
        Ok(Arc::new(Self {
            inner: RwLock::new(Inner {
                hnsw,
                bm25: Bm25Index::new(),
                labels: HashMap::new(),
                ids: HashMap::new(),
                categories: HashMap::new(),
                product_category: HashMap::new(),
                versions: HashMap::new(),
                next_label: 1,
            }),
            embedder,
            dim,
            ready: AtomicBool::new(false),
            snapshot_path: node_dir.join("search.idx"),
        }))
    }

    /// Whether the index has been loaded or rebuilt.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The embedder used for product text and queries.
    pub fn embedder(&self) -> &HashingEmbedder {
        &self.embedder
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn embedding_of(&self, r: &ProductRecord) -> Vec<f32> {
        match &r.embedding.value {
            Some(e) if e.0.len() == self.dim => e.0.clone(),
            _ => self.embedder.embed(&r.search_text()),
        }
    }

    /// Indexes (or re-indexes) one product.
    pub fn upsert(&self, id: ProductId, r: &ProductRecord) {
        let v = self.embedding_of(r);
        let text = r.search_text();
        let mut g = self.lock();
        let next = g.categories.len() as u32;
        let cat = *g.categories.entry(r.category.value.clone()).or_insert(next);
        let label = match g.labels.get(&id) {
            Some(l) => *l,
            None => {
                let l = g.next_label;
                g.next_label += 1;
                g.labels.insert(id, l);
                g.ids.insert(l, id);
                l
            }
        };
        if is_zero(&v) {
            g.hnsw.delete(label);
        } else if let Err(e) = g.hnsw.insert(label, &v, cat) {
            tracing::warn!(%id, error = %e, "product not added to the vector index");
        }
        g.bm25.remove(label);
        g.bm25.add(label, &text);
        g.product_category.insert(label, cat);
        g.versions.insert(label, version_of(r));
        ::metrics::gauge!(m::SEARCH_DOCS).set(g.labels.len() as f64);
    }

    /// Removes one product.
    pub fn remove(&self, id: &ProductId) {
        let mut g = self.lock();
        if let Some(label) = g.labels.remove(id) {
            g.ids.remove(&label);
            g.hnsw.delete(label);
            g.bm25.remove(label);
            g.product_category.remove(&label);
            g.versions.remove(&label);
        }
        if g.hnsw.needs_rebuild() {
            g.hnsw.rebuild();
        }
        ::metrics::gauge!(m::SEARCH_DOCS).set(g.labels.len() as f64);
    }

    /// Brings one product's entry in line with the replica.
    pub fn sync_product(&self, replica: &Replica, id: &ProductId) {
        match replica.product(id) {
            Some(r) => self.upsert(*id, &r),
            None => self.remove(id),
        }
    }

    /// The best `k` products for a query, optionally in one category.
    pub fn search(&self, q: &str, k: usize, category: Option<&str>) -> Vec<SearchHit> {
        let qv = self.embedder.embed(q);
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let cat = match category {
            Some(c) => match g.categories.get(c) {
                Some(id) => Some(*id),
                None => return Vec::new(),
            },
            None => None,
        };
        let depth = (k * 4).max(40);
        let mut vector: Vec<(u64, f32)> = Vec::new();
        if !is_zero(&qv) {
            let mut opts = SearchOptions::new(depth).ef(depth.max(64));
            if let Some(c) = cat {
                opts = opts.filter(Filter::Category(c));
            }
            if let Ok(hits) = g.hnsw.search_with(&qv, &opts) {
                vector = hits
                    .into_iter()
                    .map(|h| (h.label, 1.0 - h.distance))
                    .collect();
            }
        }
        let mut lexical = g.bm25.search(q, depth * 2);
        if let Some(c) = cat {
            lexical.retain(|(l, _)| g.product_category.get(l) == Some(&c));
        }
        lexical.truncate(depth);
        rrf_fuse(&[&vector, &lexical], k, RRF_C)
            .into_iter()
            .filter_map(|(l, score)| g.ids.get(&l).map(|id| SearchHit { id: *id, score }))
            .collect()
    }

    /// Number of indexed products.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .labels
            .len()
    }

    /// Whether no product is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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

/// Keeps the index in step with the engine's published changes; saves a
/// snapshot now and then and at shutdown.
pub async fn run_indexer(index: Arc<SearchIndex>, engine: Arc<Engine>, shutdown: Shutdown) {
    let mut rx = engine.subscribe();
    // Changes made while the index loads wait in the channel until it is ready.
    while !index.is_ready() {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            _ = shutdown.wait() => return,
        }
    }
    let mut dirty = false;
    let mut save_tick = tokio::time::interval(std::time::Duration::from_secs(30));
    save_tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(Event::Applied(a, _)) => {
                    let ids: Vec<ProductId> = a.changed.iter().filter_map(|k| match k { Key::Product(p) => Some(*p), _ => None }).collect();
                    if !ids.is_empty() {
                        engine.peek(|r| ids.iter().for_each(|id| index.sync_product(r, id)));
                        dirty = true;
                    }
                }
                Ok(Event::Repaired(keys)) => {
                    let ids: Vec<ProductId> = keys.iter().filter_map(|k| match k { Key::Product(p) => Some(*p), _ => None }).collect();
                    engine.peek(|r| ids.iter().for_each(|id| index.sync_product(r, id)));
                    dirty |= !ids.is_empty();
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "search indexer fell behind: resynchronising every product");
                    engine.peek(|r| {
                        let ids: Vec<ProductId> = r.state().products.iter().map(|(k, _)| *k).collect();
                        ids.iter().for_each(|id| index.sync_product(r, id));
                        let stale: Vec<ProductId> = {
                            let g = index.inner.read().unwrap_or_else(|p| p.into_inner());
                            g.labels.keys().filter(|p| r.state().products.get(p).is_none()).copied().collect()
                        };
                        stale.iter().for_each(|id| index.remove(id));
                    });
                    dirty = true;
                }
                Err(RecvError::Closed) => break,
            },
            _ = save_tick.tick() => {
                if dirty {
                    if let Err(e) = index.save_snapshot() {
                        tracing::warn!(error = %e, "could not save the search snapshot");
                    }
                    dirty = false;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    if let Err(e) = index.save_snapshot() {
        tracing::warn!(error = %e, "could not save the search snapshot at shutdown");
    }
}
