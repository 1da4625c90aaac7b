//! simd-search: the search replica every Concord node carries.
//!
//! Every node keeps a full, derived copy of the catalog's search index (sled
//! is the truth; this crate's state can always be rebuilt from it). The
//! crate offers the pieces of hybrid product search, with no I/O and no
//! async of its own:
//!
//! - [`Hnsw`] — an HNSW vector index (Malkov & Yashunin) with insert,
//!   delete/update, rebuild, category-filtered search and save/load
//!   ([`Hnsw::to_bytes`] / [`Hnsw::from_bytes`]);
//! - [`distance`] — squared-L2 and cosine kernels, AVX2 + FMA chosen at run
//!   time with a scalar fallback (the only `unsafe` code in Concord);
//! - [`HashingEmbedder`] — a deterministic text embedder, so semantic
//!   search works without a model, behind the [`Embedder`] trait;
//! - [`Bm25Index`] — lexical search, so exact SKUs and names rank first;
//! - [`rrf_fuse`] — reciprocal rank fusion of the two result lists.
//!
//! # Typical use (what the node does)
//!
//! ```
//! use simd_search::{Bm25Index, Embedder, HashingEmbedder, Hnsw, HnswParams, Metric, rrf_fuse, RRF_C};
//!
//! let embedder = HashingEmbedder::new(256).unwrap();
//! let mut ann = Hnsw::new(256, Metric::Cosine, HnswParams::default()).unwrap();
//! let mut bm25 = Bm25Index::new();
//! for (label, text, category) in [(1, "red trail running shoe TRS-1", 7), (2, "blue wool sock WS-2", 3)] {
//!     ann.insert(label, &embedder.embed(text), category).unwrap();
//!     bm25.add(label, text);
//! }
//! let q = "running shoes";
//! let semantic: Vec<(u64, f32)> = ann.search(&embedder.embed(q), 10).unwrap()
//!     .into_iter().map(|h| (h.label, 1.0 - h.distance)).collect();
//! let lexical = bm25.search(q, 10);
//! let fused = rrf_fuse(&[&semantic, &lexical], 10, RRF_C);
//! assert_eq!(fused[0].0, 1);
//! ```
//!
//! # CPU features
//!
//! The kernel is picked once per process by [`Kernel::detect`]: AVX2 + FMA
//! when the CPU has both, else scalar. Set `SIMD_SEARCH_FORCE_SCALAR=1` to
//! force the scalar kernels (CI runs the suite both ways). No `-C
//! target-cpu` flag is needed or wanted.
//!
//! # Measured (README)
//!
//! GloVe-50 (100,000 × 50, angular, 1,000 queries), one thread, `M = 16`,
//! `efConstruction = 200`, k = 10, one run of `../shared/ann-bench` on a
//! 2-core Intel Xeon VM with AVX-512, on 2026-11-25. hnswlib is the
//! harness's `-march=native` (AVX-512) build; we use AVX2 + FMA.
//!
//! | engine | ef=16 | ef=32 | ef=64 | ef=128 | ef=256 | build s | index MB |
//! |---|---|---|---|---|---|---|---|
//! | **simd-search** | 0.773 / 78.2k | 0.878 / 49.5k | 0.948 / 28.0k | 0.982 / 15.2k | 0.995 / 8.2k | 9.2 | 33.4 |
//! | hnswlib | 0.775 / 42.1k | 0.877 / 27.0k | 0.948 / 15.2k | 0.982 / 8.0k | 0.996 / 4.3k | 20.0 | 33.2 |
//! | faiss HNSWFlat | 0.771 / 44.2k | 0.885 / 27.2k | 0.956 / 14.6k | 0.986 / 7.8k | 0.997 / 4.0k | 23.0 | 32.8 |
//! | usearch | 0.775 / 27.3k | 0.876 / 16.4k | 0.947 / 9.9k | 0.982 / 5.3k | 0.995 / 2.7k | 24.2 | 33.2 |
//!
//! (cells: recall@10 / queries per second.) At matched recall@10 the
//! harness interpolates, for simd-search against hnswlib: 41.3k vs 22.4k
//! QPS at 0.90 (1.85×), 26.8k vs 14.7k at 0.95 (1.83×), 10.6k vs 5.5k at
//! 0.99 (1.91×); faiss reaches 15.4k and usearch 9.3k at 0.95. Build time
//! is 0.46× hnswlib's, the saved index 1.006× its size. Absolute QPS moves
//! by ±10–15 % between runs on this shared machine (an earlier run: 23.9k
//! vs 12.1k at 0.95); the ratios held. With `SIMD_SEARCH_FORCE_SCALAR=1`
//! simd-search alone gave 19.2k QPS at ef = 64 and a 13.3 s build: search
//! is bound by memory latency more than by arithmetic, which is why the
//! layout (flat arrays, aligned padded rows), batched prefetching and the
//! sorted candidate pool matter more than the SIMD width.
//!
//! Reproduce:
//!
//! ```text
//! bash ../shared/ann-bench/setup.sh
//! V=/tmp/ann_anchor_venv/bin/python
//! $V ../shared/ann-bench/make_dataset.py --source glove50 --out /tmp/ann/glove50
//! cargo build --release -p simd-search --example ann_bench
//! $V ../shared/ann-bench/bench_anchors.py /tmp/ann/glove50 --out /tmp/ann/results \
//!    --external "target/release/examples/ann_bench"
//! ```
//!
//! # Tests
//!
//! `cargo test -p simd-search` (and again with `SIMD_SEARCH_FORCE_SCALAR=1`):
//! kernels against the scalar reference for every length 1..=1024; recall
//! against brute force fresh, after save/load, after deleting 30 % and
//! after a rebuild; filtered recall and exactness; embedder golden values;
//! BM25 and fusion; proptests feeding `from_bytes` random, truncated and
//! bit-flipped bytes.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod distance;
mod embedder;
mod fusion;
mod hnsw;
mod lexical;
pub mod tokenizer;

pub use distance::{Kernel, Metric};
pub use embedder::{Embedder, EmbeddingError, HashingEmbedder, normalize, validate_embedding};
pub use fusion::{RRF_C, rrf_fuse};
pub use hnsw::{
    FORMAT_VERSION, Filter, Hit, Hnsw, HnswParams, IndexError, LoadError, MAX_DIM, MAX_EF,
    MAX_LEVEL, MAX_M, MAX_NODES, ParamsError, Plan, SearchOptions, SearchScratch,
};
pub use lexical::{BM25_B, BM25_K1, Bm25Index};
