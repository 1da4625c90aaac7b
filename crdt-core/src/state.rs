//! The whole replicated state: six keyspaces, their keys, and the stored
//! form of each entry.
//!
//! | keyspace | key | entry | CRDT |
//! |---|---|---|---|
//! | products | [`ProductId`] | [`ProductState`] | add-wins entry of LWW records |
//! | carts | [`CartId`] | [`CartEntry`] | add-wins map of LWW quantities + first-writer owner |
//! | stock | [`Sku`] | [`BoundedCounter`] | escrow counter |
//! | orders | [`OrderId`] | [`OrderEntry`] | grow-only map of sales, max-registers and sets |
//! | idempotency | [`IdemKey`] | [`IdemEntry`] | first record wins, expires by HLC |
//! | accounts | [`AccountId`] | [`AccountEntry`] | registration, LWW fields, bounded session and failure maps |

use serde::{Deserialize, Serialize};

use crate::account::AccountEntry;
use crate::cart::CartEntry;
use crate::catalog::ProductRecord;
use crate::causal::{DotFun, DotStore};
use crate::codec::{self, DecodeError, Kind, Versioned};
use crate::context::Covers;
use crate::counter::BoundedCounter;
use crate::digest::Hash128;
use crate::idem::IdemEntry;
use crate::ids::{AccountId, CartId, IdemKey, OrderId, ProductId};
use crate::keyspace::{EntryValue, KeyBytes, Keyspace};
use crate::order::OrderEntry;

/// A product's state: its live record siblings.
pub type ProductState = DotFun<ProductRecord>;

/// A stock-keeping unit: the key of a product's inventory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sku(pub String);

impl std::fmt::Display for Sku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names one of the keyspaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyspaceId {
    /// The catalog.
    Products,
    /// Shopping carts.
    Carts,
    /// Inventory counters.
    Stock,
    /// Orders.
    Orders,
    /// Idempotency records.
    Idempotency,
    /// Customer and staff accounts.
    Accounts,
}

/// How many keyspaces there are.
pub const KEYSPACES: usize = 6;

impl KeyspaceId {
    /// All keyspaces, in tag order.
    pub const ALL: [KeyspaceId; KEYSPACES] = [
        KeyspaceId::Products,
        KeyspaceId::Carts,
        KeyspaceId::Stock,
        KeyspaceId::Orders,
        KeyspaceId::Idempotency,
        KeyspaceId::Accounts,
    ];

    /// The byte that prefixes this keyspace's keys on disk and in leaf hashes.
    pub fn tag(self) -> u8 {
        match self {
            KeyspaceId::Products => 1,
            KeyspaceId::Carts => 2,
            KeyspaceId::Stock => 3,
            KeyspaceId::Orders => 4,
            KeyspaceId::Idempotency => 5,
            KeyspaceId::Accounts => 6,
        }
    }

    /// The keyspace of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The lowercase name used in APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyspaceId::Products => "products",
            KeyspaceId::Carts => "carts",
            KeyspaceId::Stock => "stock",
            KeyspaceId::Orders => "orders",
            KeyspaceId::Idempotency => "idempotency",
            KeyspaceId::Accounts => "accounts",
        }
    }
}

/// A key of the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// A product.
    Product(ProductId),
    /// A cart.
    Cart(CartId),
    /// A SKU's stock.
    Stock(Sku),
    /// An order.
    Order(OrderId),
    /// An idempotency record.
    Idem(IdemKey),
    /// An account.
    Account(AccountId),
}

impl Key {
    /// The keyspace the key lives in.
    pub fn keyspace(&self) -> KeyspaceId {
        match self {
            Key::Product(_) => KeyspaceId::Products,
            Key::Cart(_) => KeyspaceId::Carts,
            Key::Stock(_) => KeyspaceId::Stock,
            Key::Order(_) => KeyspaceId::Orders,
            Key::Idem(_) => KeyspaceId::Idempotency,
            Key::Account(_) => KeyspaceId::Accounts,
        }
    }

