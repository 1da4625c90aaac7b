//! The catalog: products as add-wins entries whose fields are
//! last-writer-wins registers.
//!
//! A product's state is a [`DotFun`] of [`ProductRecord`]s: each create or
//! edit writes a new record under a new dot and covers the records it has
//! seen, so normally one record lives; concurrent edits leave siblings that a
//! reader joins field by field ([`resolve`]). A delete covers every record it
//! has seen; an edit concurrent with it survives *with every field*, because
//! a record always carries the whole product — no half-empty ghosts.
//!
//! Lattice: [`ProductRecord::join`] is a field-wise join of LWW registers plus
//! a bounded union of price points (the newest [`PRICE_HISTORY_LEN`] by stamp,
//! itself a semilattice), so it is commutative, associative and idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::causal::DotFun;
use crate::clock::{Hlc, Stamp};
use crate::lww::Lww;
use crate::money::Money;

/// How many price changes a product remembers.
pub const PRICE_HISTORY_LEN: usize = 20;

/// A client-supplied embedding vector. Compared by bit pattern, so that it
/// has a total order (the API refuses NaN and infinities before they get here).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|f| f.to_bits())
    }
}

impl PartialEq for Embedding {
    fn eq(&self, other: &Self) -> bool {
        self.bits().eq(other.bits())
    }
}

impl Eq for Embedding {}

impl PartialOrd for Embedding {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Embedding {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bits().cmp(other.bits())
    }
}

/// One price a product had, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PricePoint {
    /// The price.
    pub price: Money,
    /// The reason given with the change, if any.
    pub reason: Option<String>,
}

/// A product's fields, each a last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProductRecord {
    /// Stock-keeping unit: the inventory key. Set at create.
    pub sku: Lww<String>,
    /// Display name.
    pub name: Lww<String>,
    /// Long description.
    pub description: Lww<String>,
    /// Price and currency, changed together.
    pub price: Lww<Money>,
    /// Category, for browsing and filtered search ("" for none).
    pub category: Lww<String>,
    /// Free tags.
    pub tags: Lww<Vec<String>>,
    /// Free attributes (colour, size …).
    pub attributes: Lww<BTreeMap<String, String>>,
    /// A client-supplied embedding; the node embeds the text when absent.
    pub embedding: Lww<Option<Embedding>>,
    /// The newest price points, by stamp.
    pub price_history: BTreeMap<Stamp, PricePoint>,
}

/// The fields of a new product, validated by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProduct {
    /// See [`ProductRecord::sku`].
    pub sku: String,
    /// See [`ProductRecord::name`].
    pub name: String,
    /// See [`ProductRecord::description`].
    pub description: String,
    /// See [`ProductRecord::price`].
    pub price: Money,
    /// See [`ProductRecord::category`].
    pub category: String,
    /// See [`ProductRecord::tags`].
    pub tags: Vec<String>,
    /// See [`ProductRecord::attributes`].
    pub attributes: BTreeMap<String, String>,
    /// See [`ProductRecord::embedding`].
    pub embedding: Option<Embedding>,
}

/// A change to some fields of a product; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price, with the reason to record in the price history.
    pub price: Option<(Money, Option<String>)>,
    /// New category.
    pub category: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New attributes (replacing the old ones).
    pub attributes: Option<BTreeMap<String, String>>,
    /// New embedding (`Some(None)` clears it).
    pub embedding: Option<Option<Embedding>>,
}

impl ProductPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ProductPatch::default()
    }

    /// Whether the patch changes text or the embedding (what search indexes).
    pub fn touches_search(&self) -> bool {
        self.name.is_some()
            || self.description.is_some()
            || self.tags.is_some()
            || self.category.is_some()
            || self.embedding.is_some()
    }
}

