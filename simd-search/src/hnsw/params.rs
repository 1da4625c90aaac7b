//! The knobs of an HNSW index, their validation, and the errors of the
//! index's mutating calls.
//!
//! Names follow Malkov & Yashunin (arXiv:1603.09320): `M` links per node on
//! the upper layers, `M0 = 2·M` on layer 0 (their recommended `Mmax0`),
//! `efConstruction` and `ef` (here `ef_search`) the beam widths of build
//! and query. The level multiplier is `mL = 1 / ln M`, the value the paper
//! finds best, so it is derived rather than configurable.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::embedder::EmbeddingError;

/// Largest `M` accepted: keeps `M0 = 2·M` link slots per node ≤ 256.
pub const MAX_M: usize = 128;
/// Largest vector dimension accepted (a sanity bound for loaded files too).
pub const MAX_DIM: usize = 1 << 16;
/// Highest layer a node can be drawn into; with `M ≥ 2` reaching it has
/// probability below 2⁻³¹, so the cap never shapes a real graph.
pub const MAX_LEVEL: u8 = 31;
/// Largest number of nodes (live and deleted) one index holds: ids are
/// `u32` with the top bit reserved by the search pool.
pub const MAX_NODES: usize = (1 << 31) - 1;

/// Construction and search parameters of an [`crate::Hnsw`] index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    /// `M`: links per node on layers ≥ 1; layer 0 keeps up to `2·M`.
    /// 16 is a good default for 50–1000 dimensions; larger raises recall
    /// and memory.
    pub m: usize,
    /// Beam width while inserting: higher builds a better graph, slower.
    pub ef_construction: usize,
    /// Default beam width of a query (raised to `k` when smaller).
    pub ef_search: usize,
    /// Seed of the level draws: equal seeds and equal insertion order give
    /// identical graphs, which tests rely on.
    pub seed: u64,
    /// [`crate::Hnsw::needs_rebuild`] turns true once deleted nodes exceed
    /// this fraction of all nodes; they still cost memory and traversal.
    pub rebuild_ratio: f32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0x5eed_c0de,
            rebuild_ratio: 0.25,
        }
    }
}

impl HnswParams {
    /// `M0 = 2·M`, the link capacity of layer 0.
    pub fn m0(&self) -> usize {
        2 * self.m
    }

    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(ParamsError::M(self.m));
        }
        if self.ef_construction == 0 || self.ef_construction > MAX_EF {
            return Err(ParamsError::EfConstruction(self.ef_construction));
        }
        if self.ef_search == 0 || self.ef_search > MAX_EF {
            return Err(ParamsError::EfSearch(self.ef_search));
        }
        if !(self.rebuild_ratio > 0.0 && self.rebuild_ratio <= 1.0) {
            return Err(ParamsError::RebuildRatio(self.rebuild_ratio));
        }
        Ok(())
    }
}

/// Largest beam width accepted (a sanity bound; 10⁵ candidates is already
/// an exhaustive search for most indexes).
pub const MAX_EF: usize = 100_000;

/// A parameter or dimension outside its range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParamsError {
    /// `m` must be within `2..=128`.
    #[error("m = {0} is out of range 2..={MAX_M}")]
    M(usize),
    /// `ef_construction` must be within `1..=100000`.
    #[error("ef_construction = {0} is out of range 1..={MAX_EF}")]
    EfConstruction(usize),
    /// `ef_search` must be within `1..=100000`.
    #[error("ef_search = {0} is out of range 1..={MAX_EF}")]
    EfSearch(usize),
    /// `rebuild_ratio` must be within `(0, 1]`.
    #[error("rebuild_ratio = {0} is out of range (0, 1]")]
    RebuildRatio(f32),
    /// The vector dimension must be within `1..=65536`.
    #[error("dimension {0} is out of range 1..={MAX_DIM}")]
    Dim(usize),
}

/// Why an insert or a query was refused. The index is unchanged whenever
/// one of these is returned.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum IndexError {
    /// The vector has the wrong length or a non-finite component.
    #[error("invalid vector: {0}")]
    Vector(#[from] EmbeddingError),
    /// The index already holds [`MAX_NODES`] nodes (deleted ones count
    /// until a rebuild).
    #[error("index is full ({MAX_NODES} nodes); rebuild to drop deleted ones")]
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_named() {
        assert_eq!(HnswParams::default().validate(), Ok(()));
        assert_eq!(HnswParams::default().m0(), 32);
        let bad = HnswParams {
            m: 1,
            ..HnswParams::default()
        };
        assert_eq!(bad.validate(), Err(ParamsError::M(1)));
        let bad = HnswParams {
            rebuild_ratio: f32::NAN,
            ..HnswParams::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("rebuild_ratio")
        );
        let bad = HnswParams {
            ef_search: 0,
            ..HnswParams::default()
        };
        assert_eq!(bad.validate(), Err(ParamsError::EfSearch(0)));
    }
}