    /// The key's bytes on disk: keyspace tag, then the key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.keyspace().tag()];
        match self {
            Key::Product(k) => k.write_key(&mut out),
            Key::Cart(k) => k.write_key(&mut out),
            Key::Stock(k) => k.write_key(&mut out),
            Key::Order(k) => k.write_key(&mut out),
            Key::Idem(k) => k.write_key(&mut out),
            Key::Account(k) => k.write_key(&mut out),
        }
        out
    }

    /// Reads a key written by [`Key::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Key, DecodeError> {
        let bad = |reason: &str| DecodeError::Malformed {
            kind: 0,
            reason: format!("state key: {reason}"),
        };
        let (&tag, rest) = b.split_first().ok_or_else(|| bad("empty"))?;
        let uuid = || -> Result<uuid::Uuid, DecodeError> {
            let arr: [u8; 16] = rest
                .try_into()
                .map_err(|_| bad("a UUID key must be 16 bytes"))?;
            Ok(uuid::Uuid::from_bytes(arr))
        };
        match KeyspaceId::from_tag(tag) {
            Some(KeyspaceId::Products) => Ok(Key::Product(ProductId(uuid()?))),
            Some(KeyspaceId::Carts) => Ok(Key::Cart(CartId(uuid()?))),
            Some(KeyspaceId::Orders) => Ok(Key::Order(OrderId(uuid()?))),
            Some(KeyspaceId::Idempotency) => Ok(Key::Idem(IdemKey(uuid()?))),
            Some(KeyspaceId::Accounts) => Ok(Key::Account(AccountId(uuid()?))),
            Some(KeyspaceId::Stock) => {
                let s = std::str::from_utf8(rest).map_err(|_| bad("a SKU must be UTF-8"))?;
                Ok(Key::Stock(Sku(s.to_string())))
            }
            None => Err(bad(&format!("unknown keyspace tag {tag}"))),
        }
    }
}

macro_rules! uuid_key {
    ($t:ty) => {
        impl KeyBytes for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.0.as_bytes());
            }
        }
    };
}
uuid_key!(ProductId);
uuid_key!(CartId);
uuid_key!(OrderId);
uuid_key!(IdemKey);
uuid_key!(AccountId);

impl KeyBytes for Sku {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

impl EntryValue for ProductState {
    fn is_bottom(&self) -> bool {
        DotStore::is_bottom(self)
    }
}

impl EntryValue for CartEntry {
    fn is_bottom(&self) -> bool {
        DotStore::is_bottom(self)
    }
}

impl EntryValue for BoundedCounter {
    fn is_bottom(&self) -> bool {
        *self == BoundedCounter::default()
    }
}

impl EntryValue for OrderEntry {
    fn is_bottom(&self) -> bool {
        OrderEntry::is_bottom(self)
    }
}

impl EntryValue for IdemEntry {
    fn is_bottom(&self) -> bool {
        IdemEntry::is_bottom(self)
    }
}

impl EntryValue for AccountEntry {
    fn is_bottom(&self) -> bool {
        AccountEntry::is_bottom(self)
    }
}

impl Versioned for AccountEntry {
    const KIND: Kind = Kind::ACCOUNT;
    const REVISION: u8 = 1;
}

impl Versioned for ProductState {
    const KIND: Kind = Kind::PRODUCT;
    const REVISION: u8 = 1;
}

impl Versioned for CartEntry {
    const KIND: Kind = Kind::CART;
    const REVISION: u8 = 1;
}

impl Versioned for BoundedCounter {
    const KIND: Kind = Kind::STOCK;
    const REVISION: u8 = 1;
}

impl Versioned for OrderEntry {
    const KIND: Kind = Kind::ORDER;
    const REVISION: u8 = 3;
}

impl Versioned for IdemEntry {
    const KIND: Kind = Kind::IDEM;
    const REVISION: u8 = 1;
}

/// One key with its whole entry: what a repair snapshot carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyEntry {
    /// A product.
    Product(ProductId, ProductState),
    /// A cart.
    Cart(CartId, CartEntry),
    /// A SKU's stock.
    Stock(Sku, BoundedCounter),
    /// An order.
    Order(OrderId, OrderEntry),
    /// An idempotency record.
    Idem(IdemKey, IdemEntry),
    /// An account (boxed: it is the largest entry).
    Account(AccountId, Box<AccountEntry>),
}

impl KeyEntry {
    /// The key.
    pub fn key(&self) -> Key {
        match self {
            KeyEntry::Product(k, _) => Key::Product(*k),
            KeyEntry::Cart(k, _) => Key::Cart(*k),
            KeyEntry::Stock(k, _) => Key::Stock(k.clone()),
            KeyEntry::Order(k, _) => Key::Order(*k),
            KeyEntry::Idem(k, _) => Key::Idem(*k),
            KeyEntry::Account(k, _) => Key::Account(*k),
        }
    }
}

/// The keyspaces.
pub struct State {
    /// The catalog.
    pub products: Keyspace<ProductId, ProductState>,
    /// Carts.
    pub carts: Keyspace<CartId, CartEntry>,
    /// Stock counters by SKU.
    pub stock: Keyspace<Sku, BoundedCounter>,
    /// Orders.
    pub orders: Keyspace<OrderId, OrderEntry>,
    /// Idempotency records.
    pub idem: Keyspace<IdemKey, IdemEntry>,
    /// Accounts.
    pub accounts: Keyspace<AccountId, AccountEntry>,
}

