//! Linking a new node into the graph (the paper's Algorithm 1) with the
//! neighbour-selection heuristic (Algorithm 4).
//!
//! The heuristic keeps a candidate only if it is closer to the new node
//! than to every neighbour already kept. That spreads links over
//! directions instead of spending them all inside one cluster, which is
//! what keeps the graph navigable on clustered data. As in hnswlib (and the
//! paper's defaults), neither `extendCandidates` nor
//! `keepPrunedConnections` is used: the first costs a lot on build time for
//! little gain outside extremely clustered data, the second fills slots
//! with links the heuristic just judged redundant.
//!
//! A new node takes `M` links on every layer it lives on; its neighbours
//! link back, and a neighbour whose list is full re-runs the heuristic over
//! its old links plus the new one (capacity `M` above layer 0, `M0 = 2·M`
//! on layer 0).

use crate::distance::{Block, RowKernel};
use crate::hnsw::graph::Graph;
use crate::hnsw::search::{Scored, SearchScratch};

/// Reusable buffers of insertion, so building allocates only as the index
/// grows.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildScratch {
    /// The search buffers (visited list, pool).
    search: SearchScratch,
    /// The new node's vector, copied out of the store it is about to mutate.
    row: Vec<Block>,
    /// Candidates of the current layer, best first.
    cands: Vec<Scored>,
    /// The heuristic's choice.
    chosen: Vec<Scored>,
    /// Candidates of a neighbour whose list overflowed.
    overflow: Vec<Scored>,
    /// The heuristic's choice among `overflow`.
    kept: Vec<Scored>,
    /// Ids handed to the batch kernel.
    ids: Vec<u32>,
    /// Distances the batch kernel wrote.
    dists: Vec<f32>,
}

impl Graph {
    /// Links the already pushed node `id` into every layer up to its level,
    /// searching with beam width `efc`. Nodes for which `deleted` is true
    /// are traversed but not chosen as neighbours (unless nothing else is
    /// reachable), so tombstones do not take fresh links.
    pub(crate) fn connect(
        &mut self,
        k: &RowKernel,
        id: u32,
        efc: usize,
        deleted: &[bool],
        b: &mut BuildScratch,
    ) {
        let level = self.levels[id as usize];
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return;
        };
        let top = self.max_level();
        b.row.clear();
        b.row.extend_from_slice(self.row(id));
        let q = std::mem::take(&mut b.row);

        let mut ep = Scored {
            dist: k.pair(&q, self.row(entry)),
            id: entry,
        };
        if level < top {
            ep = self.descend(k, &q, ep, top, level, &mut b.search);
        }
        for l in (0..=level.min(top)).rev() {
            self.search_layer(k, &q, &[ep], efc, l, &mut b.search);
            b.cands.clear();
            b.cands.extend(
                b.search
                    .pool
                    .sorted()
                    .filter(|c| c.id != id && !deleted[c.id as usize]),
            );
            if b.cands.is_empty() {
                // Only tombstones around: link to them rather than to nothing.
                b.cands
                    .extend(b.search.pool.sorted().filter(|c| c.id != id));
            }
            if let Some(best) = b.search.pool.sorted().next() {
                ep = best;
            }
            let mut chosen = std::mem::take(&mut b.chosen);
            self.select(k, &b.cands, self.m, &mut chosen);
            b.ids.clear();
            b.ids.extend(chosen.iter().map(|c| c.id));
            self.set_neighbours(id, l, &b.ids);
            for c in &chosen {
                self.link_back(k, c.id, id, c.dist, l, b);
            }
            b.chosen = chosen;
        }
        b.row = q;
        if level > top {
            self.entry = Some(id);
        }
    }

    /// The heuristic of Algorithm 4: from `cands` (best first), keep up to
    /// `m` that are each closer to the base node than to any kept one.
    fn select(&self, k: &RowKernel, cands: &[Scored], m: usize, out: &mut Vec<Scored>) {
        out.clear();
        if cands.len() <= m {
            out.extend_from_slice(cands);
            return;
        }
        for &c in cands {
            if out.len() >= m {
                break;
            }
            let row = self.row(c.id);
            if out.iter().all(|r| k.pair(row, self.row(r.id)) >= c.dist) {
                out.push(c);
            }
        }
    }

    /// Adds `new` (at distance `dist`) to `n`'s list on `level`; if the
    /// list is full, re-selects among old and new with the heuristic.
    fn link_back(
        &mut self,
        k: &RowKernel,
        n: u32,
        new: u32,
        dist: f32,
        level: u8,
        b: &mut BuildScratch,
    ) {
        if self.try_push_neighbour(n, level, new) {
            return;
        }
        b.ids.clear();
        b.ids.extend_from_slice(self.neighbours(n, level));
        b.dists.resize(b.ids.len(), 0.0);
        k.batch(self.row(n), &self.vectors, &b.ids, &mut b.dists);
        b.overflow.clear();
        b.overflow.extend(
            b.ids
                .iter()
                .zip(&b.dists)
                .map(|(&id, &dist)| Scored { dist, id }),
        );
        b.overflow.push(Scored { dist, id: new });
        b.overflow.sort_unstable();
        self.select(k, &b.overflow, self.capacity(level), &mut b.kept);
        b.ids.clear();
        b.ids.extend(b.kept.iter().map(|c| c.id));
        self.set_neighbours(n, level, &b.ids);
    }
}
