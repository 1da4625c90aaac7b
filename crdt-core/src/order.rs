//! Orders: line items and prices fixed at checkout, plus a status
//! max-register and the seller's "units returned" flag.
//!
//! Orders are never removed, so the orders keyspace is a grow-only map.
//! Lattice: the header joins by `max` (there is only ever one header per id:
//! ids are UUIDv7 minted by the accepting node — `max` just keeps the join
//! total should bytes from outside disagree); status joins by `max`; the
//! returned flag by `or`. All three are semilattices.
//!
//! The cancel/ship rule (`notes/crdt-design.md`): only the actor that sold an
//! order ships it, and a cancelled order's units return to that actor's
//! rights when *it* applies the cancel, recorded once by the `returned` flag
//! in the same delta. The seller serialises ship against cancel, so a
//! returned unit can never belong to a shipped order.

use serde::{Deserialize, Serialize};

use crate::ids::{Actor, CartId, ProductId};
use crate::money::Currency;
use crate::status::{MaxReg, OrderStatus};

/// Where an order ships to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    /// Recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, building.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State, province or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166 alpha-2 country code.
    pub country: String,
}

/// One line of an order, with the price fixed at checkout.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product sold.
    pub product: ProductId,
    /// Its SKU at checkout (the inventory key the units came from).
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Price per unit in minor units of the order's currency.
    pub unit_minor: u64,
}

/// What an order is, fixed when it is placed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderHeader {
    /// The customer who placed it.
    pub customer: String,
    /// The actor that sold it: the only one that ships it or returns its units.
    pub seller: Actor,
    /// Line items.
    pub lines: Vec<OrderLine>,
    /// The currency of every price in the order.
    pub currency: Currency,
    /// Σ quantity × unit price, in minor units.
    pub total_minor: u64,
    /// Where it ships to.
    pub shipping: Address,
    /// When it was placed (wall milliseconds at the seller).
    pub created_ms: u64,
    /// The cart it was checked out from, if any.
    pub cart: Option<CartId>,
}

impl OrderHeader {
    /// Units per SKU, in SKU order (an order may list one SKU on several lines).
    pub fn units_by_sku(&self) -> Vec<(String, u64)> {
        let mut m = std::collections::BTreeMap::<&str, u64>::new();
        for l in &self.lines {
            *m.entry(l.sku.as_str()).or_insert(0) += u64::from(l.quantity);
        }
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// One order as replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderEntry {
    /// The order as placed; `None` while only a status change for it has
    /// arrived (the order itself is on its way).
    pub header: Option<OrderHeader>,
    /// The status max-register.
    pub status: MaxReg<OrderStatus>,
    /// Whether the seller has returned a cancelled order's units.
    pub returned: bool,
}

impl OrderEntry {
    /// The lattice join.
    pub fn join(&mut self, o: &Self) {
        if o.header > self.header {
            self.header = o.header.clone();
        }
        self.status.join(&o.status);
        self.returned |= o.returned;
    }

    /// Whether this entry is the lattice bottom (nothing known).
    pub fn is_bottom(&self) -> bool {
        *self == OrderEntry::default()
    }
}
