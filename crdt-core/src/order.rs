//! Orders: line items and prices fixed at checkout, plus a status
//! max-register, and the sellers that returned or shipped.
//!
//! Orders are never removed, so the orders keyspace is a grow-only map.
//! Lattice: the sales map joins per seller by `max` (one seller sells an
//! order at most once — it refuses a checkout whose id it holds — so `max`
//! only keeps the join total should bytes from outside disagree); status
//! joins by `max`; the returned and shipped sets by union. All are
//! semilattices, and so is their product.
//!
//! The cancel/ship rule (`notes/crdt-design.md`): only the actor that sold an
//! order ships it, and a cancelled order's units return to that actor's
//! rights when *it* applies the cancel, recorded once by the `returned` flag
//! in the same delta. The seller serialises ship against cancel, so a
//! returned unit can never belong to a shipped order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, Kind};
use crate::ids::{Actor, CartId, ProductId};
use crate::money::Currency;
use crate::payment::Payments;
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
///
/// An order id names one checkout. Without an idempotency key only the node
/// that minted the id sells under it, so there is one sale; with a key every
/// node derives the same id, and two nodes cut off from each other may both
/// sell the same checkout. Each sale is kept under its seller, and one rule,
/// a function of the joined state alone, picks the sale that *is* the order
/// ([`OrderEntry::header`]); every other seller returns its units
/// ([`OrderEntry::owes_return`]), so after the heal the checkout is sold once.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderEntry {
    /// Each seller's sale of this checkout (normally one); empty while only a
    /// status change for the order has arrived.
    pub sales: BTreeMap<Actor, OrderHeader>,
    /// The status max-register, shared by every sale: a pay or cancel made
    /// on a sale that loses carries over to the one that wins.
    pub status: MaxReg<OrderStatus>,
    /// Sellers that have returned their units (a cancel, or a lost sale).
    pub returned: BTreeSet<Actor>,
    /// Sellers that shipped their sale: goods that left cannot come back, so
    /// a shipped sale is never returned and wins over an unshipped one.
    pub shipped: BTreeSet<Actor>,
    /// Payment attempts, refunds and provider events (revision 3).
    pub payments: Payments,
    /// An e-mail for the order's notices, given at checkout (revision 3):
    /// for a customer without an account.
    pub email: MaxReg<Option<String>>,
    /// The notices sent to the customer (`placed`, `shipped`, `cancelled`),
    /// recorded after the mail relay took them (revision 3).
    pub notified: BTreeSet<String>,
}

impl OrderEntry {
    /// An entry holding one new sale.
    pub fn placed(header: OrderHeader) -> Self {
        let mut sales = BTreeMap::new();
        sales.insert(header.seller, header);
        Self {
            sales,
            status: MaxReg(OrderStatus::Placed),
            ..Self::default()
        }
    }

