//! The one versioned envelope for bytes on disk and on the wire.
//!
//! Layout: `"CNCD"` magic, a little-endian `u16` version, then a postcard
//! body. The version's high byte names the payload *kind* (a delta, a cart
//! entry, a wire frame …) and its low byte the kind's schema revision, so a
//! blob of one kind is never misread as another, and bytes from a newer
//! schema are refused with a clear error instead of being misread (postcard
//! is not self-describing: a newer struct's bytes can decode "successfully"
//! as an older one). Decoding uses `take_from_bytes` and refuses leftovers.
//!
//! Evolving a type: add a new revision and keep the old decoder with an
//! explicit upgrade; never reorder enum variants (postcard writes the index).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The four bytes every Concord blob starts with.
pub const MAGIC: [u8; 4] = *b"CNCD";
/// Envelope header length: magic and version.
pub const HEADER_LEN: usize = 6;

/// The kind of payload an envelope holds (the version's high byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kind(pub u8);

impl Kind {
    /// A replicated delta.
    pub const DELTA: Kind = Kind(1);
    /// A product's stored state.
    pub const PRODUCT: Kind = Kind(2);
    /// A cart's stored state.
    pub const CART: Kind = Kind(3);
    /// A SKU's bounded counter.
    pub const STOCK: Kind = Kind(4);
    /// An order's stored state.
    pub const ORDER: Kind = Kind(5);
    /// A replica's causal metadata (contexts, version vector).
    pub const META: Kind = Kind(6);
    /// A repair snapshot (full state of some key ranges).
    pub const REPAIR: Kind = Kind(7);
    /// A search index snapshot (opaque bytes from simd-search).
    pub const SEARCH_INDEX: Kind = Kind(8);
    /// An idempotency record.
    pub const IDEM: Kind = Kind(9);
    /// An account entry.
    pub const ACCOUNT: Kind = Kind(10);
    /// First kind number reserved for the node's own wire messages.
    pub const NODE_BASE: u8 = 64;
}

/// A type that travels in the envelope.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The payload kind.
    const KIND: Kind;
    /// The current schema revision of this kind.
    const REVISION: u8;
}

/// Why bytes could not be decoded. Every decoder of outside bytes returns
/// one of these; none panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header.
    #[error("{len} bytes is too short for a Concord envelope (need at least {HEADER_LEN})")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The bytes do not start with the magic.
    #[error("not a Concord envelope: magic {found:02x?}, expected \"CNCD\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The envelope holds another kind of payload.
    #[error("expected payload kind {expected}, found kind {found}")]
    WrongKind {
        /// The kind asked for.
        expected: u8,
        /// The kind in the envelope.
        found: u8,
    },
    /// A schema revision this build does not know.
    #[error(
        "payload kind {kind} has schema revision {found}, this build reads revision {supported}"
    )]
    UnknownVersion {
        /// The payload kind.
        kind: u8,
        /// The revision in the envelope.
        found: u8,
        /// The revision this build reads.
        supported: u8,
    },
    /// The body is not a valid encoding of the type.
    #[error("malformed payload of kind {kind}: {reason}")]
    Malformed {
        /// The payload kind.
        kind: u8,
        /// What postcard reported.
        reason: String,
    },
    /// The body decoded but bytes were left over.
    #[error("payload of kind {kind} has {count} unexpected trailing bytes")]
    TrailingBytes {
        /// The payload kind.
        kind: u8,
        /// How many bytes were left.
        count: usize,
    },
}

fn header(kind: Kind, revision: u8) -> [u8; HEADER_LEN] {
    let v = (u16::from(kind.0) << 8) | u16::from(revision);
    let [a, b] = v.to_le_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], a, b]
}

/// Encodes a value in its envelope.
pub fn encode<T: Versioned>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out);
    out
}

/// Encodes a value in its envelope, appending to `out`.
pub fn encode_into<T: Versioned>(value: &T, out: &mut Vec<u8>) {
    out.extend_from_slice(&header(T::KIND, T::REVISION));
    // Serialising our own types into a Vec cannot fail: postcard errors only
    // on unsupported serde features, which our types do not use.
    let body = postcard::to_extend(value, std::mem::take(out));
    *out = body.unwrap_or_default();
}

/// Checks the header and returns the body.
pub fn open(kind: Kind, revision: u8, bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let [found_kind, found_rev] = u16::from_le_bytes([bytes[4], bytes[5]]).to_be_bytes();
    if found_kind != kind.0 {
        return Err(DecodeError::WrongKind {
            expected: kind.0,
            found: found_kind,
        });
    }
    if found_rev != revision {
        return Err(DecodeError::UnknownVersion {
            kind: kind.0,
            found: found_rev,
            supported: revision,
        });
    }
    Ok(&bytes[HEADER_LEN..])
}

/// Wraps opaque bytes (say, a search index) in an envelope.
pub fn seal(kind: Kind, revision: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(kind, revision));
    out.extend_from_slice(body);
    out
}

/// Decodes a value from its envelope, refusing other kinds, unknown
/// revisions, malformed bodies and leftover bytes.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_revision(T::KIND, T::REVISION, bytes)
}

/// The schema revision an envelope claims, if the bytes are one: lets a
/// type that changed pick the decoder of an older revision.
pub fn revision(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= HEADER_LEN && bytes[..4] == MAGIC).then(|| bytes[4])
}

/// Decodes the body of an envelope of `kind` at exactly `revision` as `T`:
/// the decoder of an older revision kept for upgrades.
pub fn decode_revision<T: DeserializeOwned>(
    kind: Kind,
    revision: u8,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let body = open(kind, revision, bytes)?;
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed {
            kind: kind.0,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            kind: kind.0,
            count: rest.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Probe {
        a: u32,
        b: String,
    }

    impl Versioned for Probe {
        const KIND: Kind = Kind(200);
        const REVISION: u8 = 3;
    }

    #[test]
    fn round_trip_and_golden_bytes() {
        let p = Probe {
            a: 300,
            b: "hi".into(),
        };
        let bytes = encode(&p);
        assert_eq!(
            bytes,
            [b'C', b'N', b'C', b'D', 3, 200, 0xac, 0x02, 2, b'h', b'i']
        );
        assert_eq!(decode::<Probe>(&bytes), Ok(p));
    }

    #[test]
    fn refuses_every_kind_of_bad_input() {
        let good = encode(&Probe {
            a: 1,
            b: "x".into(),
        });
        assert_eq!(
            decode::<Probe>(&good[..3]),
            Err(DecodeError::TooShort { len: 3 })
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode::<Probe>(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[4] = 4;
        assert!(matches!(
            decode::<Probe>(&bad),
            Err(DecodeError::UnknownVersion { found: 4, .. })
        ));
        let mut bad = good.clone();
        bad[5] = 1;
        assert!(matches!(
            decode::<Probe>(&bad),
            Err(DecodeError::WrongKind { found: 1, .. })
        ));
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            decode::<Probe>(&bad),
            Err(DecodeError::TrailingBytes {
                kind: 200,
                count: 1
            })
        );
        assert!(matches!(
            decode::<Probe>(&good[..good.len() - 1]),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
