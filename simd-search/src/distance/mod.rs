//! Distance kernels and the CPU-feature dispatch that picks them.
//!
//! This module is the only place in Concord allowed to use `unsafe` (STYLE
//! §14). It follows memchr: the SIMD kernels live in the private `avx2`
//! module behind `#[target_feature(enable = "avx2,fma")]`; a [`Kernel`] is
//! a plain struct of safe function pointers, and the only way to get one
//! holding the AVX2 functions is [`Kernel::avx2`], which returns `None`
//! unless `is_x86_feature_detected!` confirms both features. Everything
//! above this module is safe code calling through a `Kernel`.
//!
//! Detection runs once per process ([`Kernel::detect`]). Setting the
//! environment variable `SIMD_SEARCH_FORCE_SCALAR=1` before that first call
//! selects the portable [`scalar`] kernels instead, so the whole test suite
//! can be run a second time without SIMD:
//! `SIMD_SEARCH_FORCE_SCALAR=1 cargo test -p simd-search`.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod scalar;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Name of the environment variable that forces the scalar kernels.
pub const FORCE_SCALAR_ENV: &str = "SIMD_SEARCH_FORCE_SCALAR";

/// Eight `f32` lanes aligned to 32 bytes: the unit the index stores vectors
/// in, so every AVX2 load is aligned and no kernel needs a tail loop.
///
/// Rows are padded with zeros up to a whole number of blocks; zero padding
/// changes neither squared L2 nor the inner product.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(32))]
pub struct Block(pub [f32; 8]);

impl Block {
    /// Number of blocks needed to hold `dim` floats.
    pub fn count_for(dim: usize) -> usize {
        dim.div_ceil(8)
    }

    /// Appends `v` to `out` as zero-padded blocks.
    pub fn extend_from(out: &mut Vec<Block>, v: &[f32]) {
        let mut chunks = v.chunks_exact(8);
        for c in &mut chunks {
            let mut b = Block::default();
            b.0.copy_from_slice(c);
            out.push(b);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = Block::default();
            b.0[..rest.len()].copy_from_slice(rest);
            out.push(b);
        }
    }
}

/// What "distance" means for an index: smaller is closer for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Cosine distance `1 - <a, b>`; the index L2-normalises every vector
    /// and query, so this is the inner-product distance on unit vectors.
    Cosine,
}

/// Distance between one query row and one stored row (both padded).
type PairFn = fn(&[Block], &[Block]) -> f32;
/// Distances from a query row to a list of stored rows of a flat store.
type BatchFn = fn(&[Block], &[Block], &[u32], &mut [f32]);

/// A set of distance functions for one CPU: safe to call, because the only
/// constructor that installs SIMD functions checks the CPU first.
///
/// Copy it freely; the index keeps one, chosen at construction.
#[derive(Clone, Copy)]
pub struct Kernel {
    /// Human-readable name for logs and benchmarks ("avx2+fma", "scalar").
    name: &'static str,
    /// Squared L2 over plain slices.
    l2: fn(&[f32], &[f32]) -> f32,
    /// Inner product over plain slices.
    dot: fn(&[f32], &[f32]) -> f32,
    /// Squared L2 between padded rows.
    l2_blocks: PairFn,
    /// Cosine distance between padded rows.
    cos_blocks: PairFn,
    /// Squared L2 from a query to many stored rows.
    l2_batch: BatchFn,
    /// Cosine distance from a query to many stored rows.
    cos_batch: BatchFn,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("name", &self.name).finish()
    }
}

impl Kernel {
    /// The portable kernels, available on every target.
    pub fn scalar() -> Kernel {
        Kernel {
            name: "scalar",
            l2: scalar::l2,
            dot: scalar::dot,
            l2_blocks: scalar::l2_blocks,
            cos_blocks: scalar::cos_blocks,
            l2_batch: scalar::l2_batch,
            cos_batch: scalar::cos_batch,
        }
    }

    /// The AVX2 + FMA kernels, or `None` when this CPU lacks either feature.
    #[cfg(target_arch = "x86_64")]
    pub fn avx2() -> Option<Kernel> {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        Some(Kernel {
            name: "avx2+fma",
            l2: avx2_entry::l2,
            dot: avx2_entry::dot,
            l2_blocks: avx2_entry::l2_blocks,
            cos_blocks: avx2_entry::cos_blocks,
            l2_batch: avx2_entry::l2_batch,
            cos_batch: avx2_entry::cos_batch,
        })
    }

