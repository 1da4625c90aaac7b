//! The text side: embedder determinism and similarity, embedding
//! validation, BM25 ranking of exact codes, and rank fusion.

use simd_search::{
    Bm25Index, Embedder, EmbeddingError, HashingEmbedder, RRF_C, rrf_fuse, tokenizer::Fnv1a,
    validate_embedding,
};

/// Stable fingerprint of a vector's exact bits.
fn fingerprint(v: &[f32]) -> u64 {
    let mut h = Fnv1a::new();
    for x in v {
        h.write(&x.to_bits().to_le_bytes());
    }
    h.finish()
}

/// Dot product (the embeddings are unit vectors, so this is cosine).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The embedding of a fixed string is frozen across processes, machines
/// and releases (nodes compare vectors they computed independently).
#[test]
fn embedding_is_golden() {
    // Computed once and frozen: a change here changes every stored
    // embedding in every cluster, and needs a re-index.
    let e = HashingEmbedder::new(64).unwrap();
    let v = e.embed("Red Running Shoes, size 10 — SKU RS-10");
    assert_eq!(v.len(), 64);
    assert_eq!(fingerprint(&v), GOLDEN, "embedding changed: {v:?}");
    assert_eq!((v[45], v[13], v[0]), (0.466_082_3, -0.322_977_36, 0.0));
    // The same text in another instance (and so another process) agrees.
    assert_eq!(
        HashingEmbedder::new(64)
            .unwrap()
            .embed("Red Running Shoes, size 10 — SKU RS-10"),
        v
    );
    // Case and punctuation do not matter.
    assert_eq!(e.embed("red running shoes size 10 sku rs-10"), v);
}

/// Fingerprint of the golden embedding above.
const GOLDEN: u64 = 16_443_596_952_586_341_130;

/// Shared words, reordering and typos stay close; another topic does not.
#[test]
fn similar_texts_are_closer_than_unrelated() {
    let e = HashingEmbedder::new(256).unwrap();
    let a = e.embed("red trail running shoes for men");
    let b = e.embed("men's running shoe, red, trail");
    let c = e.embed("stainless steel chef knife 20cm");
    let typo = e.embed("red trial runing shoes for men");
    assert!(
        cosine(&a, &b) > cosine(&a, &c) + 0.2,
        "{} vs {}",
        cosine(&a, &b),
        cosine(&a, &c)
    );
    assert!(cosine(&a, &typo) > cosine(&a, &c) + 0.2);
    assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
}

/// Each rejection says what is wrong with the vector.
#[test]
fn validation_errors_name_the_problem() {
    let e = validate_embedding(&[0.0; 3], 4).unwrap_err();
    assert_eq!(
        e,
        EmbeddingError::WrongDimension {
            expected: 4,
            actual: 3
        }
    );
    assert!(e.to_string().contains("dimension 3, expected 4"));
    assert!(
        validate_embedding(&[0.0, f32::NAN], 2)
            .unwrap_err()
            .to_string()
            .contains("NaN")
    );
    assert!(
        validate_embedding(&[f32::INFINITY, 0.0], 2)
            .unwrap_err()
            .to_string()
            .contains("infinite")
    );
    assert!(validate_embedding(&[], 0).is_ok());
}

/// Exact product codes win the lexical leg, even among near-identical
/// codes and names.
#[test]
fn bm25_ranks_the_exact_sku_first() {
    let mut ix = Bm25Index::new();
    let products = [
        (1u64, "Trail runner shoe, red. SKU TR-100-RED"),
        (2, "Trail runner shoe, blue. SKU TR-100-BLU"),
        (3, "Trail runner shoe, red, wide fit. SKU TR-101-RED"),
        (4, "Red wool socks, pair. SKU SO-7"),
        (5, "Road runner shoe red. SKU RR-100-RED"),
    ];
    for (l, t) in products {
        ix.add(l, t);
    }
    assert_eq!(ix.search("TR-100-BLU", 5)[0].0, 2);
    assert_eq!(ix.search("tr-101-red", 5)[0].0, 3);
    assert_eq!(ix.search("SO-7", 5)[0].0, 4);
    // A name query still ranks by words.
    assert_eq!(ix.search("wool socks", 5)[0].0, 4);
}

/// Agreement between the two legs outranks a single first place.
#[test]
fn rrf_fuses_hybrid_results() {
    let semantic = [(10u64, 0.91f32), (20, 0.90), (30, 0.85)];
    let lexical = [(30u64, 9.1f32), (40, 3.0)];
    let fused = rrf_fuse(&[&semantic, &lexical], 3, RRF_C);
    // 30 is in both lists, so it wins despite ranking third semantically.
    assert_eq!(fused[0].0, 30);
    assert!((fused[0].1 - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
    assert_eq!(fused.iter().map(|f| f.0).collect::<Vec<_>>(), [30, 10, 20]);
}
