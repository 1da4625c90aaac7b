//! The memory layout of the HNSW graph: flat arrays, no per-node boxes.
//!
//! Search speed is bound by memory latency, so the layout is the design:
//! - all vectors in one `Vec<Block>`, each row padded to whole 32-byte
//!   blocks, so a node's vector is `width` aligned blocks at `id · width`;
//! - all layer-0 adjacency lists in one `Vec<u32>` of fixed `1 + M0` slots
//!   per node (`[count, ids…]`, as hnswlib does), found by multiplication;
//! - the rarer upper-layer lists (about 1 node in `M` has any) in a second
//!   flat `Vec<u32>`, `1 + M` slots per layer, with a per-node offset.
//!
//! Nodes are only ever appended; deletion is a flag kept by the owner, and
//! compaction is a rebuild. Also here: the seeded level sampler.

use crate::distance::Block;
use crate::hnsw::params::MAX_LEVEL;
use crate::tokenizer::mix64;

/// The graph's storage: vectors, links and levels.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    /// Dimension of the vectors (unpadded).
    pub dim: usize,
    /// Blocks per stored row: `ceil(dim / 8)`.
    pub width: usize,
    /// Link capacity on layers ≥ 1.
    pub m: usize,
    /// Link capacity on layer 0.
    pub m0: usize,
    /// `n × width` blocks of vector data.
    pub vectors: Vec<Block>,
    /// `n × (1 + m0)` slots: per node a count then the neighbour ids.
    pub links0: Vec<u32>,
    /// Upper-layer lists: per node with level `L ≥ 1`, `L × (1 + m)` slots
    /// starting at `upper_start[id]`, layer 1 first.
    pub upper: Vec<u32>,
    /// Per node: offset of its first upper-layer list in `upper`.
    pub upper_start: Vec<usize>,
    /// Per node: its top layer.
    pub levels: Vec<u8>,
    /// The node search starts from (on the top layer), if any.
    pub entry: Option<u32>,
}

impl Graph {
    /// An empty graph for `dim`-dimensional vectors.
    pub fn new(dim: usize, m: usize) -> Graph {
        Graph {
            dim,
            width: Block::count_for(dim),
            m,
            m0: 2 * m,
            vectors: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            upper_start: Vec::new(),
            levels: Vec::new(),
            entry: None,
        }
    }

    /// Number of nodes, deleted ones included.
    #[inline]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// The top layer of the graph (that of the entry point).
    pub fn max_level(&self) -> u8 {
        self.entry.map_or(0, |e| self.levels[e as usize])
    }

    /// The padded vector of node `id`.
    #[inline]
    pub fn row(&self, id: u32) -> &[Block] {
        let s = id as usize * self.width;
        &self.vectors[s..s + self.width]
    }

    /// Appends a node with an already padded row and no links; returns its id.
    pub fn push(&mut self, row: &[Block], level: u8) -> u32 {
        debug_assert_eq!(row.len(), self.width);
        let id = self.levels.len() as u32;
        self.vectors.extend_from_slice(row);
        self.links0.resize(self.links0.len() + 1 + self.m0, 0);
        self.upper_start.push(self.upper.len());
        self.upper
            .resize(self.upper.len() + usize::from(level) * (1 + self.m), 0);
        self.levels.push(level);
        id
    }

    /// Range of the slots (count first) of `id`'s list on `level`.
    #[inline]
    fn slots(&self, id: u32, level: u8) -> (bool, std::ops::Range<usize>) {
        if level == 0 {
            let s = id as usize * (1 + self.m0);
            (true, s..s + 1 + self.m0)
        } else {
            let s = self.upper_start[id as usize] + usize::from(level - 1) * (1 + self.m);
            (false, s..s + 1 + self.m)
        }
    }

    /// The neighbours of `id` on `level` (which must be ≤ its level).
    #[inline]
    pub fn neighbours(&self, id: u32, level: u8) -> &[u32] {
        let (zero, r) = self.slots(id, level);
        let slots = if zero {
            &self.links0[r]
        } else {
            &self.upper[r]
        };
        let n = (slots[0] as usize).min(slots.len() - 1);
        &slots[1..1 + n]
    }

