//! Recall against exact search: fresh, after save/load, after deleting
//! 30 %, and after a rebuild.

use crate::common::{EF, K, brute_force, build, data, mean_recall, shared_l2};
use simd_search::{Hnsw, Metric, SearchOptions};

/// Squared-L2 recall@10 against exact search.
#[test]
fn l2_recall_is_high() {
    let ix = shared_l2();
    assert_eq!(ix.len(), data().base.len());
    let r = mean_recall(
        |q| ix.search_with(q, &SearchOptions::new(K).ef(EF)).unwrap(),
        |q| brute_force(Metric::L2, q, K, |_| true),
    );
    eprintln!("L2 recall@10 at ef={EF}: {r:.4}");
    assert!(r >= 0.95, "recall {r}");
    // Results are sorted and carry true distances.
    let q = &data().queries[0];
    let hits = ix.search(q, K).unwrap();
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    let exact = crate::common::distance(Metric::L2, q, &data().base[hits[0].label as usize]);
    assert!((f64::from(hits[0].distance) - exact).abs() < 1e-3 * exact.max(1.0));
}

/// Cosine recall@10; the index normalises, so scale must not matter.
#[test]
fn cosine_recall_is_high() {
    let ix = build(Metric::Cosine, |_| 0);
    let r = mean_recall(
        |q| ix.search_with(q, &SearchOptions::new(K).ef(EF)).unwrap(),
        |q| brute_force(Metric::Cosine, q, K, |_| true),
    );
    eprintln!("cosine recall@10 at ef={EF}: {r:.4}");
    assert!(r >= 0.95, "recall {r}");
    // A base vector, scaled, finds itself at distance ~0.
    let v: Vec<f32> = data().base[5].iter().map(|x| x * 3.0).collect();
    let hit = ix.search(&v, 1).unwrap()[0];
    assert_eq!(hit.label, 5);
    assert!(hit.distance.abs() < 1e-5);
}

/// Saving and loading changes nothing a user can observe.
#[test]
fn save_load_gives_identical_results() {
    let ix = shared_l2();
    let bytes = ix.to_bytes();
    let back = Hnsw::from_bytes(&bytes).unwrap();
    assert_eq!(
        (back.len(), back.dim(), back.metric()),
        (ix.len(), ix.dim(), ix.metric())
    );
    assert_eq!(back.to_bytes(), bytes);
    for q in &data().queries {
        let opts = SearchOptions::new(K).ef(32);
        assert_eq!(
            ix.search_with(q, &opts).unwrap(),
            back.search_with(q, &opts).unwrap()
        );
    }
}

/// Tombstones: never returned, recall over the live set holds, and the
/// rebuilt index (built from `&self`, as the node's background task
/// does) is as good.
#[test]
fn deleted_never_appear_and_recall_holds_through_rebuild() {
    // A private copy of the shared index (via bytes: also a persistence test).
    let mut ix = Hnsw::from_bytes(&shared_l2().to_bytes()).unwrap();
    let gone = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % 10 < 3;
    let mut deleted = 0;
    for i in 0..data().base.len() {
        if gone(i) {
            assert!(ix.delete(i as u64));
            deleted += 1;
        }
    }
    assert_eq!(ix.deleted_len(), deleted);
    assert_eq!(ix.len(), data().base.len() - deleted);
    assert!(ix.needs_rebuild(), "30% deleted > 25% threshold");

    let check = |ix: &Hnsw, stage: &str| {
        for q in &data().queries {
            let hits = ix.search(q, K).unwrap();
            assert_eq!(hits.len(), K);
            assert!(
                hits.iter().all(|h| !gone(h.label as usize)),
                "{stage}: deleted label returned"
            );
        }
        let r = mean_recall(
            |q| ix.search_with(q, &SearchOptions::new(K).ef(EF)).unwrap(),
            |q| brute_force(Metric::L2, q, K, |i| !gone(i)),
        );
        eprintln!("{stage}: recall@10 over live elements {r:.4}");
        assert!(r >= 0.95, "{stage}: recall {r}");
    };
    check(&ix, "after deleting 30%");

    // The background-task path: build from &self, then swap in.
    let fresh = ix.compacted();
    assert_eq!((fresh.len(), fresh.deleted_len()), (ix.len(), 0));
    ix = fresh;
    assert!(!ix.needs_rebuild());
    check(&ix, "after rebuild");

    // Updating a live label moves it; the old vector is gone.
    let live = (0..data().base.len()).find(|&i| !gone(i)).unwrap() as u64;
    let target = data().queries[0].clone();
    assert!(ix.insert(live, &target, 0).unwrap());
    assert_eq!(ix.search(&target, 1).unwrap()[0].label, live);
    assert_eq!(ix.deleted_len(), 1);
}