impl Default for State {
    fn default() -> Self {
        Self::new(0)
    }
}

impl State {
    /// An empty state whose hash maps are keyed by `seed` (see
    /// [`crate::keyspace::SeededState`]).
    pub fn new(seed: u64) -> Self {
        Self {
            products: Keyspace::new(KeyspaceId::Products.tag(), seed),
            carts: Keyspace::new(KeyspaceId::Carts.tag(), seed),
            stock: Keyspace::new(KeyspaceId::Stock.tag(), seed),
            orders: Keyspace::new(KeyspaceId::Orders.tag(), seed),
            idem: Keyspace::new(KeyspaceId::Idempotency.tag(), seed),
            accounts: Keyspace::new(KeyspaceId::Accounts.tag(), seed),
        }
    }

    /// The stored bytes of a key's entry (an envelope), or `None` when the key
    /// holds nothing and should be deleted from disk.
    pub fn encode_entry(&self, key: &Key) -> Option<Vec<u8>> {
        match key {
            Key::Product(k) => self.products.get(k).map(codec::encode),
            Key::Cart(k) => self.carts.get(k).map(codec::encode),
            Key::Stock(k) => self.stock.get(k).map(codec::encode),
            Key::Order(k) => self.orders.get(k).map(codec::encode),
            Key::Idem(k) => self.idem.get(k).map(codec::encode),
            Key::Account(k) => self.accounts.get(k).map(codec::encode),
        }
    }

    /// The whole entry of a key, for a repair snapshot.
    pub fn key_entry(&self, key: &Key) -> Option<KeyEntry> {
        match key {
            Key::Product(k) => self
                .products
                .get(k)
                .map(|e| KeyEntry::Product(*k, e.clone())),
            Key::Cart(k) => self.carts.get(k).map(|e| KeyEntry::Cart(*k, e.clone())),
            Key::Stock(k) => self
                .stock
                .get(k)
                .map(|e| KeyEntry::Stock(k.clone(), e.clone())),
            Key::Order(k) => self.orders.get(k).map(|e| KeyEntry::Order(*k, e.clone())),
            Key::Idem(k) => self.idem.get(k).map(|e| KeyEntry::Idem(*k, e.clone())),
            Key::Account(k) => self
                .accounts
                .get(k)
                .map(|e| KeyEntry::Account(*k, Box::new(e.clone()))),
        }
    }

    /// Puts a stored entry back at start-up (replacing whatever is there;
    /// an idempotency record joins it).
    pub fn load_entry(&mut self, key: &Key, bytes: &[u8]) -> Result<(), DecodeError> {
        match key {
            Key::Product(k) => {
                let v: ProductState = codec::decode(bytes)?;
                self.products.modify(k, |e| *e = v);
            }
            Key::Cart(k) => {
                let v: CartEntry = codec::decode(bytes)?;
                self.carts.modify(k, |e| *e = v);
            }
            Key::Stock(k) => {
                let v: BoundedCounter = codec::decode(bytes)?;
                self.stock.modify(k, |e| *e = v);
            }
            Key::Order(k) => {
                let v = OrderEntry::decode_any(bytes)?;
                self.orders.modify(k, |e| *e = v);
            }
            // A record may be stored more than once (a node keeps them in
            // per-round segments): the join keeps the earliest, as in memory.
            Key::Idem(k) => {
                let v: IdemEntry = codec::decode(bytes)?;
                self.idem.modify(k, |e| e.join(&v));
            }
            Key::Account(k) => {
                let v: AccountEntry = codec::decode(bytes)?;
                self.accounts.modify(k, |e| *e = v);
            }
        }
        Ok(())
    }

    /// Joins a whole entry from a peer (seen under `other_cc`) into ours
    /// (seen under `self_cc`), or — with `None` — joins the bottom, which
    /// drops our dots the peer has seen removed. Returns whether ours changed.
    pub fn join_full(
        &mut self,
        key: &Key,
        other: Option<&KeyEntry>,
        self_cc: &dyn Covers,
        other_cc: &dyn Covers,
    ) -> bool {
        match (key, other) {
            (Key::Product(k), o) => {
                let empty = ProductState::default();
                let o = match o {
                    Some(KeyEntry::Product(_, e)) => e,
                    _ => &empty,
                };
                self.products.modify(k, |e| e.join(self_cc, o, other_cc)).1
            }
            (Key::Cart(k), o) => {
                let empty = CartEntry::default();
                let o = match o {
                    Some(KeyEntry::Cart(_, e)) => e,
                    _ => &empty,
                };
                self.carts.modify(k, |e| e.join(self_cc, o, other_cc)).1
            }
            (Key::Stock(k), Some(KeyEntry::Stock(_, o))) => self.stock.modify(k, |e| e.join(o)).1,
            (Key::Order(k), Some(KeyEntry::Order(_, o))) => self.orders.modify(k, |e| e.join(o)).1,
            (Key::Idem(k), Some(KeyEntry::Idem(_, o))) => self.idem.modify(k, |e| e.join(o)).1,
            (Key::Account(k), Some(KeyEntry::Account(_, o))) => {
                self.accounts.modify(k, |e| e.join(o)).1
            }
            // Grow-only keyspaces lose nothing to a peer that lacks a key.
            _ => false,
        }
    }

