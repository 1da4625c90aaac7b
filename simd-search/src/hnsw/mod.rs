//! Hierarchical Navigable Small World graphs (Malkov & Yashunin,
//! arXiv:1603.09320): the approximate nearest-neighbour index behind
//! product search.
//!
//! [`Hnsw`] owns the graph plus what the node needs around it: caller
//! labels (`u64`; the node maps product UUIDs to them), one category per
//! element for filtered search, tombstones for deletion, and a pool of
//! search buffers so concurrent `&self` queries allocate nothing.
//!
//! Deletion marks a node; the node stays in the graph as a waypoint (so
//! recall does not drop around it) but never appears in results. Once
//! tombstones pass [`HnswParams::rebuild_ratio`], [`Hnsw::needs_rebuild`]
//! says so and [`Hnsw::compacted`] builds a clean copy from a shared
//! reference — the node runs it in a background task and swaps the result
//! in. An update is a delete plus an insert.
//!
//! Code map: `params` (knobs, errors), `graph` (flat storage, level draws),
//! `search` (layer search, exact scan), `construction` (insertion,
//! heuristic), `query` (the public search API, filters), `persist` (bytes).

mod construction;
mod graph;
mod params;
mod persist;
mod query;
mod search;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::distance::{Block, Kernel, Metric, RowKernel};
use crate::embedder::{normalize, validate_embedding};
use construction::BuildScratch;
use graph::{Graph, LevelSampler};

pub use params::{
    HnswParams, IndexError, MAX_DIM, MAX_EF, MAX_LEVEL, MAX_M, MAX_NODES, ParamsError,
};
pub use persist::{FORMAT_VERSION, LoadError};
pub use query::{Filter, Hit, Plan, SearchOptions};
pub use search::SearchScratch;

/// The members of one category, for counting a filter's selectivity and
/// for the exact scan of selective filters.
#[derive(Debug, Clone, Default)]
struct Members {
    /// Node ids with this category, deleted ones included, ascending.
    ids: Vec<u32>,
    /// How many of `ids` are live.
    live: usize,
}

/// An HNSW index of `dim`-dimensional `f32` vectors under one [`Metric`],
/// each with a caller-chosen `u64` label and `u32` category.
///
/// Mutation takes `&mut self`; searches take `&self` and may run
/// concurrently (each borrows its own scratch buffers from an internal pool).
pub struct Hnsw {
    /// How distances are measured.
    metric: Metric,
    /// Construction and search parameters.
    params: HnswParams,
    /// The distance kernels chosen for this CPU at construction.
    kernel: Kernel,
    /// `kernel`'s row functions for `metric`, resolved once.
    rows: RowKernel,
    /// Vectors and links.
    graph: Graph,
    /// Per node: the caller's label.
    labels: Vec<u64>,
    /// Per node: the caller's category.
    categories: Vec<u32>,
    /// Per node: tombstone flag.
    deleted: Vec<bool>,
    /// Number of tombstones.
    deleted_count: usize,
    /// Live label → node id.
    by_label: HashMap<u64, u32>,
    /// Category → its members.
    by_category: HashMap<u32, Members>,
    /// Level draws.
    sampler: LevelSampler,
    /// Insertion buffers.
    build: BuildScratch,
    /// Idle search buffers for `&self` searches.
    scratch: Mutex<Vec<SearchScratch>>,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.graph.dim)
            .field("metric", &self.metric)
            .field("len", &self.len())
            .field("deleted", &self.deleted_count)
            .field("params", &self.params)
            .field("kernel", &self.kernel.name())
            .finish()
    }
}

impl Hnsw {
    /// An empty index, with the fastest distance kernel this CPU supports
    /// (see [`Kernel::detect`]).
    pub fn new(dim: usize, metric: Metric, params: HnswParams) -> Result<Self, ParamsError> {
        Self::with_kernel(dim, metric, params, Kernel::detect())
    }