    /// A status change (with, for a ship or a return, the seller that made
    /// it).
    pub fn moved(to: OrderStatus, shipped_by: Option<Actor>, returned_by: Option<Actor>) -> Self {
        Self {
            sales: BTreeMap::new(),
            status: MaxReg(to),
            returned: returned_by.into_iter().collect(),
            shipped: shipped_by.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A change to the payments alone, optionally moving the status too (a
    /// payment that makes the order paid).
    pub fn paying(payments: Payments, to: Option<OrderStatus>) -> Self {
        Self {
            status: MaxReg(to.unwrap_or_default()),
            payments,
            ..Self::default()
        }
    }

    /// The lattice join: union of sales (one per seller, joined by `max`
    /// should bytes from outside disagree), `max` of the status, union of the
    /// sets.
    pub fn join(&mut self, o: &Self) {
        for (seller, h) in &o.sales {
            match self.sales.get_mut(seller) {
                Some(mine) if *mine >= *h => {}
                Some(mine) => *mine = h.clone(),
                None => {
                    self.sales.insert(*seller, h.clone());
                }
            }
        }
        self.status.join(&o.status);
        self.returned.extend(o.returned.iter().copied());
        self.shipped.extend(o.shipped.iter().copied());
        self.payments.join(&o.payments);
        self.email.join(&o.email);
        self.notified.extend(o.notified.iter().cloned());
    }

    /// The sale that is the order: the first shipped seller's if any sale
    /// shipped (goods left with it), else the earliest by (placed time,
    /// seller). Every node that holds the same sales picks the same one.
    pub fn header(&self) -> Option<&OrderHeader> {
        self.shipped
            .iter()
            .find_map(|a| self.sales.get(a))
            .or_else(|| self.sales.values().min_by_key(|h| (h.created_ms, h.seller)))
    }

    /// Whether `seller` holds units of this order that it must give back:
    /// it sold, has not shipped or returned, and either the order is
    /// cancelled or its sale is not the one that won.
    pub fn owes_return(&self, seller: Actor) -> bool {
        self.owes_return_if_cancelled(seller)
            && (self.status.0 == OrderStatus::Cancelled
                || self.header().is_some_and(|h| h.seller != seller))
    }

    /// Whether `seller` would owe its units back were the order cancelled.
    pub fn owes_return_if_cancelled(&self, seller: Actor) -> bool {
        self.sales.contains_key(&seller)
            && !self.returned.contains(&seller)
            && !self.shipped.contains(&seller)
    }

    /// Whether `actor` has payment work on this order that nobody else can
    /// do: an attempt or refund of its own still waiting on the provider,
    /// an authorisation to release or a capture to refund because the order
    /// was cancelled (or its sale lost to another seller's).
    pub fn payment_work(&self, actor: Actor) -> bool {
        use crate::payment::{PaymentStatus as P, RefundStatus};
        let p = &self.payments;
        let given_up = self.status.0 == OrderStatus::Cancelled
            || self.header().is_some_and(|h| h.seller != actor);
        let attempts = p.attempts_of(actor).any(|(n, a)| {
            matches!(a.status.0, P::Processing | P::RequiresPaymentMethod)
                || (given_up && matches!(a.status.0, P::RequiresCapture | P::RequiresAction))
                || (given_up && a.captured_minor.0 > p.refunded_of((actor, n)))
        });
        attempts
            || p.refunds
                .range((actor, 0)..=(actor, u32::MAX))
                .any(|(_, r)| r.status.0 == RefundStatus::Pending)
    }

    /// The notices the order's life calls for so far, in the order they
    /// happen: `placed`, then `shipped` or `cancelled`.
    pub fn notices(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.header().is_some() {
            v.push("placed");
        }
        if !self.shipped.is_empty() || self.status.0 >= OrderStatus::Shipped {
            v.push("shipped");
        } else if self.status.0 == OrderStatus::Cancelled {
            v.push("cancelled");
        }
        v
    }

    /// Whether the checkout was sold by more than one node (both sides of a
    /// partition took it); all but one sale are, or will be, returned.
    pub fn resold(&self) -> bool {
        self.sales.len() > 1
    }

    /// Whether this entry is the lattice bottom (nothing known).
    pub fn is_bottom(&self) -> bool {
        *self == OrderEntry::default()
    }

    /// Reads a stored entry of any revision this build knows.
    pub fn decode_any(bytes: &[u8]) -> Result<Self, DecodeError> {
        match codec::revision(bytes) {
            Some(1) => codec::decode_revision::<legacy::OrderEntryV1>(Kind::ORDER, 1, bytes)
                .map(|v| v.upgrade(None)),
            Some(2) => codec::decode_revision::<legacy::OrderEntryV2>(Kind::ORDER, 2, bytes)
                .map(legacy::OrderEntryV2::upgrade),
            _ => codec::decode(bytes),
        }
    }
}

/// Earlier revisions of the order entry, read from stores and peers of
/// earlier builds: revision 1 (one header, a `returned` flag) and revision 2
/// (no payments).
pub mod legacy {
    use super::*;

    /// An order entry as revision 2 stored it.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderEntryV2 {
        /// Each seller's sale.
        pub sales: BTreeMap<Actor, OrderHeader>,
        /// The status.
        pub status: MaxReg<OrderStatus>,
        /// Sellers that returned their units.
        pub returned: BTreeSet<Actor>,
        /// Sellers that shipped.
        pub shipped: BTreeSet<Actor>,
    }

    impl OrderEntryV2 {
        /// The revision-3 entry: no payments yet.
        pub fn upgrade(self) -> OrderEntry {
            OrderEntry {
                sales: self.sales,
                status: self.status,
                returned: self.returned,
                shipped: self.shipped,
                ..OrderEntry::default()
            }
        }
    }

    /// An order entry as revision 1 stored it.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderEntryV1 {
        /// The order as placed.
        pub header: Option<OrderHeader>,
        /// The status.
        pub status: MaxReg<OrderStatus>,
        /// Whether the seller returned a cancelled order's units.
        pub returned: bool,
    }

    impl OrderEntryV1 {
        /// The revision-2 entry: the header becomes its seller's sale; a
        /// return or ship is credited to that seller — or, for a part
        /// without a header, to `writer`, the delta's author (in revision 1
        /// only the seller returned or shipped).
        pub fn upgrade(self, writer: Option<Actor>) -> OrderEntry {
            let by = self.header.as_ref().map(|h| h.seller).or(writer);
            let mut e = OrderEntry {
                status: self.status,
                ..OrderEntry::default()
            };
            if self.returned {
                e.returned.extend(by);
            }
            // Shipped or delivered: the seller shipped. A header-less part
            // credits its writer only for a ship (anyone may deliver).
            let shipped = self.status.0 >= OrderStatus::Shipped
                && (self.header.is_some() || self.status.0 == OrderStatus::Shipped);
            if shipped {
                e.shipped.extend(by);
            }
            if let Some(h) = self.header {
                e.sales.insert(h.seller, h);
            }
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::money::Currency;

    fn actor(n: &str) -> Actor {
        Actor::first(NodeId::new(n).expect("node id"))
    }

    fn sale(seller: &str, created_ms: u64) -> OrderHeader {
        OrderHeader {
            customer: "alice".into(),
            seller: actor(seller),
            lines: vec![OrderLine {
                product: ProductId(uuid::Uuid::from_u128(1)),
                sku: "SKU-1".into(),
                quantity: 2,
                unit_minor: 100,
            }],
            currency: Currency::new("USD").expect("currency"),
            total_minor: 200,
            shipping: Address {
                name: "A".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "Springfield".into(),
                region: None,
                postal_code: "1".into(),
                country: "US".into(),
            },
            created_ms,
            cart: None,
        }
    }

    #[test]
    fn two_sales_of_one_checkout_keep_the_earliest_and_the_other_returns() {
        let mut a = OrderEntry::placed(sale("n2", 10));
        let b = OrderEntry::placed(sale("n1", 12));
        a.join(&b);
        assert!(a.resold());
        assert_eq!(a.header().map(|h| h.seller), Some(actor("n2")));
        assert!(!a.owes_return(actor("n2")));
        assert!(a.owes_return(actor("n1")));
        // Once n1 has returned, nobody owes anything.
        a.join(&OrderEntry::moved(
            OrderStatus::Placed,
            None,
            Some(actor("n1")),
        ));
        assert!(!a.owes_return(actor("n1")));
        // A pay made on the losing sale carries over to the order.
        a.join(&OrderEntry::moved(OrderStatus::Paid, None, None));
        assert_eq!(a.status.0, OrderStatus::Paid);
    }

    #[test]
    fn a_shipped_sale_wins_and_is_never_returned() {
        let mut a = OrderEntry::placed(sale("n1", 10));
        // n2 sold and shipped while cut off from n1.
        a.join(&OrderEntry::placed(sale("n2", 12)));
        a.join(&OrderEntry::moved(
            OrderStatus::Shipped,
            Some(actor("n2")),
            None,
        ));
        assert_eq!(a.header().map(|h| h.seller), Some(actor("n2")));
        assert!(a.owes_return(actor("n1")));
        assert!(!a.owes_return(actor("n2")));
    }

    #[test]
    fn a_cancel_returns_every_unshipped_sale() {
        let mut a = OrderEntry::placed(sale("n1", 10));
        a.join(&OrderEntry::placed(sale("n2", 12)));
        a.join(&OrderEntry::moved(OrderStatus::Cancelled, None, None));
        assert!(a.owes_return(actor("n1")));
        assert!(a.owes_return(actor("n2")));
    }

    #[test]
    fn revision_two_entries_still_read() {
        let v2 = legacy::OrderEntryV2 {
            sales: [(actor("n1"), sale("n1", 10))].into_iter().collect(),
            status: MaxReg(OrderStatus::Paid),
            returned: BTreeSet::new(),
            shipped: BTreeSet::new(),
        };
        let body = postcard::to_allocvec(&v2).expect("encodes");
        let bytes = codec::seal(Kind::ORDER, 2, &body);
        assert!(codec::decode::<OrderEntry>(&bytes).is_err());
        let e = OrderEntry::decode_any(&bytes).expect("reads");
        assert_eq!(e.header(), Some(&sale("n1", 10)));
        assert_eq!(e.status.0, OrderStatus::Paid);
        assert!(e.payments.is_empty());
    }

    #[test]
    fn revision_one_entries_still_read() {
        let v1 = legacy::OrderEntryV1 {
            header: Some(sale("n1", 10)),
            status: MaxReg(OrderStatus::Shipped),
            returned: false,
        };
        let body = postcard::to_allocvec(&v1).expect("encodes");
        let bytes = codec::seal(Kind::ORDER, 1, &body);
        let e = OrderEntry::decode_any(&bytes).expect("reads");
        assert_eq!(e.header(), Some(&sale("n1", 10)));
        assert_eq!(e.status.0, OrderStatus::Shipped);
        assert!(e.shipped.contains(&actor("n1")));
        assert!(e.returned.is_empty());
        let cancelled = legacy::OrderEntryV1 {
            header: None,
            status: MaxReg(OrderStatus::Cancelled),
            returned: true,
        };
        let e = cancelled.upgrade(Some(actor("n3")));
        assert!(e.returned.contains(&actor("n3")));
        assert!(e.shipped.is_empty());
    }
}
