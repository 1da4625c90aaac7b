//! Identities: the node id from `cluster.toml`, the actor that numbers a
//! node's mutations, and the ids of the domain's keys.
//!
//! A node's *actor* is its id plus an *incarnation*: a node whose disk was
//! wiped comes back as a new actor, so it can never mint a dot (a mutation
//! number) that its previous life already used and that peers would then
//! silently take for a duplicate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Longest node id we accept, in bytes.
pub const NODE_ID_MAX_LEN: usize = 23;

/// A node's configured id (`n1`, `eu-west-2`): 1–23 ASCII letters, digits,
/// `-` or `_`, starting with a letter or digit.
///
/// It is `Copy` and compares as a string: dots and version vectors carry it
/// on every mutation, so it must be cheap.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    len: u8,
    bytes: [u8; NODE_ID_MAX_LEN],
}

/// Why a string is not a valid node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The id is empty or longer than [`NODE_ID_MAX_LEN`].
    #[error("a node id must be 1 to {NODE_ID_MAX_LEN} bytes long, got {0}")]
    Length(usize),
    /// The id holds a character outside `[A-Za-z0-9_-]` or starts with `-`/`_`.
    #[error(
        "a node id may hold only ASCII letters, digits, '-' and '_', and must start with a letter or digit: {0:?}"
    )]
    Charset(String),
}

impl NodeId {
    /// Parses and checks a node id.
    pub fn new(s: &str) -> Result<Self, NodeIdError> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > NODE_ID_MAX_LEN {
            return Err(NodeIdError::Length(b.len()));
        }
        let ok_char = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
        if !b.iter().all(ok_char) || !b[0].is_ascii_alphanumeric() {
            return Err(NodeIdError::Charset(s.to_string()));
        }
        let mut bytes = [0u8; NODE_ID_MAX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            len: b.len() as u8,
            bytes,
        })
    }

    fn words(&self) -> [u64; 3] {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            let end = (i + 8).min(NODE_ID_MAX_LEN);
            b[..end - i].copy_from_slice(&self.bytes[i..end]);
            u64::from_be_bytes(b)
        };
        [w(0), w(8), w(16)]
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // The constructor admits ASCII only, so this cannot fail; fall back to
        // "" rather than panic should that ever change.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Zero-padded ASCII, compared as big-endian words: the same order as
        // the strings (a shorter id sorts first, its padding being 0), without
        // a call to memcmp on every dot comparison.
        self.words().cmp(&other.words())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        NodeId::new(s).map_err(serde::de::Error::custom)
    }
}

/// The writer of mutations: a node id in one incarnation of its store.
///
/// Incarnation 0 is a node's first store; a node that finds its store gone
/// takes a fresh incarnation (see the node's storage module), so dots of two
/// lives of one node never collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Actor {
    /// The node this actor runs on.
    pub node: NodeId,
    /// Which life of that node's store.
    pub inc: u32,
}

impl Actor {
    /// The actor of a node's first incarnation.
    pub fn first(node: NodeId) -> Self {
        Self { node, inc: 0 }
    }

    /// The actor its `Display` names (`n1`, or `n1.2` for incarnation 2).
    pub fn parse(s: &str) -> Option<Self> {
        let (node, inc) = match s.split_once('.') {
            Some((n, i)) => (n, i.parse().ok()?),
            None => (s, 0),
        };
        Some(Self {
            node: NodeId::new(node).ok()?,
            inc,
        })
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inc == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}.{}", self.node, self.inc)
        }
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Serde helper that writes a UUID as 16 raw bytes (postcard would otherwise
/// prefix a length byte): ids are on every delta, so every byte counts.
pub mod uuid_bytes {
    use super::*;

    /// Writes the UUID as a 16-byte tuple.
    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        id.as_bytes().serialize(s)
    }

    /// Reads a UUID written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        <[u8; 16]>::deserialize(d).map(Uuid::from_bytes)
    }
}

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "uuid_bytes")] pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_id!(
    /// A product's id, minted by the node that creates it.
    ProductId
);
uuid_id!(
    /// A cart's id, chosen by the client: a UUID, or a name the client made
    /// up (see [`CartId::from_client`]), stored as a UUID derived from it.
    CartId
);
uuid_id!(
    /// An order's id: a UUIDv7 minted by the node that accepts a checkout
    /// without an idempotency key, or derived from (customer, key) with one
    /// (see [`OrderId::for_checkout`]).
    OrderId
);
uuid_id!(
    /// The key of an idempotency record: derived from the caller and the
    /// `Idempotency-Key` it sent (see [`IdemKey::new`]).
    IdemKey
);

