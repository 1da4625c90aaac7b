//! The search primitives of HNSW (the paper's Algorithms 2 and 5), shared
//! by queries and by construction, and the exact scan used as fallback.
//!
//! Everything a search needs besides the graph lives in a reusable
//! [`SearchScratch`], so a query allocates nothing once warm:
//! - a visited list of `u16` generation tags instead of a hash set —
//!   starting a search bumps the generation instead of clearing;
//! - for the common case (no filter, no deletions) a sorted candidate
//!   *pool* of at most `ef` entries replaces the paper's two heaps: the
//!   pool is both the result set `W` and the candidate queue `C`, and a
//!   cursor marks the best entry not yet expanded. Search stops when every
//!   entry has been expanded, which is exactly the paper's "closest
//!   candidate is farther than the farthest result" rule;
//! - for filtered or tombstoned searches, the paper's two heaps, because
//!   there the candidate set must hold nodes the results may not.
//!
//! Expanding a node gathers its unvisited neighbours first, prefetching
//! their vectors, then computes all their distances in one kernel call, so
//! memory requests overlap instead of queueing behind each distance.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::distance::{Block, RowKernel, prefetch};
use crate::hnsw::graph::Graph;

/// A node id with its distance to the query, ordered by distance (then id,
/// so orders are total and deterministic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    /// Distance to the query.
    pub dist: f32,
    /// Node id.
    pub id: u32,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.id.cmp(&other.id))
    }
}

/// Visited marks as generation tags: a node is visited in the current
/// search when its tag equals `generation`.
#[derive(Debug, Clone, Default)]
struct Visited {
    /// One tag per node.
    tags: Vec<u16>,
    /// Tag of the current search.
    generation: u16,
}

impl Visited {
    /// Starts a new search over `n` nodes; clears only on tag wrap-around.
    fn start(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `id`; true if it was not yet visited in this search.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        let t = &mut self.tags[id as usize];
        let fresh = *t != self.generation;
        *t = self.generation;
        fresh
    }
}

/// Top bit of a pool entry's id: the entry has been expanded.
const EXPANDED: u32 = 1 << 31;

/// A sorted array of the best `cap` candidates seen so far (see module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    /// Entries `0..len` sorted by distance; one spare slot for shifting.
    items: Vec<Scored>,
    /// Number of valid entries.
    len: usize,
    /// Capacity for this search (`ef`).
    cap: usize,
    /// Every entry before it is expanded.
    cursor: usize,
}

impl Pool {
    /// Empties the pool and sets its capacity.
    fn reset(&mut self, cap: usize) {
        let cap = cap.max(1);
        if self.items.len() < cap + 1 {
            self.items.resize(cap + 1, Scored { dist: 0.0, id: 0 });
        }
        self.cap = cap;
        self.len = 0;
        self.cursor = 0;
    }

    /// Inserts a candidate if it beats the worst kept one (or there is room).
    #[inline]
    fn insert(&mut self, id: u32, dist: f32) {
        if self.len == self.cap && dist >= self.items[self.len - 1].dist {
            return;
        }
        let pos = self.items[..self.len].partition_point(|c| c.dist <= dist);
        let end = if self.len == self.cap {
            self.len - 1
        } else {
            self.len += 1;
            self.len - 1
        };
        self.items.copy_within(pos..end, pos + 1);
        self.items[pos] = Scored { dist, id };
        self.cursor = self.cursor.min(pos);
    }

    /// Moves the cursor past expanded entries; the next one to expand.
    #[inline]
    fn peek(&mut self) -> Option<u32> {
        while self.cursor < self.len && self.items[self.cursor].id & EXPANDED != 0 {
            self.cursor += 1;
        }
        (self.cursor < self.len).then(|| self.items[self.cursor].id)
    }

    /// Marks the best unexpanded entry expanded and returns its id.
    #[inline]
    fn pop(&mut self) -> Option<u32> {
        let id = self.peek()?;
        self.items[self.cursor].id |= EXPANDED;
        self.cursor += 1;
        Some(id)
    }