    /// An empty index using the given kernel (tests and benchmarks use it
    /// to compare implementations).
    pub fn with_kernel(
        dim: usize,
        metric: Metric,
        params: HnswParams,
        kernel: Kernel,
    ) -> Result<Self, ParamsError> {
        params.validate()?;
        if dim == 0 || dim > MAX_DIM {
            return Err(ParamsError::Dim(dim));
        }
        Ok(Self::empty(dim, metric, params, kernel))
    }

    /// An empty index from parameters already validated.
    fn empty(dim: usize, metric: Metric, params: HnswParams, kernel: Kernel) -> Hnsw {
        Hnsw {
            metric,
            params,
            kernel,
            rows: kernel.rows(metric),
            graph: Graph::new(dim, params.m),
            labels: Vec::new(),
            categories: Vec::new(),
            deleted: Vec::new(),
            deleted_count: 0,
            by_label: HashMap::new(),
            by_category: HashMap::new(),
            sampler: LevelSampler::new(params.m, params.seed),
            build: BuildScratch::default(),
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.graph.dim
    }

    /// The metric distances are measured in.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The parameters the index was built with.
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// The distance kernel in use (its name is worth logging).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Number of live (searchable) elements.
    pub fn len(&self) -> usize {
        self.by_label.len()
    }

    /// Whether no live element remains.
    pub fn is_empty(&self) -> bool {
        self.by_label.is_empty()
    }

    /// Number of deleted elements still occupying the graph.
    pub fn deleted_len(&self) -> usize {
        self.deleted_count
    }

    /// Whether `label` is live in the index.
    pub fn contains(&self, label: u64) -> bool {
        self.by_label.contains_key(&label)
    }

    /// The category `label` was inserted with, if it is live.
    pub fn category(&self, label: u64) -> Option<u32> {
        self.by_label
            .get(&label)
            .map(|&id| self.categories[id as usize])
    }

    /// Inserts `vector` under `label` in `category`; an existing `label`
    /// is replaced (delete + insert). Returns whether a label was replaced.
    /// The vector is checked first ([`validate_embedding`]), and with
    /// [`Metric::Cosine`] normalised; on error nothing changes.
    pub fn insert(
        &mut self,
        label: u64,
        vector: &[f32],
        category: u32,
    ) -> Result<bool, IndexError> {
        validate_embedding(vector, self.graph.dim)?;
        if self.graph.len() >= MAX_NODES {
            return Err(IndexError::Full);
        }
        let mut row = Vec::with_capacity(self.graph.width);
        if self.metric == Metric::Cosine {
            let mut v = vector.to_vec();
            normalize(&mut v);
            Block::extend_from(&mut row, &v);
        } else {
            Block::extend_from(&mut row, vector);
        }
        let replaced = self.delete(label);
        self.insert_row(label, &row, category);
        Ok(replaced)
    }

    /// Appends and links a node whose row is already validated and padded.
    fn insert_row(&mut self, label: u64, row: &[Block], category: u32) {
        let level = self.sampler.draw();
        let id = self.graph.push(row, level);
        self.labels.push(label);
        self.categories.push(category);
        self.deleted.push(false);
        self.by_label.insert(label, id);
        let members = self.by_category.entry(category).or_default();
        members.ids.push(id);
        members.live += 1;
        let efc = self.params.ef_construction;
        self.graph
            .connect(&self.rows, id, efc, &self.deleted, &mut self.build);
    }

    /// Deletes `label`: it never appears in results again, though its node
    /// keeps guiding searches until a rebuild. Returns whether it was live.
    pub fn delete(&mut self, label: u64) -> bool {
        let Some(id) = self.by_label.remove(&label) else {
            return false;
        };
        self.deleted[id as usize] = true;
        self.deleted_count += 1;
        if let Some(m) = self.by_category.get_mut(&self.categories[id as usize]) {
            m.live -= 1;
        }
        true
    }

    /// Whether tombstones exceed [`HnswParams::rebuild_ratio`] of all
    /// nodes, so that [`Hnsw::rebuild`] (or [`Hnsw::compacted`]) would
    /// reclaim memory and search time.
    pub fn needs_rebuild(&self) -> bool {
        self.deleted_count > 0
            && self.deleted_count as f64
                > f64::from(self.params.rebuild_ratio) * self.graph.len() as f64
    }

    /// A fresh index of the live elements only, built from `&self` so that
    /// searches can go on meanwhile (e.g. under a read lock in a background
    /// task); swap it in when done. Writes made to `self` after the call
    /// are not in the copy: the caller replays them before swapping.
    /// Deterministic: the same index yields the same rebuilt graph.
    pub fn compacted(&self) -> Hnsw {
        let mut fresh = Self::empty(self.graph.dim, self.metric, self.params, self.kernel);
        // Continue this index's level stream rather than replaying the seed.
        fresh.sampler = LevelSampler::new(self.params.m, self.sampler.state);
        for id in 0..self.graph.len() as u32 {
            let i = id as usize;
            if !self.deleted[i] {
                fresh.insert_row(self.labels[i], self.graph.row(id), self.categories[i]);
            }
        }
        fresh
    }

    /// Replaces the index by its [`Hnsw::compacted`] copy.
    pub fn rebuild(&mut self) {
        *self = self.compacted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(metric: Metric) -> Hnsw {
        let params = HnswParams {
            m: 4,
            ef_construction: 16,
            ..HnswParams::default()
        };
        let mut ix = Hnsw::new(3, metric, params).unwrap();
        for i in 0..50u64 {
            let v = [i as f32, (i % 7) as f32, 1.0];
            ix.insert(i, &v, (i % 3) as u32).unwrap();
        }
        ix
    }

    #[test]
    fn insert_replace_delete_rebuild() {
        let mut ix = small(Metric::L2);
        assert_eq!((ix.len(), ix.dim()), (50, 3));
        assert!(ix.insert(7, &[7.0, 0.0, 1.0], 1).unwrap());
        assert_eq!(ix.len(), 50);
        assert_eq!(ix.deleted_len(), 1);
        assert_eq!(ix.category(7), Some(1));
        assert!(ix.delete(8));
        assert!(!ix.delete(8));
        assert!(!ix.contains(8));
        for l in 10..30 {
            ix.delete(l);
        }
        assert!(ix.needs_rebuild());
        ix.rebuild();
        assert_eq!((ix.len(), ix.deleted_len()), (29, 0));
        assert!(!ix.needs_rebuild());
        assert!(ix.contains(7) && !ix.contains(12));
    }

    #[test]
    fn bad_vectors_change_nothing() {
        let mut ix = small(Metric::Cosine);
        let e = ix.insert(99, &[1.0, f32::NAN, 0.0], 0).unwrap_err();
        assert!(e.to_string().contains("NaN"));
        assert!(matches!(
            ix.insert(3, &[1.0], 0),
            Err(IndexError::Vector(_))
        ));
        assert!(ix.contains(3) && !ix.contains(99));
        assert_eq!(ix.len(), 50);
        assert!(Hnsw::new(0, Metric::L2, HnswParams::default()).is_err());
    }

    // Absurd sizes are clamped to the index, never allocated.
    #[test]
    fn absurd_k_and_ef_are_clamped() {
        let ix = small(Metric::L2);
        let opts = SearchOptions::new(usize::MAX).ef(usize::MAX);
        let hits = ix.search_with(&[1.0, 2.0, 1.0], &opts).unwrap();
        assert_eq!(hits.len(), 50);
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        assert!(ix.search(&[1.0, 2.0, 1.0], 0).unwrap().is_empty());
    }

    // The node shares one index between its search handlers and indexer.
    #[test]
    fn index_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Hnsw>();
    }
}
