//! Every SIMD kernel against the scalar reference, for every length
//! 1..=1024 and both metrics (the memchr discipline), plus the dispatch.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use simd_search::Kernel;
use simd_search::distance::{Block, FORCE_SCALAR_ENV, scalar};

/// Random values in [-1, 1).
fn random_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

/// `a` and `b` agree within 1e-5 relative to `scale`, the sum of the
/// magnitudes of the terms (for L2 that is the result itself; for a dot
/// product it is what bounds the rounding error of any summation order).
fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-5 * scale.max(f32::MIN_POSITIVE)
}

/// Slice kernels: every length, so every tail shape, both metrics.
#[test]
fn avx2_matches_scalar_for_every_length() {
    let Some(simd) = Kernel::avx2() else {
        eprintln!("no AVX2+FMA on this CPU: nothing to compare");
        return;
    };
    let mut rng = StdRng::seed_from_u64(1);
    for len in 1..=1024 {
        let a = random_vec(&mut rng, len);
        let b = random_vec(&mut rng, len);
        let l2 = scalar::l2(&a, &b);
        assert!(close(simd.l2(&a, &b), l2, l2), "l2 len {len}");
        let dot = scalar::dot(&a, &b);
        let scale: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        assert!(close(simd.dot(&a, &b), dot, scale), "dot len {len}");
        // Unaligned starts too: the slice kernels must not assume alignment.
        if len > 1 {
            let l2 = scalar::l2(&a[1..], &b[..len - 1]);
            assert!(
                close(simd.l2(&a[1..], &b[..len - 1]), l2, l2),
                "l2 offset len {len}"
            );
        }
    }
}

/// Padded-row kernels (the index's hot path), pair and batch forms.
#[test]
fn row_kernels_match_scalar_for_every_length() {
    let Some(simd) = Kernel::avx2() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(2);
    let sc = Kernel::scalar();
    for metric in [simd_search::Metric::L2, simd_search::Metric::Cosine] {
        let (fast, slow) = (simd.rows(metric), sc.rows(metric));
        for len in 1..=1024 {
            let (a, b) = (random_vec(&mut rng, len), random_vec(&mut rng, len));
            let (mut ra, mut rb) = (Vec::new(), Vec::new());
            Block::extend_from(&mut ra, &a);
            Block::extend_from(&mut rb, &b);
            let scale: f32 = match metric {
                simd_search::Metric::L2 => scalar::l2(&a, &b),
                simd_search::Metric::Cosine => {
                    1.0 + a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f32>()
                }
            };
            let want = slow.pair(&ra, &rb);
            assert!(
                close(fast.pair(&ra, &rb), want, scale),
                "{metric:?} len {len}"
            );
            // The batch form gives the same distances, row by row.
            let mut store = rb.clone();
            store.extend_from_slice(&ra);
            let mut out = [0.0f32; 2];
            fast.batch(&ra, &store, &[1, 0], &mut out);
            assert!(
                close(out[0], fast.pair(&ra, &ra), scale.max(1.0)),
                "{metric:?} batch len {len}"
            );
            assert_eq!(out[1], fast.pair(&ra, &rb));
        }
    }
}

/// `SIMD_SEARCH_FORCE_SCALAR=1` must really switch the whole suite to the
/// scalar kernels, or the second CI run proves nothing.
#[test]
fn detect_honours_force_scalar() {
    let forced = std::env::var_os(FORCE_SCALAR_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let name = Kernel::detect().name();
    if forced {
        assert_eq!(name, "scalar");
    } else if Kernel::avx2().is_some() {
        assert_eq!(name, "avx2+fma");
    }
    eprintln!("kernel in use: {name}");
}
