//! Deltas: what one mutation changed, in a form that joins into any replica
//! in any order, any number of times.
//!
//! A delta is a small delta-state (Almeida et al. 2018) written compactly:
//! its own dot and clock reading, the dots it *covers* (the siblings it
//! overwrites or removes), and a list of [`Part`]s, one per key it touches.
//! Each part stands for a state fragment — for example a cart line part means
//! "under this cart and product, the single sibling `dot ↦ (hlc, qty)`" — and
//! is joined exactly as that fragment would be. Two rules make the compact
//! form sound:
//!
//! - a delta creates at most one sibling, named by its own dot;
//! - a delta lists every key whose dots it covers (a remove lists its key
//!   with no value), so joining visits only the delta's keys — O(delta), not
//!   O(state) — and still equals the full join.
//!
//! Parts of non-causal types (stock counters, orders) carry whole entries
//! and join by their own lattices.

use serde::{Deserialize, Serialize};

use crate::account::AccountEntry;
use crate::cart::{CartOwner, LineSibling};
use crate::catalog::ProductRecord;
use crate::causal::{DotFun, DotStore};
use crate::clock::{Hlc, Stamp};
use crate::codec::{self, DecodeError, Kind, Versioned};
use crate::context::{CausalContext, Dot, DotList, VersionVector};
use crate::counter::BoundedCounter;
use crate::idem::IdemEntry;
use crate::ids::{AccountId, CartId, IdemKey, OrderId, ProductId};
use crate::order::OrderEntry;
use crate::state::{Key, KeyEntry, KeyspaceId, ProductState, Sku, State};

/// One key's change within a delta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Part {
    /// A product: `Some` writes a new record sibling under the delta's dot
    /// (create or edit); `None` lists the product for removal.
    Product {
        /// The product.
        id: ProductId,
        /// The new record, or `None` for a delete.
        record: Option<Box<ProductRecord>>,
    },
    /// A cart line: quantity > 0 writes a new sibling under the delta's dot;
    /// 0 lists the line for removal.
    CartLine {
        /// The cart.
        cart: CartId,
        /// The product in it.
        product: ProductId,
        /// The new quantity, or 0 to remove the line.
        qty: u32,
    },
    /// Binds a cart to a customer (first writer wins).
    CartOwner {
        /// The cart.
        cart: CartId,
        /// The customer id.
        customer: String,
    },
    /// A SKU's whole stock counter.
    Stock {
        /// The SKU.
        sku: Sku,
        /// Its counter as the writer saw it after the change.
        counter: Box<BoundedCounter>,
    },
    /// An order's entry (a new order, or a status change).
    Order {
        /// The order.
        id: OrderId,
        /// The entry to join.
        entry: Box<OrderEntry>,
    },
    /// The first final answer to an idempotency key.
    Idem {
        /// The record's key.
        key: IdemKey,
        /// The record.
        entry: Box<IdemEntry>,
    },
    /// An account's changed fields (a delta of its entry).
    Account {
        /// The account.
        id: AccountId,
        /// The fields to join.
        entry: Box<AccountEntry>,
    },
}

impl Part {
    /// The key this part touches.
    pub fn key(&self) -> Key {
        match self {
            Part::Product { id, .. } => Key::Product(*id),
            Part::CartLine { cart, .. } | Part::CartOwner { cart, .. } => Key::Cart(*cart),
            Part::Stock { sku, .. } => Key::Stock(sku.clone()),
            Part::Order { id, .. } => Key::Order(*id),
            Part::Idem { key, .. } => Key::Idem(*key),
            Part::Account { id, .. } => Key::Account(*id),
        }
    }
}

/// One mutation, as replicated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The mutation's own dot.
    pub dot: Dot,
    /// The writer's clock reading: the stamp of every value it writes.
    pub hlc: Hlc,
    /// Dots of siblings this mutation overwrites or removes.
    pub covers: Vec<Dot>,
    /// What changed, per key.
    pub parts: Vec<Part>,
}