impl ProductRecord {
    /// A new product, every field written with `stamp`.
    pub fn new(p: NewProduct, stamp: Stamp) -> Self {
        let mut price_history = BTreeMap::new();
        price_history.insert(
            stamp,
            PricePoint {
                price: p.price,
                reason: None,
            },
        );
        Self {
            sku: Lww::new(p.sku, stamp),
            name: Lww::new(p.name, stamp),
            description: Lww::new(p.description, stamp),
            price: Lww::new(p.price, stamp),
            category: Lww::new(p.category, stamp),
            tags: Lww::new(p.tags, stamp),
            attributes: Lww::new(p.attributes, stamp),
            embedding: Lww::new(p.embedding, stamp),
            price_history,
        }
    }

    /// The lattice join, field by field.
    pub fn join(&mut self, o: &Self) {
        self.sku.join(&o.sku);
        self.name.join(&o.name);
        self.description.join(&o.description);
        self.price.join(&o.price);
        self.category.join(&o.category);
        self.tags.join(&o.tags);
        self.attributes.join(&o.attributes);
        self.embedding.join(&o.embedding);
        for (s, p) in &o.price_history {
            self.price_history.entry(*s).or_insert_with(|| p.clone());
        }
        while self.price_history.len() > PRICE_HISTORY_LEN {
            self.price_history.pop_first();
        }
    }

    /// The greatest stamp of any field: when the product last changed.
    pub fn updated(&self) -> Stamp {
        [
            self.sku.stamp,
            self.name.stamp,
            self.description.stamp,
            self.price.stamp,
            self.category.stamp,
            self.tags.stamp,
            self.attributes.stamp,
            self.embedding.stamp,
        ]
        .into_iter()
        .max()
        .unwrap_or(self.sku.stamp)
    }

    /// The reading a new write to this product must exceed.
    pub fn floor(&self) -> Hlc {
        self.updated().hlc
    }

    /// This record with `patch` applied, the changed fields written with
    /// `stamp` (which the caller makes greater than [`Self::floor`]).
    pub fn patched(&self, patch: &ProductPatch, stamp: Stamp) -> Self {
        let mut r = self.clone();
        if let Some(v) = &patch.name {
            r.name = Lww::new(v.clone(), stamp);
        }
        if let Some(v) = &patch.description {
            r.description = Lww::new(v.clone(), stamp);
        }
        if let Some((price, reason)) = &patch.price {
            r.price = Lww::new(*price, stamp);
            r.price_history.insert(
                stamp,
                PricePoint {
                    price: *price,
                    reason: reason.clone(),
                },
            );
            while r.price_history.len() > PRICE_HISTORY_LEN {
                r.price_history.pop_first();
            }
        }
        if let Some(v) = &patch.category {
            r.category = Lww::new(v.clone(), stamp);
        }
        if let Some(v) = &patch.tags {
            r.tags = Lww::new(v.clone(), stamp);
        }
        if let Some(v) = &patch.attributes {
            r.attributes = Lww::new(v.clone(), stamp);
        }
        if let Some(v) = &patch.embedding {
            r.embedding = Lww::new(v.clone(), stamp);
        }
        r
    }

    /// The text search indexes: name, description, category and tags.
    pub fn search_text(&self) -> String {
        let mut s =
            String::with_capacity(self.name.value.len() + self.description.value.len() + 32);
        s.push_str(&self.name.value);
        s.push(' ');
        s.push_str(&self.sku.value);
        s.push(' ');
        s.push_str(&self.description.value);
        s.push(' ');
        s.push_str(&self.category.value);
        for t in &self.tags.value {
            s.push(' ');
            s.push_str(t);
        }
        s
    }
}

/// The product a reader sees: the field-wise join of the live siblings, or
/// `None` when the product does not exist.
pub fn resolve(siblings: &DotFun<ProductRecord>) -> Option<ProductRecord> {
    let mut it = siblings.0.values();
    let mut r = it.next()?.clone();
    for s in it {
        r.join(s);
    }
    Some(r)
}
