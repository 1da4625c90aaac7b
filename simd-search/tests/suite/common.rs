//! Shared fixtures: a seeded clustered dataset, an exact reference search
//! written independently of the crate's kernels, and recall.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use simd_search::{Hit, Hnsw, HnswParams, Metric};

/// Dimension of the test vectors.
pub const DIM: usize = 32;
/// Number of indexed vectors.
pub const N: usize = 5000;
/// Number of queries.
pub const NQ: usize = 100;
/// Results per query.
pub const K: usize = 10;
/// The beam width recall is asserted at: low enough that recall is not
/// trivially 1.0 on this small set (ef = 64 finds everything), so a
/// weaker graph would show.
pub const EF: usize = 16;

/// A fixed-seed dataset: `N` base vectors and `NQ` queries drawn around
/// 50 overlapping cluster centres (clustered data is the hard case for HNSW).
pub struct Data {
    /// Base vectors; row i has label i.
    pub base: Vec<Vec<f32>>,
    /// Query vectors (not in the base).
    pub queries: Vec<Vec<f32>>,
}

/// Draws `n` points around the centres.
fn around(rng: &mut StdRng, centres: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            c.iter()
                .map(|x| x + (rng.random::<f32>() - 0.5) * 1.6)
                .collect()
        })
        .collect()
}

/// The dataset, generated once per test process.
pub fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(7);
        let centres: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..DIM).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect())
            .collect();
        Data {
            base: around(&mut rng, &centres, N),
            queries: around(&mut rng, &centres, NQ),
        }
    })
}

/// Test parameters: small enough for a debug build, large enough to matter.
pub fn params() -> HnswParams {
    HnswParams {
        m: 12,
        ef_construction: 100,
        ef_search: 64,
        seed: 11,
        rebuild_ratio: 0.25,
    }
}

/// Builds an index over the dataset; element i gets label i and category
/// `category(i)`.
pub fn build(metric: Metric, category: impl Fn(usize) -> u32) -> Hnsw {
    let mut ix = Hnsw::new(DIM, metric, params()).expect("valid params");
    for (i, v) in data().base.iter().enumerate() {
        ix.insert(i as u64, v, category(i)).expect("valid vector");
    }
    ix
}

/// The L2 index every read-only test shares (built once).
pub fn shared_l2() -> &'static Hnsw {
    static IX: OnceLock<Hnsw> = OnceLock::new();
    IX.get_or_init(|| build(Metric::L2, |i| (i % 10) as u32))
}

/// Exact distance in f64, independent of the crate's kernels.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        Metric::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum(),
        Metric::Cosine => {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

/// The exact `k` nearest labels among base rows that `keep` admits.
pub fn brute_force(metric: Metric, q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<u64> {
    let mut all: Vec<(f64, u64)> = data()
        .base
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (distance(metric, q, v), i as u64))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().take(k).map(|x| x.1).collect()
}

/// Fraction of `truth` found in `got`.
pub fn recall(got: &[Hit], truth: &[u64]) -> f64 {
    let hits = truth
        .iter()
        .filter(|t| got.iter().any(|h| h.label == **t))
        .count();
    hits as f64 / truth.len().max(1) as f64
}

/// Mean recall@K of `search` over all queries against `truth`.
pub fn mean_recall(search: impl Fn(&[f32]) -> Vec<Hit>, truth: impl Fn(&[f32]) -> Vec<u64>) -> f64 {
    let qs = &data().queries;
    qs.iter()
        .map(|q| recall(&search(q), &truth(q)))
        .sum::<f64>()
        / qs.len() as f64
}