    /// The layer-0 neighbour slots of `id` (count first), for prefetching.
    #[inline]
    pub fn links0_slots(&self, id: u32) -> &[u32] {
        let s = id as usize * (1 + self.m0);
        &self.links0[s..s + 1 + self.m0]
    }

    /// Replaces the neighbours of `id` on `level` (at most its capacity).
    pub fn set_neighbours(&mut self, id: u32, level: u8, ids: &[u32]) {
        let (zero, r) = self.slots(id, level);
        let slots = if zero {
            &mut self.links0[r]
        } else {
            &mut self.upper[r]
        };
        let n = ids.len().min(slots.len() - 1);
        slots[0] = n as u32;
        slots[1..1 + n].copy_from_slice(&ids[..n]);
    }

    /// Appends `x` to the list of `id` on `level`; false when it is full.
    pub fn try_push_neighbour(&mut self, id: u32, level: u8, x: u32) -> bool {
        let (zero, r) = self.slots(id, level);
        let slots = if zero {
            &mut self.links0[r]
        } else {
            &mut self.upper[r]
        };
        let n = slots[0] as usize;
        if n + 1 >= slots.len() {
            return false;
        }
        slots[1 + n] = x;
        slots[0] = n as u32 + 1;
        true
    }

    /// Capacity of lists on `level`.
    pub fn capacity(&self, level: u8) -> usize {
        if level == 0 { self.m0 } else { self.m }
    }
}

/// Draws node levels from the exponential distribution of the paper,
/// `⌊−ln U · mL⌋` with `mL = 1 / ln M`, from a seeded SplitMix64 stream
/// whose 8-byte state is saved with the index (so a loaded index keeps
/// drawing the same sequence it would have).
#[derive(Debug, Clone)]
pub(crate) struct LevelSampler {
    /// SplitMix64 state.
    pub state: u64,
    /// `1 / ln M`.
    ml: f64,
}

impl LevelSampler {
    /// A sampler for links-per-node `m`, starting from `state`.
    pub fn new(m: usize, state: u64) -> LevelSampler {
        LevelSampler {
            state,
            ml: 1.0 / (m as f64).ln(),
        }
    }

    /// The next level, capped at [`MAX_LEVEL`].
    pub fn draw(&mut self) -> u8 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let bits = mix64(self.state);
        // 53 random bits → U in (0, 1]; never 0, so ln U is finite.
        let u = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let level = (-u.ln() * self.ml).floor();
        if level >= f64::from(MAX_LEVEL) {
            MAX_LEVEL
        } else {
            level as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_bounded_and_layered() {
        let mut g = Graph::new(3, 2);
        let row = [Block::default()];
        let a = g.push(&row, 0);
        let b = g.push(&row, 2);
        assert_eq!((a, b, g.width), (0, 1, 1));
        for x in 0..4 {
            assert!(g.try_push_neighbour(a, 0, x));
        }
        assert!(!g.try_push_neighbour(a, 0, 9));
        assert_eq!(g.neighbours(a, 0), [0, 1, 2, 3]);
        g.set_neighbours(b, 2, &[0, 1, 5]);
        assert_eq!(g.neighbours(b, 2), [0, 1]);
        assert!(g.neighbours(b, 1).is_empty());
        assert_eq!(g.upper.len(), 2 * 3);
    }

    #[test]
    fn levels_follow_the_exponential_law() {
        let mut s = LevelSampler::new(16, 42);
        let n = 200_000;
        let mut counts = [0usize; 8];
        for _ in 0..n {
            counts[usize::from(s.draw()).min(7)] += 1;
        }
        // P(level ≥ 1) = 1/M = 1/16.
        let p1 = (n - counts[0]) as f64 / n as f64;
        assert!((p1 - 1.0 / 16.0).abs() < 0.005, "{p1}");
        let mut t = LevelSampler::new(16, 42);
        let mut u = LevelSampler::new(16, 42);
        assert!((0..100).all(|_| t.draw() == u.draw()));
    }
}