impl Versioned for Delta {
    const KIND: Kind = Kind::DELTA;
    const REVISION: u8 = 3;
}

impl Delta {
    /// Decodes a delta of any revision this build knows (revisions 1 and 2,
    /// from the delta logs and peers of earlier builds, are upgraded).
    pub fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
        match codec::revision(bytes) {
            Some(1) => codec::decode_revision::<legacy::DeltaV1>(Kind::DELTA, 1, bytes)
                .map(|d| d.upgrade()),
            Some(2) => codec::decode_revision::<legacy::DeltaV2>(Kind::DELTA, 2, bytes)
                .map(|d| d.upgrade()),
            _ => codec::decode(bytes),
        }
    }

    /// The delta's causal context: its own dot and the dots it covers (its
    /// only store dot is its own).
    pub fn context(&self) -> DotList {
        let mut v = Vec::with_capacity(self.covers.len() + 1);
        v.push(self.dot);
        v.extend_from_slice(&self.covers);
        DotList::new(v)
    }

    /// The stamp of values this delta writes.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            actor: self.dot.actor,
        }
    }

    /// Joins the delta into `state`, whose causal context is `cc` (the caller
    /// adds the delta's context to `cc` afterwards). Returns the keys whose
    /// entries changed, in part order, without duplicates.
    pub fn join_into(&self, state: &mut State, cc: &CausalContext) -> Vec<Key> {
        let dcc = self.context();
        let mut changed: Vec<Key> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let did = match part {
                Part::Product { id, record } => {
                    let frag: ProductState = match record {
                        Some(r) => DotFun::single(self.dot, r.as_ref().clone()),
                        None => DotFun::default(),
                    };
                    state.products.modify(id, |e| e.join(cc, &frag, &dcc)).1
                }
                Part::CartLine { cart, product, qty } => {
                    let sibling = (*qty > 0).then_some(LineSibling {
                        product: *product,
                        dot: self.dot,
                        hlc: self.hlc,
                        qty: *qty,
                    });
                    state
                        .carts
                        .modify(cart, |e| e.join_line(cc, *product, sibling, &dcc))
                        .1
                }
                Part::CartOwner { cart, customer } => {
                    let owner = CartOwner {
                        stamp: self.stamp(),
                        customer: customer.clone(),
                    };
                    state.carts.modify(cart, |e| e.join_owner(Some(&owner))).1
                }
                Part::Stock { sku, counter } => state.stock.modify(sku, |e| e.join(counter)).1,
                Part::Order { id, entry } => state.orders.modify(id, |e| e.join(entry)).1,
                Part::Idem { key, entry } => state.idem.modify(key, |e| e.join(entry)).1,
                Part::Account { id, entry } => state.accounts.modify(id, |e| e.join(entry)).1,
            };
            if did {
                let k = part.key();
                if !changed.contains(&k) {
                    changed.push(k);
                }
            }
        }
        changed
    }

    /// Every dot this delta adds to a context.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        std::iter::once(self.dot).chain(self.covers.iter().copied())
    }
}

/// The full state of some key ranges of a peer, taken under its lock so that
/// the ranges and the contexts belong to one moment: what a node that is too
/// far behind for the delta log receives instead of deltas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepairSnapshot {
    /// The sender's causal context.
    pub cc: CausalContext,
    /// The sender's version vector of applied deltas.
    pub applied: VersionVector,
    /// The buckets this snapshot covers completely.
    pub buckets: Vec<(KeyspaceId, u16)>,
    /// Every key the sender holds in those buckets, with its entry.
    pub entries: Vec<KeyEntry>,
}

impl Versioned for RepairSnapshot {
    const KIND: Kind = Kind::REPAIR;
    const REVISION: u8 = 3;
}

/// Revisions 1 and 2 of the delta, whose order parts carry entries of those
/// revisions.
mod legacy {
    use super::*;
    use crate::order::legacy::{OrderEntryV1, OrderEntryV2};

