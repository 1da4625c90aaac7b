//! Category-filtered search: recall of the graph plan, exactness of the
//! selective plan, and the planner's choice.

use crate::common::{EF, K, N, brute_force, build, data, mean_recall, shared_l2};
use simd_search::{Filter, Metric, Plan, SearchOptions};

/// The graph plan alone (no exact fallback) keeps recall with a 10 %
/// filter, because it walks non-matching nodes and widens until it has
/// `ef` matches.
#[test]
fn graph_filter_keeps_recall_with_ten_categories() {
    let ix = shared_l2(); // category = i % 10
    for c in [0u32, 3, 9] {
        let opts = SearchOptions::new(K)
            .filter(Filter::Category(c))
            .plan(Plan::Graph)
            .ef(EF);
        let r = mean_recall(
            |q| {
                let hits = ix.search_with(q, &opts).unwrap();
                assert!(hits.iter().all(|h| h.label % 10 == u64::from(c)));
                hits
            },
            |q| brute_force(Metric::L2, q, K, |i| i % 10 == c as usize),
        );
        eprintln!("category {c}: graph-filtered recall@10 {r:.4}");
        assert!(r >= 0.9, "category {c}: recall {r}");
    }
    // Several categories at once.
    let cats = [1u32, 4, 4];
    let opts = SearchOptions::new(K)
        .filter(Filter::AnyOf(&cats))
        .plan(Plan::Graph)
        .ef(EF);
    let r = mean_recall(
        |q| ix.search_with(q, &opts).unwrap(),
        |q| brute_force(Metric::L2, q, K, |i| i % 10 == 1 || i % 10 == 4),
    );
    assert!(r >= 0.9, "any-of recall {r}");
}

/// On this small index a 20 % filter is cheaper to scan exactly, and the
/// planner says so: both plans must then equal brute force.
#[test]
fn auto_and_exact_plans_are_exact() {
    let ix = shared_l2();
    for plan in [Plan::Auto, Plan::Exact] {
        let cats = [2u32, 7];
        let opts = SearchOptions::new(K)
            .filter(Filter::AnyOf(&cats))
            .plan(plan);
        for q in &data().queries[..20] {
            let got: Vec<u64> = ix
                .search_with(q, &opts)
                .unwrap()
                .iter()
                .map(|h| h.label)
                .collect();
            let want = brute_force(Metric::L2, q, K, |i| i % 10 == 2 || i % 10 == 7);
            assert_eq!(got, want, "{plan:?}");
        }
    }
}

/// A 1 % filter would starve a plain graph search; the planner scans the
/// category instead and returns exact results.
#[test]
fn very_selective_filter_returns_exact_results() {
    // 1% of the items in category 99, the rest spread over ten others.
    let rare = |i: usize| i % 100 == 42;
    let ix = build(Metric::L2, |i| if rare(i) { 99 } else { (i % 10) as u32 });
    let opts = SearchOptions::new(K).filter(Filter::Category(99));
    for q in &data().queries {
        let got: Vec<u64> = ix
            .search_with(q, &opts)
            .unwrap()
            .iter()
            .map(|h| h.label)
            .collect();
        assert_eq!(got, brute_force(Metric::L2, q, K, rare));
    }
    // Fewer matches than k: all of them, and nothing else.
    let few = SearchOptions::new(N).filter(Filter::Category(99));
    assert_eq!(
        ix.search_with(&data().queries[0], &few).unwrap().len(),
        N / 100
    );
    // An unknown category matches nothing.
    let none = SearchOptions::new(K).filter(Filter::Category(12345));
    assert!(
        ix.search_with(&data().queries[0], &none)
            .unwrap()
            .is_empty()
    );
}
