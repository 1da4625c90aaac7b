//! The public search API of [`Hnsw`]: options, category filters, and the
//! choice between graph search and an exact scan.
//!
//! Filtering is where naive HNSW breaks: searching the graph for `ef`
//! candidates and then dropping those outside the filter returns almost
//! nothing once the filter is selective. Here a filtered search traverses
//! the whole graph (non-matching nodes included, so connectivity is kept)
//! but collects only matching nodes, and does not stop before it has `ef`
//! of them; it therefore widens by itself as the filter narrows. When the
//! filter is so selective that walking the graph would cost more than
//! measuring every match, the query falls back to an exact scan of the
//! category's members, whose results are exact by construction.

use crate::distance::Block;
use crate::embedder::validate_embedding;
use crate::hnsw::search::{Scored, SearchScratch};
use crate::hnsw::{Hnsw, IndexError, Metric};

/// The exact scan is chosen when `matches² ≤ EXACT_FACTOR · ef · live`:
/// a filtered graph search measures roughly `16 · ef · live / matches`
/// nodes, an exact scan `matches` nodes at about half the cost each (rows
/// are read in address order and need no visited bookkeeping).
const EXACT_FACTOR: f64 = 32.0;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The label the element was inserted under.
    pub label: u64,
    /// Its distance to the query under the index's metric (squared L2, or
    /// cosine distance `1 − cos`): smaller is closer.
    pub distance: f32,
}

/// Which elements a search may return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Filter<'a> {
    /// Every live element.
    #[default]
    All,
    /// Only elements inserted with this category.
    Category(u32),
    /// Only elements whose category is one of these.
    AnyOf(&'a [u32]),
}

/// How a search is executed; [`Plan::Auto`] is right outside of tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Plan {
    /// Graph search, or an exact scan when the filter is selective enough
    /// that the scan is cheaper.
    #[default]
    Auto,
    /// Always walk the graph.
    Graph,
    /// Always measure every matching element (exact results).
    Exact,
}

/// What to search for, besides the query vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions<'a> {
    /// Number of results wanted.
    pub k: usize,
    /// Beam width; `None` uses [`crate::HnswParams::ef_search`]. Raised to
    /// `k` when smaller.
    pub ef: Option<usize>,
    /// Which elements may be returned.
    pub filter: Filter<'a>,
    /// Graph, exact, or let the index decide.
    pub plan: Plan,
}

impl<'a> SearchOptions<'a> {
    /// The `k` nearest among all elements, default beam width.
    pub fn new(k: usize) -> Self {
        SearchOptions {
            k,
            ef: None,
            filter: Filter::All,
            plan: Plan::Auto,
        }
    }

    /// Sets the beam width (recall/speed trade-off).
    pub fn ef(self, ef: usize) -> Self {
        SearchOptions {
            ef: Some(ef),
            ..self
        }
    }

    /// Restricts results to `filter`.
    pub fn filter(self, filter: Filter<'a>) -> Self {
        SearchOptions { filter, ..self }
    }

    /// Forces an execution plan.
    pub fn plan(self, plan: Plan) -> Self {
        SearchOptions { plan, ..self }
    }
}