    /// A part as revision 2 wrote it (the variants keep their indexes).
    #[derive(Deserialize)]
    pub(super) enum PartV2 {
        Product {
            id: ProductId,
            record: Option<Box<ProductRecord>>,
        },
        CartLine {
            cart: CartId,
            product: ProductId,
            qty: u32,
        },
        CartOwner {
            cart: CartId,
            customer: String,
        },
        Stock {
            sku: Sku,
            counter: Box<BoundedCounter>,
        },
        Order {
            id: OrderId,
            entry: Box<OrderEntryV2>,
        },
        Idem {
            key: IdemKey,
            entry: Box<IdemEntry>,
        },
        Account {
            id: AccountId,
            entry: Box<AccountEntry>,
        },
    }

    /// A delta as revision 2 wrote it.
    #[derive(Deserialize)]
    pub(super) struct DeltaV2 {
        dot: Dot,
        hlc: Hlc,
        covers: Vec<Dot>,
        parts: Vec<PartV2>,
    }

    impl DeltaV2 {
        pub(super) fn upgrade(self) -> Delta {
            let parts = self
                .parts
                .into_iter()
                .map(|p| match p {
                    PartV2::Product { id, record } => Part::Product { id, record },
                    PartV2::CartLine { cart, product, qty } => {
                        Part::CartLine { cart, product, qty }
                    }
                    PartV2::CartOwner { cart, customer } => Part::CartOwner { cart, customer },
                    PartV2::Stock { sku, counter } => Part::Stock { sku, counter },
                    PartV2::Order { id, entry } => Part::Order {
                        id,
                        entry: Box::new(entry.upgrade()),
                    },
                    PartV2::Idem { key, entry } => Part::Idem { key, entry },
                    PartV2::Account { id, entry } => Part::Account { id, entry },
                })
                .collect();
            Delta {
                dot: self.dot,
                hlc: self.hlc,
                covers: self.covers,
                parts,
            }
        }
    }

    /// A part as revision 1 wrote it (the variants keep their indexes).
    #[derive(Deserialize)]
    pub(super) enum PartV1 {
        Product {
            id: ProductId,
            record: Option<Box<ProductRecord>>,
        },
        CartLine {
            cart: CartId,
            product: ProductId,
            qty: u32,
        },
        CartOwner {
            cart: CartId,
            customer: String,
        },
        Stock {
            sku: Sku,
            counter: Box<BoundedCounter>,
        },
        Order {
            id: OrderId,
            entry: Box<OrderEntryV1>,
        },
    }

    /// A delta as revision 1 wrote it.
    #[derive(Deserialize)]
    pub(super) struct DeltaV1 {
        dot: Dot,
        hlc: Hlc,
        covers: Vec<Dot>,
        parts: Vec<PartV1>,
    }

    impl DeltaV1 {
        pub(super) fn upgrade(self) -> Delta {
            let writer = self.dot.actor;
            let parts = self
                .parts
                .into_iter()
                .map(|p| match p {
                    PartV1::Product { id, record } => Part::Product { id, record },
                    PartV1::CartLine { cart, product, qty } => {
                        Part::CartLine { cart, product, qty }
                    }
                    PartV1::CartOwner { cart, customer } => Part::CartOwner { cart, customer },
                    PartV1::Stock { sku, counter } => Part::Stock { sku, counter },
                    PartV1::Order { id, entry } => Part::Order {
                        id,
                        entry: Box::new(entry.upgrade(Some(writer))),
                    },
                })
                .collect();
            Delta {
                dot: self.dot,
                hlc: self.hlc,
                covers: self.covers,
                parts,
            }
        }
    }
}

/// Dots in a dot store, for checks and tests.
pub fn store_dots<S: DotStore>(s: &S) -> Vec<Dot> {
    let mut v = Vec::new();
    s.for_each_dot(&mut |d| v.push(d));
    v
}