    /// The root hash of each keyspace's digest tree, in tag order.
    pub fn roots(&self) -> [Hash128; KEYSPACES] {
        KeyspaceId::ALL.map(|ks| self.tree(ks).root())
    }

    /// One keyspace's digest tree.
    pub fn tree(&self, ks: KeyspaceId) -> &crate::digest::DigestTree {
        match ks {
            KeyspaceId::Products => self.products.tree(),
            KeyspaceId::Carts => self.carts.tree(),
            KeyspaceId::Stock => self.stock.tree(),
            KeyspaceId::Orders => self.orders.tree(),
            KeyspaceId::Idempotency => self.idem.tree(),
            KeyspaceId::Accounts => self.accounts.tree(),
        }
    }

    /// The keys whose hash falls in one bucket of one keyspace.
    pub fn keys_in_bucket(&self, ks: KeyspaceId, bucket: u16) -> Vec<Key> {
        match ks {
            KeyspaceId::Products => self
                .products
                .keys_in_bucket(bucket)
                .map(|k| Key::Product(*k))
                .collect(),
            KeyspaceId::Carts => self
                .carts
                .keys_in_bucket(bucket)
                .map(|k| Key::Cart(*k))
                .collect(),
            KeyspaceId::Stock => self
                .stock
                .keys_in_bucket(bucket)
                .map(|k| Key::Stock(k.clone()))
                .collect(),
            KeyspaceId::Orders => self
                .orders
                .keys_in_bucket(bucket)
                .map(|k| Key::Order(*k))
                .collect(),
            KeyspaceId::Idempotency => self
                .idem
                .keys_in_bucket(bucket)
                .map(|k| Key::Idem(*k))
                .collect(),
            KeyspaceId::Accounts => self
                .accounts
                .keys_in_bucket(bucket)
                .map(|k| Key::Account(*k))
                .collect(),
        }
    }

    /// Every key, keyspace by keyspace, in key order.
    pub fn all_keys(&self) -> Vec<Key> {
        let mut out = Vec::with_capacity(self.sizes().iter().sum());
        out.extend(self.products.iter().map(|(k, _)| Key::Product(*k)));
        out.extend(self.carts.iter().map(|(k, _)| Key::Cart(*k)));
        out.extend(self.stock.iter().map(|(k, _)| Key::Stock(k.clone())));
        out.extend(self.orders.iter().map(|(k, _)| Key::Order(*k)));
        out.extend(self.idem.iter().map(|(k, _)| Key::Idem(*k)));
        out.extend(self.accounts.iter().map(|(k, _)| Key::Account(*k)));
        out
    }

    /// How many keys each keyspace holds, in tag order.
    pub fn sizes(&self) -> [usize; KEYSPACES] {
        [
            self.products.len(),
            self.carts.len(),
            self.stock.len(),
            self.orders.len(),
            self.idem.len(),
            self.accounts.len(),
        ]
    }

    /// Drops one idempotency record (the local expiry sweep); returns whether
    /// it was there.
    pub fn forget_idem(&mut self, key: &IdemKey) -> bool {
        self.idem.modify(key, |e| *e = IdemEntry::default()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_bytes() {
        let keys = [
            Key::Product(ProductId(uuid::Uuid::from_u128(1))),
            Key::Cart(CartId(uuid::Uuid::from_u128(2))),
            Key::Stock(Sku("SKU-1".into())),
            Key::Order(OrderId(uuid::Uuid::from_u128(3))),
            Key::Idem(IdemKey(uuid::Uuid::from_u128(4))),
            Key::Account(AccountId(uuid::Uuid::from_u128(5))),
        ];
        for k in keys {
            assert_eq!(Key::from_bytes(&k.to_bytes()), Ok(k));
        }
        assert!(Key::from_bytes(&[]).is_err());
        assert!(Key::from_bytes(&[9, 1]).is_err());
        assert!(Key::from_bytes(&[1, 1, 2]).is_err());
        assert!(Key::from_bytes(&[3, 0xff]).is_err());
    }
}