impl Hnsw {
    /// The `k` nearest live elements to `query`, nearest first, with the
    /// default beam width.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_with(query, &SearchOptions::new(k))
    }

    /// Search with options (beam width, filter, plan), nearest first.
    pub fn search_with(
        &self,
        query: &[f32],
        opts: &SearchOptions<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        let mut s = self
            .scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(opts.k.min(self.len()));
        let r = self.search_into(&mut s, query, opts, &mut out);
        self.scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
        r.map(|()| out)
    }

    /// Search into a caller-owned result vector with caller-owned buffers:
    /// the allocation-free form for hot loops. `out` is cleared first.
    pub fn search_into(
        &self,
        s: &mut SearchScratch,
        query: &[f32],
        opts: &SearchOptions<'_>,
        out: &mut Vec<Hit>,
    ) -> Result<(), IndexError> {
        out.clear();
        validate_embedding(query, self.graph.dim)?;
        // No more results than nodes, and no wider beam than the graph: an
        // absurd `k` or `ef` must not turn into an absurd allocation.
        let k = opts.k.min(self.graph.len());
        let (Some(entry), true) = (self.graph.entry, k > 0) else {
            return Ok(());
        };
        s.query.clear();
        Block::extend_from(&mut s.query, query);
        if self.metric == Metric::Cosine {
            normalize_blocks(&mut s.query);
        }
        let ef = opts
            .ef
            .unwrap_or(self.params.ef_search)
            .max(k)
            .min(self.graph.len());
        let matches = self.count_matches(opts.filter);
        if matches == 0 {
            return Ok(());
        }
        let exact = match opts.plan {
            Plan::Exact => true,
            Plan::Graph => false,
            Plan::Auto => {
                opts.filter != Filter::All
                    && (matches as f64).powi(2) <= EXACT_FACTOR * ef as f64 * self.len() as f64
            }
        };
        let q = std::mem::take(&mut s.query);
        if exact {
            self.exact(&q, opts.filter, k, s);
        } else {
            let ep = Scored {
                dist: self.rows.pair(&q, self.graph.row(entry)),
                id: entry,
            };
            let ep = self
                .graph
                .descend(&self.rows, &q, ep, self.graph.max_level(), 0, s);
            if self.deleted_count == 0 && opts.filter == Filter::All {
                self.graph.search_layer(&self.rows, &q, &[ep], ef, 0, s);
                out.extend(s.pool.sorted().take(k).map(|c| Hit {
                    label: self.labels[c.id as usize],
                    distance: c.dist,
                }));
                s.query = q;
                return Ok(());
            }
            let (g, r) = (&self.graph, &self.rows);
            match opts.filter {
                Filter::All => g.search_layer0_accepting(r, &q, ep, ef, |id| self.live(id), s),
                Filter::Category(c) => g.search_layer0_accepting(
                    r,
                    &q,
                    ep,
                    ef,
                    |id| self.live(id) && self.categories[id as usize] == c,
                    s,
                ),
                Filter::AnyOf(cs) => g.search_layer0_accepting(
                    r,
                    &q,
                    ep,
                    ef,
                    |id| self.live(id) && cs.contains(&self.categories[id as usize]),
                    s,
                ),
            }
        }
        s.query = q;
        // `found` is a max-heap: drop the surplus, then pop worst-first.
        while s.found.len() > k {
            s.found.pop();
        }
        let start = out.len();
        while let Some(c) = s.found.pop() {
            out.push(Hit {
                label: self.labels[c.id as usize],
                distance: c.dist,
            });
        }
        out[start..].reverse();
        Ok(())
    }

    /// Whether node `id` is not a tombstone.
    #[inline]
    fn live(&self, id: u32) -> bool {
        !self.deleted[id as usize]
    }

    /// Number of live elements `filter` admits.
    fn count_matches(&self, filter: Filter<'_>) -> usize {
        let live = |c: &u32| self.by_category.get(c).map_or(0, |m| m.live);
        match filter {
            Filter::All => self.len(),
            Filter::Category(c) => live(&c),
            Filter::AnyOf(cs) => cs
                .iter()
                .enumerate()
                .filter(|(i, c)| !cs[..*i].contains(c))
                .map(|(_, c)| live(c))
                .sum(),
        }
    }

    /// Exact search over the elements `filter` admits; leaves the `k`
    /// closest in `s.found`.
    fn exact(&self, q: &[Block], filter: Filter<'_>, k: usize, s: &mut SearchScratch) {
        let (g, r) = (&self.graph, &self.rows);
        let members = |c: &u32| {
            self.by_category
                .get(c)
                .map_or(&[][..], |m| m.ids.as_slice())
                .iter()
                .copied()
        };
        match filter {
            Filter::All => g.scan(r, q, 0..g.len() as u32, k, |id| self.live(id), s),
            Filter::Category(c) => g.scan(r, q, members(&c), k, |id| self.live(id), s),
            Filter::AnyOf(cs) => {
                // Each distinct category once, so no node is measured twice.
                let ids = cs
                    .iter()
                    .enumerate()
                    .filter(|(i, c)| !cs[..*i].contains(c))
                    .flat_map(|(_, c)| members(c));
                g.scan(r, q, ids, k, |id| self.live(id), s)
            }
        }
    }
}

/// Scales a padded row to unit L2 norm (zero rows stay zero).
fn normalize_blocks(row: &mut [Block]) {
    let norm = row
        .iter()
        .flat_map(|b| b.0)
        .map(|x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    // Same arithmetic as `embedder::normalize`, which insertion uses.
    if norm > f64::from(f32::MIN_POSITIVE) {
        let inv = 1.0 / norm;
        for x in row.iter_mut().flat_map(|b| b.0.iter_mut()) {
            *x = (f64::from(*x) * inv) as f32;
        }
    }
}
