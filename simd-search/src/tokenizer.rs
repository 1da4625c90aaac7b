//! The one tokenizer shared by the hashing embedder and the BM25 index, and
//! the stable hash both build on.
//!
//! Sharing it matters: a query must be cut into the same terms as the
//! documents it is meant to find, in both the semantic and the lexical leg
//! of a hybrid search. Product codes get special care: "AB-1234/X" is kept
//! whole as a *compound* term (so an exact SKU query finds exactly that
//! product) and is also split into its *parts* "ab", "1234", "x" (so a
//! partial code still matches).
//!
//! The hash is FNV-1a (64 bit), written out here rather than taken from
//! `std`, whose `RandomState` differs per process: embeddings must be
//! identical across processes, machines and releases.

/// Characters that join alphanumeric runs into one compound term when they
/// stand between two alphanumerics ("usb-c", "3.5", "ab_12", "x/y").
const CONNECTORS: [char; 4] = ['-', '_', '.', '/'];

/// A text cut into terms, lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Maximal alphanumeric runs, in text order ("ab", "1234", "x").
    pub parts: Vec<String>,
    /// Runs joined by connectors, kept whole ("ab-1234/x"); only those
    /// that actually contain a connector, in text order.
    pub compounds: Vec<String>,
}

impl Tokens {
    /// Every term a lexical index should see: parts, then compounds.
    pub fn terms(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .chain(self.compounds.iter())
            .map(String::as_str)
    }
}

/// Cuts `text` into lower-cased parts and compounds (see [`Tokens`]).
pub fn tokenize(text: &str) -> Tokens {
    let mut out = Tokens::default();
    let mut part = String::new();
    let mut compound = String::new();
    let mut joined = false; // the current compound holds a connector
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() {
            part.extend(c.to_lowercase());
            compound.extend(c.to_lowercase());
            continue;
        }
        // A connector between two alphanumerics continues the compound.
        let next_alnum = chars.peek().is_some_and(|n| n.is_alphanumeric());
        if CONNECTORS.contains(&c) && !part.is_empty() && next_alnum {
            out.parts.push(std::mem::take(&mut part));
            compound.push(c);
            joined = true;
            continue;
        }
        flush(&mut out, &mut part, &mut compound, &mut joined);
    }
    flush(&mut out, &mut part, &mut compound, &mut joined);
    out
}

/// Ends the current part and compound at a separator.
fn flush(out: &mut Tokens, part: &mut String, compound: &mut String, joined: &mut bool) {
    if !part.is_empty() {
        out.parts.push(std::mem::take(part));
    }
    if *joined {
        out.compounds.push(std::mem::take(compound));
    } else {
        compound.clear();
    }
    *joined = false;
}

/// FNV-1a offset basis (64 bit).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a prime (64 bit).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A stable 64-bit FNV-1a hasher: same input, same output, everywhere.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(FNV_OFFSET)
    }
}

impl Fnv1a {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// The hash so far, with a final avalanche so that the low bits (used
    /// for bucket numbers) depend on every input byte.
    pub fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_keeps_codes_whole() {
        let t = tokenize("Nike Air-Max 90, SKU AB-1234/X. Size 10.5!");
        assert_eq!(
            t.parts,
            [
                "nike", "air", "max", "90", "sku", "ab", "1234", "x", "size", "10", "5"
            ]
        );
        assert_eq!(t.compounds, ["air-max", "ab-1234/x", "10.5"]);
    }

    #[test]
    fn trailing_and_doubled_connectors_are_separators() {
        let t = tokenize("end. --x-- a--b");
        assert_eq!(t.parts, ["end", "x", "a", "b"]);
        assert!(t.compounds.is_empty());
    }

    #[test]
    fn unicode_is_lower_cased() {
        let t = tokenize("ÉCOLE Straße");
        assert_eq!(t.parts, ["école", "straße"]);
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors, before our final mix.
        assert_eq!(Fnv1a::new().0, 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv1a::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv1a::new();
        h.write(b"foobar");
        assert_eq!(h.0, 0x8594_4171_f739_67e8);
    }
}
