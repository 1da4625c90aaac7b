//! Secondary indexes of a replica: products by SKU and by category, orders
//! by customer, by status and by cart. Derived state, rebuilt at restore and kept
//! current by every change, so a listing costs O(page) rather than a scan of
//! the keyspace.

use std::collections::{BTreeMap, BTreeSet};

use super::Replica;
use crate::clock::Hlc;
use crate::ids::{AccountId, Actor, CartId, OrderId, ProductId};
use crate::status::OrderStatus;

/// What indexes a product: its SKU and category.
pub(super) type ProductKeys = (String, String);

/// What indexes an order: its customer, status, placed time and cart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct OrderKeys {
    pub customer: String,
    pub status: OrderStatus,
    pub created_ms: u64,
    pub cart: Option<CartId>,
}

impl From<(String, OrderStatus, u64, Option<CartId>)> for OrderKeys {
    fn from(
        (customer, status, created_ms, cart): (String, OrderStatus, u64, Option<CartId>),
    ) -> Self {
        Self {
            customer,
            status,
            created_ms,
            cart,
        }
    }
}

/// An order's place in listings: placed time, then id. Ids derived from an
/// idempotency key are not time-ordered, so listings follow the time the
/// winning sale was placed.
pub(super) type OrderPos = (u64, OrderId);

/// The indexes.
#[derive(Default)]
pub(super) struct Indexes {
    /// Live products by SKU (normally one each).
    pub sku: BTreeMap<String, BTreeSet<ProductId>>,
    /// Live products by category.
    pub category: BTreeMap<String, BTreeSet<ProductId>>,
    /// Every order with a sale, by id.
    pub orders: BTreeMap<OrderId, OrderKeys>,
    /// Every order with a sale, in listing order.
    pub by_time: BTreeSet<OrderPos>,
    /// Orders by customer.
    pub by_customer: BTreeMap<String, BTreeSet<OrderPos>>,
    /// Orders by status.
    pub by_status: BTreeMap<OrderStatus, BTreeSet<OrderPos>>,
    /// Orders by the cart they were checked out from.
    pub by_cart: BTreeMap<CartId, BTreeSet<OrderPos>>,
    /// Registered accounts by e-mail, in claim order (the first owns it).
    pub emails: BTreeMap<String, BTreeSet<EmailClaim>>,
    /// Each registered account's claim.
    pub claims: BTreeMap<AccountId, (String, EmailClaim)>,
}

/// An account's claim on its e-mail: registration time, node, account. The
/// least claim owns the e-mail.
pub(super) type EmailClaim = (Hlc, Actor, AccountId);

fn unlink<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

impl Indexes {
    /// Moves a product from its `old` keys to its `new` ones.
    pub fn set_product(
        &mut self,
        id: ProductId,
        old: Option<ProductKeys>,
        new: Option<ProductKeys>,
    ) {
        if old == new {
            return;
        }
        if let Some((sku, cat)) = &old {
            unlink(&mut self.sku, sku, &id);
            unlink(&mut self.category, cat, &id);
        }
        if let Some((sku, cat)) = new {
            self.sku.entry(sku).or_default().insert(id);
            self.category.entry(cat).or_default().insert(id);
        }
    }

    /// Records an account's claim on its e-mail (`None`: not registered).
    pub fn set_account(&mut self, id: AccountId, now: Option<(String, EmailClaim)>) {
        let old = self.claims.get(&id).cloned();
        if old == now {
            return;
        }
        if let Some((email, claim)) = &old {
            unlink(&mut self.emails, email, claim);
        }
        match now {
            Some((email, claim)) => {
                self.emails.entry(email.clone()).or_default().insert(claim);
                self.claims.insert(id, (email, claim));
            }
            None => {
                self.claims.remove(&id);
            }
        }
    }

    /// Records an order's keys (`None`: no sale known yet).
    pub fn set_order(&mut self, id: OrderId, now: Option<OrderKeys>) {
        let old = self.orders.get(&id).cloned();
        if old == now {
            return;
        }
        if let Some(o) = &old {
            let pos = (o.created_ms, id);
            self.by_time.remove(&pos);
            unlink(&mut self.by_customer, &o.customer, &pos);
            unlink(&mut self.by_status, &o.status, &pos);
            if let Some(c) = &o.cart {
                unlink(&mut self.by_cart, c, &pos);
            }
        }
        match now {
            Some(n) => {
                let pos = (n.created_ms, id);
                self.by_time.insert(pos);
                self.by_customer
                    .entry(n.customer.clone())
                    .or_default()
                    .insert(pos);
                self.by_status.entry(n.status).or_default().insert(pos);
                if let Some(c) = n.cart {
                    self.by_cart.entry(c).or_default().insert(pos);
                }
                self.orders.insert(id, n);
            }
            None => {
                self.orders.remove(&id);
            }
        }
    }

    /// Where listings resume after order `id`: its place if known, else the
    /// time a UUIDv7 carries (an id this node has not seen yet).
    fn resume_after(&self, id: &OrderId) -> OrderPos {
        let ms = self
            .orders
            .get(id)
            .map(|o| o.created_ms)
            .unwrap_or_else(|| {
                id.0.get_timestamp()
                    .map(|t| {
                        let (s, n) = t.to_unix();
                        s * 1000 + u64::from(n / 1_000_000)
                    })
                    .unwrap_or(0)
            });
        (ms, *id)
    }
}

impl Replica {
    /// Live products of a category, in id order, after `after`.
    pub fn products_in_category<'a>(
        &'a self,
        category: &str,
        after: Option<&ProductId>,
    ) -> impl Iterator<Item = &'a ProductId> + 'a {
        let set = self.index.category.get(category);
        let start = after.copied();
        set.into_iter().flat_map(move |s| {
            s.range((
                start.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            ))
        })
    }

    /// Orders in listing order (oldest first, by placed time, then id),
    /// after `after`, of one customer and/or in one status — from the
    /// narrowest index, so a page costs O(page) plus, when both filters are
    /// given, the customer's other orders.
    pub fn orders_after<'a>(
        &'a self,
        customer: Option<&'a str>,
        status: Option<OrderStatus>,
        after: Option<&OrderId>,
    ) -> Box<dyn Iterator<Item = OrderId> + 'a> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, |a| Excluded(self.index.resume_after(a)));
        let keep = move |id: &OrderId| {
            self.index.orders.get(id).is_some_and(|o| {
                customer.is_none_or(|x| x == o.customer) && status.is_none_or(|x| x == o.status)
            })
        };
        let ids =
            move |set: &'a BTreeSet<OrderPos>| set.range((from, Unbounded)).map(|(_, id)| *id);
        match (customer, status) {
            (Some(c), _) => Box::new(
                self.index
                    .by_customer
                    .get(c)
                    .into_iter()
                    .flat_map(ids)
                    .filter(move |id| keep(id)),
            ),
            (None, Some(s)) => Box::new(self.index.by_status.get(&s).into_iter().flat_map(ids)),
            (None, None) => Box::new(ids(&self.index.by_time)),
        }
    }

    /// The latest order checked out from `cart`, if any: a retried checkout
    /// of a cart its first attempt emptied answers this order.
    pub fn last_order_of_cart(&self, cart: &CartId) -> Option<OrderId> {
        self.index
            .by_cart
            .get(cart)
            .and_then(|s| s.iter().next_back())
            .map(|(_, id)| *id)
    }

    /// How many of a customer's orders are placed and not yet paid.
    pub fn open_orders_of(&self, customer: &str) -> usize {
        self.orders_after(Some(customer), Some(OrderStatus::Placed), None)
            .count()
    }
}
