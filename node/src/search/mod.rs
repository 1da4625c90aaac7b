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

mod indexer;
mod snapshot;

pub use indexer::run_indexer;
use snapshot::version_of;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crdt_core::ProductId;
use crdt_core::catalog::ProductRecord;
use simd_search::{
    Bm25Index, Embedder, Filter, HashingEmbedder, Hnsw, HnswParams, Metric, RRF_C, SearchOptions,
    rrf_fuse,
};

use crate::engine::Engine;
use crate::metrics as m;

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
    /// Normalised SKU → label, and back: a query that is exactly a SKU
    /// answers that product first, whatever the fusion says.
    skus: HashMap<String, u64>,
    label_skus: HashMap<u64, String>,
    /// What each label was indexed from (a hash of its text, category and
    /// embedding): lets a loaded snapshot be checked product by product.
    versions: HashMap<u64, u64>,
    next_label: u64,
    /// While a compaction runs off the lock: the vector-index changes made
    /// since it started, replayed onto the compacted copy before the swap.
    journal: Option<Vec<Change>>,
}

/// One change to the vector index, as journaled during a compaction.
enum Change {
    Put(u64, Vec<f32>, u32),
    Delete(u64),
}

/// A SKU or query as compared for an exact-SKU match.
fn sku_key(s: &str) -> String {
    s.trim().to_lowercase()
}

impl Inner {
    fn set_sku(&mut self, label: u64, sku: &str) {
        self.drop_sku(label);
        let key = sku_key(sku);
        if !key.is_empty() {
            self.skus.insert(key.clone(), label);
            self.label_skus.insert(label, key);
        }
    }

    fn drop_sku(&mut self, label: u64) {
        if let Some(old) = self.label_skus.remove(&label)
            && self.skus.get(&old) == Some(&label)
        {
            self.skus.remove(&old);
        }
    }

    fn hnsw_put(
        &mut self,
        label: u64,
        v: Vec<f32>,
        cat: u32,
    ) -> Result<(), simd_search::IndexError> {
        self.hnsw.insert(label, &v, cat)?;
        if let Some(j) = &mut self.journal {
            j.push(Change::Put(label, v, cat));
        }
        Ok(())
    }

    fn hnsw_delete(&mut self, label: u64) {
        self.hnsw.delete(label);
        if let Some(j) = &mut self.journal {
            j.push(Change::Delete(label));
        }
    }
}

