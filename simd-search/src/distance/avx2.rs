//! AVX2 + FMA distance kernels, the fast path on x86-64.
//!
//! Every function here is compiled with `#[target_feature(enable =
//! "avx2,fma")]` and is therefore `unsafe` to call: executing it on a CPU
//! without those features is undefined behaviour. The only callers are the
//! safe entry points in `super::Kernel`, which exist only after
//! `is_x86_feature_detected!` has confirmed both features (the memchr
//! pattern). Slices are walked with iterators or checked indexing, so the
//! only raw-pointer work is the vector loads themselves.

use core::arch::x86_64::{
    __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps, _mm256_add_ps,
    _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_load_ps,
    _mm256_loadu_ps, _mm256_loadu_si256, _mm256_maskload_ps, _mm256_setzero_ps, _mm256_sub_ps,
};

use super::Block;

/// Lane masks for the tail: `MASKS[8 - r..16 - r]` enables the first `r` lanes.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Horizontal sum of the eight lanes, high half onto low half then pairs
/// (the order `scalar::reduce` copies).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let q = _mm_add_ps(lo, hi); // lanes i + (i + 4)
    let h = _mm_add_ps(q, _mm_movehl_ps(q, q)); // lanes 0+2, 1+3
    let s = _mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h));
    _mm_cvtss_f32(s)
}

/// Loads eight lanes from an aligned block.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(b: &Block) -> __m256 {
    // SAFETY: `Block` is `repr(C, align(32))` around `[f32; 8]`, so the
    // pointer is valid for 32 bytes of reads and 32-byte aligned.
    unsafe { _mm256_load_ps(b.0.as_ptr()) }
}

/// Loads eight lanes from an unaligned chunk of exactly eight floats.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load8(c: &[f32]) -> __m256 {
    assert!(c.len() >= 8);
    // SAFETY: the assertion guarantees eight readable floats; `loadu` has
    // no alignment requirement.
    unsafe { _mm256_loadu_ps(c.as_ptr()) }
}

/// Loads the first `tail.len()` (< 8) lanes and zeroes the rest, without
/// touching memory past the slice.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load_tail(tail: &[f32]) -> __m256 {
    let r = tail.len().min(7);
    let mask_src = &MASKS[8 - r..16 - r];
    // SAFETY: `mask_src` holds eight i32 (32 bytes) inside `MASKS`; the
    // masked load reads only the first `r` lanes of `tail`, which exist,
    // and masked-off lanes never fault.
    unsafe {
        let mask = _mm256_loadu_si256(mask_src.as_ptr().cast());
        _mm256_maskload_ps(tail.as_ptr(), mask)
    }
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    // Four independent accumulators hide the FMA latency.
    for (x, y) in ca.zip(cb) {
        for (j, s) in acc.iter_mut().enumerate() {
            let d = _mm256_sub_ps(load8(&x[8 * j..]), load8(&y[8 * j..]));
            *s = _mm256_fmadd_ps(d, d, *s);
        }
    }
    let (c8a, c8b) = (ra.chunks_exact(8), rb.chunks_exact(8));
    let (ta, tb) = (c8a.remainder(), c8b.remainder());
    for (j, (x, y)) in c8a.zip(c8b).enumerate() {
        let d = _mm256_sub_ps(load8(x), load8(y));
        acc[j] = _mm256_fmadd_ps(d, d, acc[j]);
    }
    if !ta.is_empty() {
        let d = _mm256_sub_ps(load_tail(ta), load_tail(tb));
        acc[3] = _mm256_fmadd_ps(d, d, acc[3]);
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// Inner product over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for (j, s) in acc.iter_mut().enumerate() {
            *s = _mm256_fmadd_ps(load8(&x[8 * j..]), load8(&y[8 * j..]), *s);
        }
    }
    let (c8a, c8b) = (ra.chunks_exact(8), rb.chunks_exact(8));
    let (ta, tb) = (c8a.remainder(), c8b.remainder());
    for (j, (x, y)) in c8a.zip(c8b).enumerate() {
        acc[j] = _mm256_fmadd_ps(load8(x), load8(y), acc[j]);
    }
    if !ta.is_empty() {
        acc[3] = _mm256_fmadd_ps(load_tail(ta), load_tail(tb), acc[3]);
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// Squared Euclidean distance between two padded rows (no tail to handle:
/// padding lanes are zero in both rows).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2_blocks(a: &[Block], b: &[Block]) -> f32 {
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (a.chunks_exact(2), b.chunks_exact(2));
    let (ra, rb) = (pa.remainder(), pb.remainder());
    for (x, y) in pa.zip(pb) {
        let d0 = _mm256_sub_ps(load(&x[0]), load(&y[0]));
        let d1 = _mm256_sub_ps(load(&x[1]), load(&y[1]));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    if let (Some(x), Some(y)) = (ra.first(), rb.first()) {
        let d = _mm256_sub_ps(load(x), load(y));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    hsum(_mm256_add_ps(s0, s1))
}

/// Cosine distance `1 - <a, b>` between two padded rows of unit vectors.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn cos_blocks(a: &[Block], b: &[Block]) -> f32 {
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (a.chunks_exact(2), b.chunks_exact(2));
    let (ra, rb) = (pa.remainder(), pb.remainder());
    for (x, y) in pa.zip(pb) {
        s0 = _mm256_fmadd_ps(load(&x[0]), load(&y[0]), s0);
        s1 = _mm256_fmadd_ps(load(&x[1]), load(&y[1]), s1);
    }
    if let (Some(x), Some(y)) = (ra.first(), rb.first()) {
        s0 = _mm256_fmadd_ps(load(x), load(y), s0);
    }
    1.0 - hsum(_mm256_add_ps(s0, s1))
}

/// Squared Euclidean distances from `q` to the rows `ids` of `rows` (rows
/// `q.len()` blocks wide); one call per graph expansion keeps the kernel
/// inlined in the loop.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
    let w = q.len();
    for (o, &id) in out.iter_mut().zip(ids) {
        let start = id as usize * w;
        // SAFETY: this function's own precondition (AVX2 + FMA) carries over.
        *o = unsafe { l2_blocks(q, &rows[start..start + w]) };
    }
}

/// Cosine distances from `q` to the rows `ids` of `rows`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn cos_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
    let w = q.len();
    for (o, &id) in out.iter_mut().zip(ids) {
        let start = id as usize * w;
        // SAFETY: this function's own precondition (AVX2 + FMA) carries over.
        *o = unsafe { cos_blocks(q, &rows[start..start + w]) };
    }
}
