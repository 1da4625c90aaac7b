//! Portable distance kernels: the reference every SIMD kernel is checked
//! against, and the fallback on CPUs without AVX2/FMA (or when
//! `SIMD_SEARCH_FORCE_SCALAR=1` asks for it).
//!
//! The loops keep eight independent partial sums, in the same lane order as
//! the AVX2 kernels, so that results agree closely and the compiler can keep
//! the accumulators in SSE registers. No `unsafe` here.

use super::Block;

/// Sums the eight partial sums in the same tree order as the AVX2 horizontal
/// reduction (high half onto low half, then pairs), so rounding matches.
#[inline]
fn reduce(acc: [f32; 8]) -> f32 {
    let q = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    let h = [q[0] + q[2], q[1] + q[3]];
    h[0] + h[1]
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// Element `i` of a full chunk adds into partial sum `i % 8`; the tail
/// adds into the low partial sums, as the AVX2 masked load does.
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            let d = x - y;
            *s += d * d;
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        let d = x - y;
        acc[i] += d * d;
    }
    reduce(acc)
}

/// Inner product over the common prefix of `a` and `b`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[i] += x * y;
    }
    reduce(acc)
}

/// Squared Euclidean distance between two padded rows of blocks. Rows are
/// whole blocks with zero padding, so there is no tail.
pub fn l2_blocks(a: &[Block], b: &[Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.iter().zip(b) {
        for ((s, x), y) in acc.iter_mut().zip(&x.0).zip(&y.0) {
            let d = x - y;
            *s += d * d;
        }
    }
    reduce(acc)
}

/// Cosine distance `1 - <a, b>` between two padded rows of unit vectors.
pub fn cos_blocks(a: &[Block], b: &[Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.iter().zip(b) {
        for ((s, x), y) in acc.iter_mut().zip(&x.0).zip(&y.0) {
            *s += x * y;
        }
    }
    1.0 - reduce(acc)
}

/// Row `id` of a flat block store whose rows are `width` blocks long.
#[inline]
fn row(rows: &[Block], id: u32, width: usize) -> &[Block] {
    let start = id as usize * width;
    &rows[start..start + width]
}

/// Squared Euclidean distances from `q` to the rows `ids` of `rows`.
pub fn l2_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
    for (o, &id) in out.iter_mut().zip(ids) {
        *o = l2_blocks(q, row(rows, id, q.len()));
    }
}

/// Cosine distances from `q` to the rows `ids` of `rows`.
pub fn cos_batch(q: &[Block], rows: &[Block], ids: &[u32], out: &mut [f32]) {
    for (o, &id) in out.iter_mut().zip(ids) {
        *o = cos_blocks(q, row(rows, id, q.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Small integers are exact in f32, so any summation order must agree.
    #[test]
    fn small_cases_are_exact() {
        assert_eq!(l2(&[1.0, 2.0, 3.0], &[1.0, 0.0, 0.0]), 13.0);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
        assert_eq!(l2(&[], &[]), 0.0);
        let a = [Block([1.0; 8]), Block([0.5; 8])];
        let b = [Block([0.0; 8]), Block([0.5; 8])];
        assert_eq!(l2_blocks(&a, &b), 8.0);
        assert_eq!(cos_blocks(&b, &b), 1.0 - 2.0);
    }
}