    /// The kept candidates, best first.
    pub fn sorted(&self) -> impl ExactSizeIterator<Item = Scored> + '_ {
        self.items[..self.len].iter().map(|c| Scored {
            dist: c.dist,
            id: c.id & !EXPANDED,
        })
    }
}

/// Reusable buffers for one search at a time; keep one per thread (or take
/// them from the index's pool) and a warm search allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct SearchScratch {
    /// Visited marks.
    visited: Visited,
    /// Candidate pool of the unfiltered search.
    pub(crate) pool: Pool,
    /// Ids whose distances the next kernel call computes.
    ids: Vec<u32>,
    /// Distances the kernel wrote for `ids`.
    dists: Vec<f32>,
    /// The query, padded into blocks.
    pub(crate) query: Vec<Block>,
    /// Candidate min-heap of the filtered search.
    cands: BinaryHeap<Reverse<Scored>>,
    /// Result max-heap of the filtered search and of exact scans.
    pub(crate) found: BinaryHeap<Scored>,
}

impl SearchScratch {
    /// Empty buffers; they grow to fit the index on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes distances from `q` to `self.ids` into `self.dists`.
    #[inline]
    fn measure(&mut self, k: &RowKernel, g: &Graph, q: &[Block]) {
        let n = self.ids.len();
        if self.dists.len() < n {
            self.dists.resize(n, 0.0);
        }
        k.batch(q, &g.vectors, &self.ids, &mut self.dists[..n]);
    }

    /// Queues `x` for measuring if not yet visited, prefetching its vector.
    #[inline]
    fn gather(&mut self, g: &Graph, x: u32) {
        if self.visited.insert(x) {
            prefetch(g.row(x), 8);
            self.ids.push(x);
        }
    }
}

impl Graph {
    /// Greedy descent (ef = 1) from `ep` through layers `from` down to
    /// `to + 1`; returns the closest node found on layer `to + 1`.
    pub(crate) fn descend(
        &self,
        k: &RowKernel,
        q: &[Block],
        mut ep: Scored,
        from: u8,
        to: u8,
        s: &mut SearchScratch,
    ) -> Scored {
        for level in (to + 1..=from).rev() {
            loop {
                s.ids.clear();
                s.ids.extend_from_slice(self.neighbours(ep.id, level));
                s.measure(k, self, q);
                let best = s
                    .ids
                    .iter()
                    .zip(&s.dists)
                    .map(|(&id, &dist)| Scored { dist, id })
                    .min();
                match best {
                    Some(b) if b.dist < ep.dist => ep = b,
                    _ => break,
                }
            }
        }
        ep
    }

    /// Beam search on one layer (Algorithm 2) from `entries` with width
    /// `ef`; the result is left in `s.pool`, best first.
    pub(crate) fn search_layer(
        &self,
        k: &RowKernel,
        q: &[Block],
        entries: &[Scored],
        ef: usize,
        level: u8,
        s: &mut SearchScratch,
    ) {
        s.visited.start(self.len());
        s.pool.reset(ef);
        for e in entries {
            if s.visited.insert(e.id) {
                s.pool.insert(e.id, e.dist);
            }
        }
        while let Some(c) = s.pool.pop() {
            // The next node to expand is most likely the current runner-up:
            // start fetching its adjacency list now.
            if level == 0
                && let Some(next) = s.pool.peek()
            {
                prefetch(self.links0_slots(next), 3);
            }
            s.ids.clear();
            for &x in self.neighbours(c, level) {
                s.gather(self, x);
            }
            s.measure(k, self, q);
            for (&x, &d) in s.ids.iter().zip(&s.dists) {
                s.pool.insert(x, d);
            }
        }
    }

