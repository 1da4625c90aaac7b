//! `from_bytes` on hostile input: random, truncated and bit-flipped bytes
//! give an error, never a panic.

use std::sync::OnceLock;

use proptest::prelude::*;
use simd_search::{Hnsw, HnswParams, LoadError, Metric};

/// A small saved index (kept small so that proptest cases are cheap).
fn saved() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let params = HnswParams {
            m: 4,
            ef_construction: 16,
            ..HnswParams::default()
        };
        let mut ix = Hnsw::new(6, Metric::L2, params).unwrap();
        for i in 0..80u64 {
            let v: Vec<f32> = (0..6).map(|j| ((i * 13 + j * 5) % 17) as f32).collect();
            ix.insert(i, &v, (i % 3) as u32).unwrap();
        }
        ix.delete(10);
        ix.to_bytes()
    })
}

/// Every prefix of a valid file (a torn write) is refused.
#[test]
fn every_truncation_is_an_error() {
    let bytes = saved();
    assert!(Hnsw::from_bytes(bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(
            Hnsw::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(Hnsw::from_bytes(&longer).is_err());
}

/// The degenerate index saves and loads too.
#[test]
fn empty_index_round_trips() {
    let ix = Hnsw::new(3, Metric::Cosine, HnswParams::default()).unwrap();
    let back = Hnsw::from_bytes(&ix.to_bytes()).unwrap();
    assert!(back.is_empty());
    assert!(back.search(&[1.0, 0.0, 0.0], 5).unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Garbage is refused (mostly at the magic).
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(Hnsw::from_bytes(&bytes).is_err());
    }

    /// Garbage behind a valid magic and version reaches the length checks.
    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(tail in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut bytes = saved()[..12].to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(Hnsw::from_bytes(&bytes).is_err());
    }

    /// Any damage to a valid file is caught, whichever field it hits.
    #[test]
    fn bit_flips_are_detected(flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..5)) {
        let mut bytes = saved().to_vec();
        let n = bytes.len();
        for &(at, bit) in &flips {
            bytes[at % n] ^= 1 << bit;
        }
        if bytes != saved() {
            let e = Hnsw::from_bytes(&bytes).unwrap_err();
            prop_assert!(matches!(e, LoadError::Checksum | LoadError::BadMagic | LoadError::UnsupportedVersion(_)), "{e}");
        }
    }

    /// Both at once: cut and altered.
    #[test]
    fn truncated_then_damaged_never_panics(cut in 0usize..4096, at in any::<usize>()) {
        let bytes = saved();
        let mut b = bytes[..cut.min(bytes.len())].to_vec();
        if !b.is_empty() {
            let i = at % b.len();
            b[i] = b[i].wrapping_add(1);
        }
        prop_assert!(Hnsw::from_bytes(&b).is_err());
    }
}
