//! Saving and loading an [`Hnsw`] index as bytes.
//!
//! The node wraps these bytes in the project's versioned envelope; this
//! format carries its own small version too, because it evolves with this
//! crate, not with the envelope. Loading must survive anything — a torn
//! write, a truncated file, a flipped bit — with an error and never a
//! panic or an out-of-bounds link that would panic later in a search, so
//! [`Hnsw::from_bytes`] checks a checksum first and then every length,
//! count, id, level and float before building the index.
//!
//! Layout (little-endian), column by column so that each part is one
//! bulk copy and the size stays close to hnswlib's:
//!
//! ```text
//! magic "CCDHNSW\0" · version u32 · dim u32 · metric u8 · m u32
//! ef_construction u32 · ef_search u32 · rebuild_ratio f32 · seed u64
//! sampler state u64 · nodes u32 · entry u32 (u32::MAX = none)
//! labels u64×n · categories u32×n · levels u8×n · deleted u8×n
//! vectors f32×n×dim · layer-0 lists u32×n×(1+2m), as [count, ids…]
//! upper lists u32×Σlevel×(1+m) · checksum u64 of all the above
//! ```

use std::collections::HashMap;

use thiserror::Error;

use crate::distance::{Block, Metric};
use crate::hnsw::graph::LevelSampler;
use crate::hnsw::params::{MAX_DIM, MAX_LEVEL, MAX_NODES, ParamsError};
use crate::hnsw::{Hnsw, HnswParams, Kernel};
use crate::tokenizer::mix64;

/// Version of the byte format written by [`Hnsw::to_bytes`].
pub const FORMAT_VERSION: u32 = 1;

/// First bytes of every saved index.
const MAGIC: [u8; 8] = *b"CCDHNSW\0";
/// Marks "no entry point" (an empty index).
const NO_ENTRY: u32 = u32::MAX;
/// Bytes before the per-node columns.
const HEADER: usize = 8 + 4 + 4 + 1 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 4;

/// Why bytes could not be loaded as an index. Nothing is loaded on error.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LoadError {
    /// The bytes end before the data they announce.
    #[error("truncated: need {needed} bytes, have {actual}")]
    Truncated {
        /// Bytes the header implies.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// Not an index written by this crate.
    #[error("not a simd-search index (bad magic)")]
    BadMagic,
    /// Written by a newer (or unknown) format version.
    #[error("unsupported index format version {0} (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// The checksum does not match: the bytes were damaged.
    #[error("checksum mismatch: the index bytes are damaged")]
    Checksum,
    /// The stored parameters are out of range.
    #[error("invalid parameters: {0}")]
    Params(#[from] ParamsError),
    /// The bytes are longer than the data they announce.
    #[error("{0} trailing bytes after the index")]
    Trailing(usize),
    /// A field holds an impossible value; the message names it.
    #[error("corrupt index: {0}")]
    Corrupt(String),
}

/// A bit-flip-sensitive 64-bit checksum: every step is a bijection of the
/// state, so changing any one word always changes the result.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64 ^ bytes.len() as u64;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    let mut a = [0u8; 8];
    a[..tail.len()].copy_from_slice(tail);
    mix64(h ^ u64::from_le_bytes(a))
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    /// All bytes.
    buf: &'a [u8],
    /// Read position.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(LoadError::Truncated {
                needed: self.pos.saturating_add(n),
                actual: self.buf.len(),
            });
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], LoadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, LoadError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `n` little-endian `u32`s.
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, LoadError> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(too_big)?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// The error for sizes that overflow `usize`.
fn too_big() -> LoadError {
    LoadError::Corrupt("sizes overflow".into())
}

/// Shorthand for a `Corrupt` error.
fn corrupt(msg: String) -> LoadError {
    LoadError::Corrupt(msg)
}

