//! The one integration-test binary of simd-search (one binary links once,
//! which keeps the suite fast). Each module covers one public piece; run
//! the suite a second time with `SIMD_SEARCH_FORCE_SCALAR=1` to cover the
//! scalar kernels everywhere.

mod common;
mod filter;
mod kernels;
mod persist;
mod recall;
mod text;