    /// Layer-0 beam search that may pass through any node but reports only
    /// those `accept` admits: the `ef` best accepted nodes are left in
    /// `s.found`. As in hnswlib, the search does not stop before `ef`
    /// accepted nodes are found (or the reachable graph is exhausted), so a
    /// selective filter widens the search instead of starving the results.
    pub(crate) fn search_layer0_accepting<F: Fn(u32) -> bool>(
        &self,
        k: &RowKernel,
        q: &[Block],
        ep: Scored,
        ef: usize,
        accept: F,
        s: &mut SearchScratch,
    ) {
        s.visited.start(self.len());
        s.cands.clear();
        s.found.clear();
        s.visited.insert(ep.id);
        s.cands.push(Reverse(ep));
        if accept(ep.id) {
            s.found.push(ep);
        }
        let mut bound = s.found.peek().map_or(f32::INFINITY, |w| w.dist);
        while let Some(Reverse(c)) = s.cands.pop() {
            if c.dist > bound && s.found.len() >= ef {
                break;
            }
            if let Some(Reverse(next)) = s.cands.peek() {
                prefetch(self.links0_slots(next.id), 3);
            }
            s.ids.clear();
            for &x in self.neighbours(c.id, 0) {
                s.gather(self, x);
            }
            s.measure(k, self, q);
            for (&id, &dist) in s.ids.iter().zip(&s.dists) {
                if s.found.len() < ef || dist < bound {
                    s.cands.push(Reverse(Scored { dist, id }));
                    if accept(id) {
                        s.found.push(Scored { dist, id });
                        if s.found.len() > ef {
                            s.found.pop();
                        }
                        bound = s.found.peek().map_or(f32::INFINITY, |w| w.dist);
                    }
                }
            }
        }
    }

    /// Exact search: measures every node of `ids` that `accept` admits and
    /// leaves the `k` closest in `s.found`.
    pub(crate) fn scan<I, F>(
        &self,
        k: &RowKernel,
        q: &[Block],
        ids: I,
        keep: usize,
        accept: F,
        s: &mut SearchScratch,
    ) where
        I: IntoIterator<Item = u32>,
        F: Fn(u32) -> bool,
    {
        /// Ids measured per kernel call (their rows are prefetched first).
        const CHUNK: usize = 64;
        s.found.clear();
        s.ids.clear();
        let flush = |s: &mut SearchScratch| {
            s.measure(k, self, q);
            for (&id, &dist) in s.ids.iter().zip(&s.dists) {
                let c = Scored { dist, id };
                if s.found.len() < keep {
                    s.found.push(c);
                } else if s.found.peek().is_some_and(|w| c < *w) {
                    s.found.pop();
                    s.found.push(c);
                }
            }
            s.ids.clear();
        };
        for id in ids {
            if accept(id) {
                prefetch(self.row(id), 8);
                s.ids.push(id);
                if s.ids.len() == CHUNK {
                    flush(s);
                }
            }
        }
        flush(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_best_and_expands_in_order() {
        let mut p = Pool::default();
        p.reset(3);
        for (id, d) in [(1, 5.0), (2, 1.0), (3, 3.0), (4, 4.0), (5, 0.5)] {
            p.insert(id, d);
        }
        let ids: Vec<u32> = p.sorted().map(|c| c.id).collect();
        assert_eq!(ids, [5, 2, 3]);
        assert_eq!(p.pop(), Some(5));
        assert_eq!(p.pop(), Some(2));
        // A better candidate arriving behind the cursor is expanded next,
        // and pushes the worst (3, never expanded) out of the full pool.
        p.insert(6, 0.1);
        assert_eq!(p.pop(), Some(6));
        assert_eq!(p.pop(), None);
        assert_eq!(p.sorted().map(|c| c.id).collect::<Vec<_>>(), [6, 5, 2]);
    }

    #[test]
    fn visited_generations_wrap() {
        let mut v = Visited::default();
        for _ in 0..70_000 {
            v.start(4);
            assert!(v.insert(3));
            assert!(!v.insert(3));
        }
    }
}