    /// The AVX2 + FMA kernels: never available off x86-64.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn avx2() -> Option<Kernel> {
        None
    }

    /// The best kernel for this CPU, decided once per process: AVX2 + FMA
    /// when present, unless `SIMD_SEARCH_FORCE_SCALAR` is set to anything
    /// but `0` or the empty string at the first call.
    pub fn detect() -> Kernel {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let forced =
                std::env::var_os(FORCE_SCALAR_ENV).is_some_and(|v| !v.is_empty() && v != "0");
            if forced {
                Kernel::scalar()
            } else {
                Kernel::avx2().unwrap_or_else(Kernel::scalar)
            }
        })
    }

    /// Which implementation this is, for logs ("avx2+fma" or "scalar").
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Squared Euclidean distance over the common prefix of `a` and `b`.
    pub fn l2(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l2)(a, b)
    }

    /// Inner product over the common prefix of `a` and `b`.
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.dot)(a, b)
    }

    /// Distance under `metric` between two plain slices (`Cosine` assumes
    /// unit vectors and returns `1 - dot`).
    pub fn distance(&self, metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        match metric {
            Metric::L2 => self.l2(a, b),
            Metric::Cosine => 1.0 - self.dot(a, b),
        }
    }

    /// The padded-row functions for one metric, resolved once so the hot
    /// loops make no `match`.
    pub fn rows(&self, metric: Metric) -> RowKernel {
        match metric {
            Metric::L2 => RowKernel {
                pair: self.l2_blocks,
                batch: self.l2_batch,
            },
            Metric::Cosine => RowKernel {
                pair: self.cos_blocks,
                batch: self.cos_batch,
            },
        }
    }
}

/// The padded-row distance functions of one [`Kernel`] for one [`Metric`]:
/// what the index's inner loops call.
#[derive(Clone, Copy)]
pub struct RowKernel {
    /// Distance between two padded rows.
    pair: PairFn,
    /// Distances from a query row to many stored rows.
    batch: BatchFn,
}

impl std::fmt::Debug for RowKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowKernel")
    }
}

impl RowKernel {
    /// Distance between two padded rows of equal width.
    #[inline]
    pub fn pair(&self, a: &[Block], b: &[Block]) -> f32 {
        (self.pair)(a, b)
    }

    /// Writes into `out[i]` the distance from `q` to row `ids[i]` of the
    /// flat store `rows` (rows are `q.len()` blocks wide).
    ///
    /// # Panics
    /// If an id addresses a row past the end of `rows`.
    #[inline]
    pub fn batch(&self, q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
        (self.batch)(q, rows, ids, out)
    }
}

/// Hints the CPU to pull the cache lines of `data` into L1 ahead of use.
///
/// Purely a performance hint: it never faults and has no effect on results.
/// At most `max_lines` 64-byte lines are requested, from the first on.
#[inline]
pub fn prefetch<T>(data: &[T], max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of_val(data);
        let base = data.as_ptr().cast::<i8>();
        let addr = base as usize;
        let (mut off, mut n) = (0usize, 0usize);
        while off < bytes && n < max_lines {
            // SAFETY: `off < bytes`, so the address lies inside `data`; a
            // prefetch does not dereference in the language sense and
            // cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off)) };
            // Step to the start of the next cache line.
            off += 64 - ((addr + off) & 63);
            n += 1;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, max_lines);
    }
}

/// Safe wrappers around the AVX2 kernels. They are private and reachable
/// only through a `Kernel` built by [`Kernel::avx2`], i.e. after the CPU
/// check; that check is what each `SAFETY` comment below relies on.
#[cfg(target_arch = "x86_64")]
mod avx2_entry {
    use super::{Block, avx2};

    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::l2(a, b) }
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::dot(a, b) }
    }

    pub(super) fn l2_blocks(a: &[Block], b: &[Block]) -> f32 {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::l2_blocks(a, b) }
    }

    pub(super) fn cos_blocks(a: &[Block], b: &[Block]) -> f32 {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::cos_blocks(a, b) }
    }

    pub(super) fn l2_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::l2_batch(q, rows, ids, out) }
    }

    pub(super) fn cos_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
        // SAFETY: only installed by `Kernel::avx2`, after detecting AVX2+FMA.
        unsafe { avx2::cos_batch(q, rows, ids, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_pad_with_zeros() {
        let v: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let mut rows = Vec::new();
        Block::extend_from(&mut rows, &v);
        assert_eq!(rows.len(), Block::count_for(11));
        assert_eq!(rows[1].0[..3], [8.0, 9.0, 10.0]);
        assert_eq!(rows[1].0[3..], [0.0; 5]);
    }

    #[test]
    fn detect_is_stable() {
        assert_eq!(Kernel::detect().name(), Kernel::detect().name());
    }
}
