//! Text → vector: the [`Embedder`] trait, the built-in deterministic
//! [`HashingEmbedder`], and the checks every embedding passes before it
//! reaches an index.
//!
//! The hashing embedder exists so that semantic search works on a fresh
//! cluster with no model to download: it is a classic feature-hashing bag
//! of words (Weinberger et al., 2009) over lower-cased word unigrams, word
//! bigrams and character trigrams, each hashed with a stable hash into one
//! of `dim` buckets with a hashed ±1 sign, weighted by sublinear term
//! frequency `1 + ln(tf)` and L2-normalised. It captures shared words,
//! phrases and spelling (trigrams tolerate typos and plurals), not meaning;
//! a real model can be plugged in through the trait, or clients can send
//! their own embeddings, which [`validate_embedding`] screens.
//!
//! Every node must produce identical vectors for identical text, so nothing
//! here depends on the process, the machine or `std`'s randomised hasher.

use thiserror::Error;

use crate::tokenizer::{Fnv1a, tokenize};

/// Turns text into a fixed-length vector whose distances mean similarity.
///
/// `Send + Sync` because a node shares one embedder between its HTTP
/// handlers and its indexing task.
pub trait Embedder: Send + Sync {
    /// Length of every vector [`Embedder::embed`] returns.
    fn dim(&self) -> usize;
    /// The embedding of `text`: exactly [`Embedder::dim`] finite floats.
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// Why an embedding (or an embedder setting) was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EmbeddingError {
    /// The vector's length is not the index's dimension.
    #[error("embedding has dimension {actual}, expected {expected}")]
    WrongDimension {
        /// The dimension the index or embedder works with.
        expected: usize,
        /// The length that was supplied.
        actual: usize,
    },
    /// A component is NaN.
    #[error("embedding component {index} is NaN")]
    NotANumber {
        /// Position of the first NaN.
        index: usize,
    },
    /// A component is +∞ or −∞.
    #[error("embedding component {index} is infinite")]
    Infinite {
        /// Position of the first infinity.
        index: usize,
    },
    /// A dimension of zero was asked for.
    #[error("embedding dimension must be at least 1")]
    ZeroDimension,
}

/// Checks that `v` can be indexed or searched in a `dim`-dimensional index:
/// right length, every component finite. The error names the first problem.
pub fn validate_embedding(v: &[f32], dim: usize) -> Result<(), EmbeddingError> {
    if v.len() != dim {
        return Err(EmbeddingError::WrongDimension {
            expected: dim,
            actual: v.len(),
        });
    }
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) if v[index].is_nan() => Err(EmbeddingError::NotANumber { index }),
        Some(index) => Err(EmbeddingError::Infinite { index }),
    }
}

/// Scales `v` to unit L2 norm in place and returns its former norm. A zero
/// (or denormal-tiny) vector is left unchanged, since it has no direction.
pub fn normalize(v: &mut [f32]) -> f32 {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > f64::from(f32::MIN_POSITIVE) {
        let inv = 1.0 / norm;
        for x in v.iter_mut() {
            *x = (f64::from(*x) * inv) as f32;
        }
    }
    norm as f32
}

/// Weight of one word unigram (a part or a whole compound).
const UNIGRAM_WEIGHT: f32 = 1.0;
/// Weight of one word bigram: phrases count, but less than their words.
const BIGRAM_WEIGHT: f32 = 0.5;
/// Weight of one character trigram: a word yields several, so each counts
/// little; together they let "sneaker" and "sneakers" meet.
const TRIGRAM_WEIGHT: f32 = 0.25;

/// The kinds of feature, hashed into the key so that the word "abc" and
/// the trigram "abc" land in unrelated buckets.
#[derive(Clone, Copy)]
enum Kind {
    /// A whole word.
    Unigram = 1,
    /// Two consecutive words.
    Bigram = 2,
    /// Three consecutive characters of a word, with `<` `>` boundaries.
    Trigram = 3,
}

impl Kind {
    /// The weight of one occurrence before term-frequency damping.
    fn weight(self) -> f32 {
        match self {
            Kind::Unigram => UNIGRAM_WEIGHT,
            Kind::Bigram => BIGRAM_WEIGHT,
            Kind::Trigram => TRIGRAM_WEIGHT,
        }
    }
}

