//! Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): merges
//! ranked lists from different retrievers — the HNSW leg and the BM25 leg
//! of a hybrid search — into one ranking.
//!
//! RRF uses only ranks, never raw scores, which is the point: a cosine
//! distance and a BM25 score live on unrelated scales, and rank fusion needs
//! no calibration between them. Each list contributes `1 / (c + rank)` for
//! every label it holds (rank counted from 1); `c = 60` is the constant of
//! the original paper and damps the influence of the very top ranks.

use std::collections::HashMap;

/// The customary RRF constant (from the original paper).
pub const RRF_C: f32 = 60.0;

/// Fuses ranked lists of `(label, score)` — each best first; the scores
/// themselves are ignored — into the `k` best `(label, fused score)`, best
/// first. A label found in several lists sums its contributions; a label
/// repeated within one list counts only at its best rank there. Ties are
/// broken by smaller label so the output is deterministic. Pass [`RRF_C`]
/// for `c` unless you have tuned it.
pub fn rrf_fuse(lists: &[&[(u64, f32)]], k: usize, c: f32) -> Vec<(u64, f32)> {
    let mut fused: HashMap<u64, f32> = HashMap::new();
    let mut seen: Vec<u64> = Vec::new();
    for list in lists {
        seen.clear();
        for (i, &(label, _)) in list.iter().enumerate() {
            if seen.contains(&label) {
                continue;
            }
            seen.push(label);
            *fused.entry(label).or_insert(0.0) += 1.0 / (c + (i + 1) as f32);
        }
    }
    let mut out: Vec<(u64, f32)> = fused.into_iter().collect();
    out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_beats_a_single_top_rank() {
        // 7 is second in both lists; 1 and 2 top one list each.
        let ann = [(1, 0.9), (7, 0.8), (3, 0.7)];
        let bm25 = [(2, 12.0), (7, 11.0), (4, 1.0)];
        let out = rrf_fuse(&[&ann, &bm25], 3, RRF_C);
        assert_eq!(out[0].0, 7);
        assert!((out[0].1 - 2.0 / 62.0).abs() < 1e-7);
        // 1 and 2 tie at 1/61 and are ordered by label.
        assert_eq!((out[1].0, out[2].0), (1, 2));
        assert!((out[1].1 - 1.0 / 61.0).abs() < 1e-7);
    }

    #[test]
    fn edge_cases() {
        assert!(rrf_fuse(&[], 5, RRF_C).is_empty());
        let a = [(5, 1.0), (5, 0.5)];
        let out = rrf_fuse(&[&a, &[]], 5, RRF_C);
        assert_eq!(out, vec![(5, 1.0 / 61.0)]);
        assert!(rrf_fuse(&[&a], 0, RRF_C).is_empty());
    }
}