/// The node's search index.
pub struct SearchIndex {
    inner: RwLock<Inner>,
    embedder: HashingEmbedder,
    dim: usize,
    ready: AtomicBool,
    /// Wakes the indexer the moment the index becomes ready.
    became_ready: tokio::sync::Notify,
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
                skus: HashMap::new(),
                label_skus: HashMap::new(),
                versions: HashMap::new(),
                next_label: 1,
                journal: None,
            }),
            embedder,
            dim,
            ready: AtomicBool::new(false),
            became_ready: tokio::sync::Notify::new(),
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
            g.hnsw_delete(label);
        } else if let Err(e) = g.hnsw_put(label, v, cat) {
            tracing::warn!(%id, error = %e, "product not added to the vector index");
        }
        g.bm25.remove(label);
        g.bm25.add(label, &text);
        g.set_sku(label, &r.sku.value);
        g.product_category.insert(label, cat);
        g.versions.insert(label, version_of(r));
        ::metrics::gauge!(m::SEARCH_DOCS).set(g.labels.len() as f64);
    }

    /// Removes one product.
    pub fn remove(&self, id: &ProductId) {
        let mut g = self.lock();
        if let Some(label) = g.labels.remove(id) {
            g.ids.remove(&label);
            g.hnsw_delete(label);
            g.bm25.remove(label);
            g.drop_sku(label);
            g.product_category.remove(&label);
            g.versions.remove(&label);
        }
        ::metrics::gauge!(m::SEARCH_DOCS).set(g.labels.len() as f64);
    }

    /// Brings these products' entries in line with the replica. The records
    /// are copied out under the replica's lock and indexed after it is
    /// released, so writers never wait on embedding or graph work.
    pub fn sync_products(&self, engine: &Engine, ids: &[ProductId]) {
        for chunk in ids.chunks(256) {
            let records: Vec<(ProductId, Option<ProductRecord>)> =
                engine.peek(|r| chunk.iter().map(|id| (*id, r.product(id))).collect());
            for (id, r) in records {
                match r {
                    Some(r) => self.upsert(id, &r),
                    None => self.remove(&id),
                }
            }
        }
    }

    /// Whether deleted elements pass the rebuild threshold and no
    /// compaction is running.
    pub fn needs_compaction(&self) -> bool {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.journal.is_none() && g.hnsw.needs_rebuild()
    }

    /// Rebuilds the vector index without its deleted elements. The copy is
    /// built under a read lock — searches go on, and writes made meanwhile
    /// are journaled — then the journal is replayed onto it and it is
    /// swapped in. Blocking: run it on a blocking thread.
    pub fn compact(&self) {
        if !self.begin_compaction() {
            return;
        }
        let started = std::time::Instant::now();
        let copy = self.compacted_copy();
        let reclaimed = self.finish_compaction(copy);
        tracing::info!(
            reclaimed,
            live = self.len(),
            ms = started.elapsed().as_millis() as u64,
            "search index compacted"
        );
    }

    /// Starts journaling, unless a compaction runs or none is needed.
    fn begin_compaction(&self) -> bool {
        let mut g = self.lock();
        if g.journal.is_some() || !g.hnsw.needs_rebuild() {
            return false;
        }
        g.journal = Some(Vec::new());
        true
    }

    fn compacted_copy(&self) -> Hnsw {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.hnsw.compacted()
    }

    /// Replays the journal onto `fresh` and swaps it in; returns how many
    /// deleted elements were reclaimed. Replaying is idempotent: a change
    /// that is already in the copy lands the same way again.
    fn finish_compaction(&self, mut fresh: Hnsw) -> usize {
        let mut g = self.lock();
        for c in g.journal.take().unwrap_or_default() {
            match c {
                Change::Put(label, v, cat) => {
                    if let Err(e) = fresh.insert(label, &v, cat) {
                        tracing::warn!(label, error = %e, "journaled change not replayed");
                    }
                }
                Change::Delete(label) => {
                    fresh.delete(label);
                }
            }
        }
        let reclaimed = g.hnsw.deleted_len().saturating_sub(fresh.deleted_len());
        g.hnsw = fresh;
        reclaimed
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
        let mut fused = rrf_fuse(&[&vector, &lexical], k, RRF_C);
        // A query that is exactly a SKU means that product: it goes first.
        if let Some(&label) = g.skus.get(&sku_key(q))
            && cat.is_none_or(|c| g.product_category.get(&label) == Some(&c))
        {
            let top = fused.first().map_or(1.0, |f| f.1);
            fused.retain(|(l, _)| *l != label);
            fused.insert(0, (label, top.max(1.0 / (RRF_C + 1.0)) + f32::EPSILON));
            fused.truncate(k);
        }
        fused
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::catalog::NewProduct;
    use crdt_core::money::{Currency, Money};
    use crdt_core::{Actor, NodeId, Op, Replica, ReplicaConfig};

    /// A replica holding `n` products named after distinct words.
    fn catalog(n: usize) -> (Replica, Vec<ProductId>) {
        let mut r = Replica::new(ReplicaConfig::new(Actor::first(NodeId::new("n1").unwrap())));
        let ids: Vec<ProductId> = (0..n)
            .map(|i| ProductId(uuid::Uuid::from_u128(i as u128 + 1)))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let product = NewProduct {
                sku: format!("SKU-{i}"),
                name: format!("item{i} lamp"),
                description: format!("word{i} word{}", i * 7),
                price: Money {
                    minor: 100,
                    currency: Currency::new("USD").unwrap(),
                },
                category: "home".into(),
                tags: vec![],
                attributes: Default::default(),
                embedding: None,
            };
            r.apply_local(
                Op::CreateProduct {
                    id: *id,
                    product,
                    initial_stock: 0,
                },
                1,
            )
            .unwrap();
        }
        (r, ids)
    }

    fn found(ix: &SearchIndex, q: &str, id: ProductId) -> bool {
        ix.search(q, 10, None).iter().any(|h| h.id == id)
    }

    #[test]
    fn compaction_keeps_changes_made_while_it_ran() {
        let dir = std::env::temp_dir().join(format!("concord-search-{}", std::process::id()));
        let (r, ids) = catalog(300);
        let ix = SearchIndex::new(64, &dir).unwrap();
        for id in &ids {
            ix.upsert(*id, &r.product(id).unwrap());
        }
        for id in &ids[..200] {
            ix.remove(id);
        }
        assert!(ix.needs_compaction());
        assert!(ix.begin_compaction());
        assert!(!ix.needs_compaction(), "one compaction at a time");
        let copy = ix.compacted_copy();
        // Writes while the copy is built: one product deleted, one re-added.
        ix.remove(&ids[250]);
        ix.upsert(ids[10], &r.product(&ids[10]).unwrap());
        let reclaimed = ix.finish_compaction(copy);
        assert!(reclaimed >= 200, "reclaimed {reclaimed}");
        assert!(!found(&ix, "item250 lamp SKU-250", ids[250]));
        assert!(found(&ix, "item10 lamp SKU-10", ids[10]));
        assert!(found(&ix, "item299 lamp SKU-299", ids[299]));
        assert!(!found(&ix, "item5 lamp SKU-5", ids[5]));
        let g = ix.inner.read().unwrap();
        assert_eq!(g.hnsw.len(), 100);
        assert!(g.hnsw.deleted_len() <= 1);
    }

    #[test]
    fn a_query_that_is_a_sku_answers_that_product_first() {
        let dir = std::env::temp_dir().join(format!("concord-sku-{}", std::process::id()));
        let (r, ids) = catalog(50);
        let ix = SearchIndex::new(64, &dir).unwrap();
        for id in &ids {
            ix.upsert(*id, &r.product(id).unwrap());
        }
        for i in [0, 7, 42] {
            let hits = ix.search(&format!(" sku-{i} "), 5, None);
            assert_eq!(hits[0].id, ids[i], "SKU-{i}");
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            assert!(hits.iter().filter(|h| h.id == ids[i]).count() == 1);
        }
        assert!(ix.search("SKU-7", 5, Some("garden")).is_empty());
        ix.remove(&ids[7]);
        assert!(ix.search("SKU-7", 5, None).iter().all(|h| h.id != ids[7]));
    }
}