/// The built-in embedder: deterministic feature hashing (see the module
/// docs). The empty text, or text without any letter or digit, embeds to
/// the all-zero vector, which is at cosine distance 1 from everything.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    /// Number of buckets = length of every embedding.
    dim: usize,
}

impl HashingEmbedder {
    /// An embedder producing `dim`-dimensional vectors (DESIGN §6 uses 256).
    pub fn new(dim: usize) -> Result<Self, EmbeddingError> {
        if dim == 0 {
            return Err(EmbeddingError::ZeroDimension);
        }
        Ok(HashingEmbedder { dim })
    }

    /// Hash of one feature: its kind, then its pieces separated by a byte
    /// that cannot occur in UTF-8.
    fn key(kind: Kind, pieces: &[&str]) -> (u64, Kind) {
        let mut h = Fnv1a::new();
        h.write(&[kind as u8]);
        for p in pieces {
            h.write(p.as_bytes()).write(&[0xff]);
        }
        (h.finish(), kind)
    }

    /// All feature keys of `text`, one per occurrence.
    fn features(text: &str) -> Vec<(u64, Kind)> {
        let tokens = tokenize(text);
        let mut keys = Vec::with_capacity(tokens.parts.len() * 8);
        for t in tokens.terms() {
            keys.push(Self::key(Kind::Unigram, &[t]));
        }
        for w in tokens.parts.windows(2) {
            keys.push(Self::key(Kind::Bigram, &[&w[0], &w[1]]));
        }
        let mut buf = String::new();
        for p in &tokens.parts {
            let chars: Vec<char> = std::iter::once('<')
                .chain(p.chars())
                .chain(std::iter::once('>'))
                .collect();
            for tri in chars.windows(3) {
                buf.clear();
                buf.extend(tri);
                keys.push(Self::key(Kind::Trigram, &[&buf]));
            }
        }
        keys
    }
}

impl Embedder for HashingEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut keys = Self::features(text);
        // Sorting groups repeated features so each is weighted once, by
        // its damped count; the order of buckets filled does not matter.
        keys.sort_unstable_by_key(|k| k.0);
        let mut v = vec![0.0f32; self.dim];
        let mut i = 0;
        while i < keys.len() {
            let (h, kind) = keys[i];
            let tf = keys[i..].iter().take_while(|k| k.0 == h).count();
            i += tf;
            let w = kind.weight() * (1.0 + (tf as f32).ln());
            // Low bits pick the bucket, the top bit the sign, so that
            // colliding features cancel on average instead of piling up.
            let bucket = (h % self.dim as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[bucket] += sign * w;
        }
        normalize(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(validate_embedding(&[0.0, 1.0], 2), Ok(()));
        assert_eq!(
            validate_embedding(&[0.0], 2),
            Err(EmbeddingError::WrongDimension {
                expected: 2,
                actual: 1
            })
        );
        let e = validate_embedding(&[0.0, f32::NAN], 2).unwrap_err();
        assert_eq!(e, EmbeddingError::NotANumber { index: 1 });
        assert!(e.to_string().contains("NaN"));
        assert_eq!(
            validate_embedding(&[f32::NEG_INFINITY, 0.0], 2),
            Err(EmbeddingError::Infinite { index: 0 })
        );
    }

    #[test]
    fn normalize_leaves_zero_alone() {
        let mut z = [0.0f32; 3];
        assert_eq!(normalize(&mut z), 0.0);
        assert_eq!(z, [0.0; 3]);
        let mut v = [3.0f32, 4.0];
        assert_eq!(normalize(&mut v), 5.0);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
    }

    #[test]
    fn empty_text_is_zero_and_others_unit() {
        let e = HashingEmbedder::new(64).unwrap();
        assert!(e.embed("").iter().all(|x| *x == 0.0));
        assert!(e.embed(" ,;! ").iter().all(|x| *x == 0.0));
        let v = e.embed("red running shoe");
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(
            HashingEmbedder::new(0).unwrap_err(),
            EmbeddingError::ZeroDimension
        );
    }
}