impl Hnsw {
    /// The index as bytes (format [`FORMAT_VERSION`]); [`Hnsw::from_bytes`]
    /// restores it exactly, search results included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let g = &self.graph;
        let n = g.len();
        let size =
            HEADER + n * (8 + 4 + 1 + 1 + 4 * g.dim + 4 * (1 + g.m0)) + 4 * g.upper.len() + 8;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(g.dim as u32).to_le_bytes());
        out.push(match self.metric {
            Metric::L2 => 0,
            Metric::Cosine => 1,
        });
        let p = &self.params;
        for v in [p.m, p.ef_construction, p.ef_search] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&p.rebuild_ratio.to_le_bytes());
        out.extend_from_slice(&p.seed.to_le_bytes());
        out.extend_from_slice(&self.sampler.state.to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&g.entry.unwrap_or(NO_ENTRY).to_le_bytes());
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        for c in &self.categories {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&g.levels);
        out.extend(self.deleted.iter().map(|&d| u8::from(d)));
        for id in 0..n as u32 {
            for x in g.row(id).iter().flat_map(|b| b.0).take(g.dim) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        for x in g.links0.iter().chain(&g.upper) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        debug_assert_eq!(out.len(), size);
        out
    }

    /// Restores an index saved by [`Hnsw::to_bytes`], after checking
    /// everything; damaged or foreign bytes give an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Hnsw, LoadError> {
        Self::from_bytes_with_kernel(bytes, Kernel::detect())
    }

    /// [`Hnsw::from_bytes`] with a chosen kernel.
    pub fn from_bytes_with_kernel(bytes: &[u8], kernel: Kernel) -> Result<Hnsw, LoadError> {
        if bytes.len() < 12 {
            return Err(LoadError::Truncated {
                needed: HEADER + 8,
                actual: bytes.len(),
            });
        }
        if bytes[..8] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        let mut r = Reader { buf: bytes, pos: 8 };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(LoadError::UnsupportedVersion(version));
        }
        if bytes.len() < HEADER + 8 {
            return Err(LoadError::Truncated {
                needed: HEADER + 8,
                actual: bytes.len(),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut s = [0u8; 8];
        s.copy_from_slice(sum);
        if checksum(body) != u64::from_le_bytes(s) {
            return Err(LoadError::Checksum);
        }
        r.buf = body;
        decode(&mut r, kernel)
    }
}

/// Parses and validates the checksummed body.
///
/// The checksum only proves the bytes are the ones written; it does not
/// prove they were written by a correct program (or by this version of
/// it), so every value is still checked before it can index anything.
fn decode(r: &mut Reader<'_>, kernel: Kernel) -> Result<Hnsw, LoadError> {
    // Header: the same validation as a freshly constructed index.
    let dim = r.u32()? as usize;
    let metric = match r.u8()? {
        0 => Metric::L2,
        1 => Metric::Cosine,
        t => return Err(corrupt(format!("unknown metric tag {t}"))),
    };
    let params = HnswParams {
        m: r.u32()? as usize,
        ef_construction: r.u32()? as usize,
        ef_search: r.u32()? as usize,
        rebuild_ratio: f32::from_le_bytes(r.array()?),
        seed: r.u64()?,
    };
    params.validate()?;
    if dim == 0 || dim > MAX_DIM {
        return Err(ParamsError::Dim(dim).into());
    }
    let state = r.u64()?;
    let n = r.u32()? as usize;
    let entry = r.u32()?;
    if n > MAX_NODES {
        return Err(corrupt(format!("{n} nodes exceed the maximum")));
    }
    let (m, m0) = (params.m, params.m0());
    // Check the fixed-size columns fit before allocating anything for them.
    let fixed = n
        .checked_mul(8 + 4 + 1 + 1 + 4 * dim + 4 * (1 + m0))
        .ok_or_else(too_big)?;
    if r.buf.len() - r.pos < fixed {
        return Err(LoadError::Truncated {
            needed: r.pos.saturating_add(fixed),
            actual: r.buf.len(),
        });
    }

    // Per-node columns. Levels bound the upper-layer lists read below, so
    // an oversized level would read far past the node's own lists.
    let mut ix = Hnsw::empty(dim, metric, params, kernel);
    ix.sampler = LevelSampler::new(m, state);
    ix.labels = r
        .take(8 * n)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    ix.categories = r.u32s(n)?;
    let levels = r.take(n)?.to_vec();
    if let Some(l) = levels.iter().find(|&&l| l > MAX_LEVEL) {
        return Err(corrupt(format!("level {l} above {MAX_LEVEL}")));
    }
    ix.deleted = r
        .take(n)?
        .iter()
        .map(|&d| match d {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(corrupt(format!("deleted flag {d}"))),
        })
        .collect::<Result<_, _>>()?;

    // Vectors: finite (a NaN would poison every comparison it meets),
    // padded into blocks.
    let g = &mut ix.graph;
    g.vectors.reserve(n * g.width);
    let mut row = Vec::with_capacity(dim);
    for id in 0..n {
        row.clear();
        for c in r.take(4 * dim)?.chunks_exact(4) {
            row.push(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        if row.iter().any(|x| !x.is_finite()) {
            return Err(corrupt(format!("node {id} has a non-finite component")));
        }
        Block::extend_from(&mut g.vectors, &row);
    }

    // Links: counts within capacity, ids in range and on the right layers.
    // The length of the upper lists follows from the levels just read; the
    // total must then match the input exactly.
    g.links0 = r.u32s(n * (1 + m0))?;
    let mut upper_len = 0usize;
    for &l in &levels {
        g.upper_start.push(upper_len);
        upper_len = upper_len
            .checked_add(usize::from(l) * (1 + m))
            .ok_or_else(too_big)?;
    }
    g.upper = r.u32s(upper_len)?;
    if r.pos != r.buf.len() {
        return Err(LoadError::Trailing(r.buf.len() - r.pos));
    }
    g.levels = levels;
    check_lists(&g.links0, 1 + m0, |_| 0, &g.levels, "layer-0")?;
    for id in 0..n {
        let start = g.upper_start[id];
        for l in 1..=g.levels[id] {
            let s = start + usize::from(l - 1) * (1 + m);
            check_lists(&g.upper[s..s + 1 + m], 1 + m, |_| l, &g.levels, "upper")?;
        }
    }
    // Search starts at the entry point, on its level: it must exist and be
    // on the top layer, or the descent would miss layers or index nothing.
    g.entry = match (entry, n) {
        (NO_ENTRY, 0) => None,
        (e, _) if (e as usize) < n => Some(e),
        (e, _) => return Err(corrupt(format!("entry point {e} with {n} nodes"))),
    };
    let top = g.levels.iter().copied().max().unwrap_or(0);
    if g.entry.is_some_and(|e| g.levels[e as usize] != top) {
        return Err(corrupt("entry point is not on the top layer".into()));
    }
    rebuild_maps(&mut ix)?;
    Ok(ix)
}

/// Checks lists of `stride` slots (`[count, ids…]`) on layer `layer(i)`:
/// counts fit, ids exist and live on that layer.
fn check_lists(
    slots: &[u32],
    stride: usize,
    layer: impl Fn(usize) -> u8,
    levels: &[u8],
    what: &str,
) -> Result<(), LoadError> {
    for (i, list) in slots.chunks_exact(stride).enumerate() {
        let count = list[0] as usize;
        if count >= stride {
            return Err(corrupt(format!("{what} list {i} holds {count} links")));
        }
        let l = layer(i);
        for &x in &list[1..1 + count] {
            if levels.get(x as usize).is_none_or(|&lx| lx < l) {
                return Err(corrupt(format!(
                    "{what} list {i} links to invalid node {x}"
                )));
            }
        }
    }
    Ok(())
}

/// Derives the label and category maps and the tombstone count (they are
/// not stored: derivable state is recomputed, never trusted).
fn rebuild_maps(ix: &mut Hnsw) -> Result<(), LoadError> {
    let mut by_label = HashMap::with_capacity(ix.labels.len());
    for (id, (&label, &dead)) in ix.labels.iter().zip(&ix.deleted).enumerate() {
        let members = ix.by_category.entry(ix.categories[id]).or_default();
        members.ids.push(id as u32);
        if dead {
            ix.deleted_count += 1;
        } else {
            members.live += 1;
            if by_label.insert(label, id as u32).is_some() {
                return Err(corrupt(format!("label {label} is live twice")));
            }
        }
    }
    ix.by_label = by_label;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Hnsw {
        let params = HnswParams {
            m: 4,
            ef_construction: 20,
            ..HnswParams::default()
        };
        let mut ix = Hnsw::new(5, Metric::Cosine, params).unwrap();
        for i in 0..60u64 {
            let v: Vec<f32> = (0..5)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0)
                .collect();
            ix.insert(i, &v, (i % 4) as u32).unwrap();
        }
        ix.delete(3);
        ix
    }

    /// Replaces the trailing checksum so damage reaches the validators.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - 8;
        let sum = checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum.to_le_bytes());
    }

    // Loading gives back the same index, byte for byte and hit for hit.
    #[test]
    fn round_trip_is_exact() {
        let ix = sample();
        let bytes = ix.to_bytes();
        let back = Hnsw::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!((back.len(), back.deleted_len()), (59, 1));
        let q = [1.0, -2.0, 0.5, 3.0, 0.0];
        assert_eq!(ix.search(&q, 5).unwrap(), back.search(&q, 5).unwrap());
    }

    // Each kind of damage gets its own, named error.
    #[test]
    fn named_errors() {
        let mut bytes = sample().to_bytes();
        assert_eq!(
            Hnsw::from_bytes(b"nope").unwrap_err(),
            LoadError::Truncated {
                needed: HEADER + 8,
                actual: 4
            }
        );
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(Hnsw::from_bytes(&bad).unwrap_err(), LoadError::BadMagic);
        bad = bytes.clone();
        bad[8] = 9;
        assert_eq!(
            Hnsw::from_bytes(&bad).unwrap_err(),
            LoadError::UnsupportedVersion(9)
        );
        bad = bytes.clone();
        bad[100] ^= 4;
        assert_eq!(Hnsw::from_bytes(&bad).unwrap_err(), LoadError::Checksum);
        // A link past the end, with a valid checksum.
        // Node 0's first layer-0 link: after the header, the per-node
        // columns (label, category, level, flag, 5 floats) and its count.
        let first_link = HEADER + 60 * (8 + 4 + 1 + 1 + 4 * 5) + 4;
        bytes[first_link..first_link + 4].copy_from_slice(&1000u32.to_le_bytes());
        reseal(&mut bytes);
        let e = Hnsw::from_bytes(&bytes).unwrap_err();
        assert!(e.to_string().contains("invalid node 1000"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Damage behind a valid checksum reaches the structural checks:
        // they, not the checksum, must stop it.
        #[test]
        fn resealed_damage_never_panics(flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..4)) {
            let mut bytes = sample().to_bytes();
            let body = bytes.len() - 8;
            for (at, bit) in flips {
                bytes[at % body] ^= 1 << bit;
            }
            reseal(&mut bytes);
            if let Ok(ix) = Hnsw::from_bytes(&bytes) {
                // Whatever loads must also search without panicking.
                let _ = ix.search(&[0.5; 5], 3);
            }
        }
    }
}