uuid_id!(
    /// A customer or staff account: a random UUID minted by the node that
    /// takes the registration (never derived from the e-mail, so two
    /// registrations of one e-mail on the two sides of a partition are two
    /// accounts, of which one wins the e-mail; see [`crate::account`]).
    AccountId
);
uuid_id!(
    /// A signed-in session: one refresh-token family, minted at login.
    SessionId
);
uuid_id!(
    /// An address in an account's address book.
    AddressId
);

/// A UUIDv8 derived from `parts` by BLAKE3 under a domain string: the same
/// on every node and in every build, and — BLAKE3 being a cryptographic hash
/// — nobody can choose inputs that land on an id they aim at.
fn derived_uuid(domain: &str, parts: &[&str]) -> Uuid {
    let mut h = blake3::Hasher::new_derive_key(domain);
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// The longest client-chosen cart name.
pub const CART_NAME_MAX_LEN: usize = 64;

/// Why a client's cart id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a cart id is a UUID or 1 to {CART_NAME_MAX_LEN} characters of A-Z a-z 0-9 . _ - (got {0:?})"
)]
pub struct CartIdError(pub String);

impl CartId {
    /// The cart a client names: a UUID as itself, any other name of 1–64
    /// characters of `A–Z a–z 0–9 . _ -` as a UUIDv8 derived from it. Carts
    /// are cluster-wide, so a name another customer already owns stays
    /// theirs (the owner rule answers 403); the stored key stays 16 bytes,
    /// so a cart add's delta is as small as with a UUID.
    pub fn from_client(s: &str) -> Result<CartId, CartIdError> {
        if let Ok(u) = Uuid::try_parse(s) {
            return Ok(CartId(u));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > CART_NAME_MAX_LEN || !s.chars().all(ok) {
            return Err(CartIdError(s.chars().take(80).collect()));
        }
        Ok(CartId(derived_uuid("concord 2026 cart name", &[s])))
    }
}

impl OrderId {
    /// The order a checkout with an idempotency key makes: every node that
    /// takes the same customer's checkout under the same key mints this same
    /// id, so retries on any node, even across a partition, name one order.
    pub fn for_checkout(customer: &str, key: &str) -> OrderId {
        OrderId(derived_uuid(
            "concord 2026 checkout order",
            &[customer, key],
        ))
    }
}

impl IdemKey {
    /// The record of `key` sent by `subject` (keys are scoped to the caller,
    /// so two callers never share one).
    pub fn new(subject: &str, key: &str) -> IdemKey {
        IdemKey(derived_uuid(
            "concord 2026 idempotency key",
            &[subject, key],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_rules() {
        assert!(NodeId::new("n1").is_ok());
        assert!(NodeId::new("eu-west_2").is_ok());
        assert_eq!(NodeId::new(""), Err(NodeIdError::Length(0)));
        assert!(matches!(
            NodeId::new(&"x".repeat(24)),
            Err(NodeIdError::Length(24))
        ));
        assert!(matches!(NodeId::new("-n"), Err(NodeIdError::Charset(_))));
        assert!(matches!(NodeId::new("n 1"), Err(NodeIdError::Charset(_))));
        assert!(matches!(NodeId::new("nö"), Err(NodeIdError::Charset(_))));
    }

    #[test]
    fn node_id_orders_as_string() {
        let a = NodeId::new("n10").unwrap();
        let b = NodeId::new("n2").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "n10");
    }

    #[test]
    fn client_cart_ids() {
        let u = "0190a5c4-1234-7abc-8def-0123456789ab";
        assert_eq!(CartId::from_client(u).unwrap().0.to_string(), u);
        let a = CartId::from_client("cart-1").unwrap();
        assert_eq!(a, CartId::from_client("cart-1").unwrap());
        assert_ne!(a, CartId::from_client("cart-2").unwrap());
        assert_eq!(a.0.get_version_num(), 8);
        assert!(CartId::from_client(&"x".repeat(64)).is_ok());
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(65)] {
            assert!(CartId::from_client(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        let o = OrderId::for_checkout("alice", "k1");
        assert_eq!(o, OrderId::for_checkout("alice", "k1"));
        assert_ne!(o, OrderId::for_checkout("bob", "k1"));
        assert_ne!(
            OrderId::for_checkout("ab", "c"),
            OrderId::for_checkout("a", "bc")
        );
        assert_ne!(IdemKey::new("alice", "k1").0, o.0);
    }

    #[test]
    fn actor_display() {
        let n = NodeId::new("n1").unwrap();
        assert_eq!(Actor::first(n).to_string(), "n1");
        assert_eq!(Actor { node: n, inc: 7 }.to_string(), "n1.7");
    }
}
