//! Secondary indexes of a replica: products by SKU and by category, orders
//! by customer and by status. Derived state, rebuilt at restore and kept
//! current by every change, so a listing costs O(page) rather than a scan of
//! the keyspace.

use std::collections::{BTreeMap, BTreeSet};

use super::Replica;
use crate::ids::{OrderId, ProductId};
use crate::status::OrderStatus;

/// What indexes a product: its SKU and category.
pub(super) type ProductKeys = (String, String);

/// The indexes.
#[derive(Default)]
pub(super) struct Indexes {
    /// Live products by SKU (normally one each).
    pub sku: BTreeMap<String, BTreeSet<ProductId>>,
    /// Live products by category.
    pub category: BTreeMap<String, BTreeSet<ProductId>>,
    /// Every order with a header, by id (UUIDv7: time order).
    pub orders: BTreeMap<OrderId, (String, OrderStatus)>,
    /// Orders by customer.
    pub by_customer: BTreeMap<String, BTreeSet<OrderId>>,
    /// Orders by status.
    pub by_status: BTreeMap<OrderStatus, BTreeSet<OrderId>>,
}

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

    /// Records an order's customer and status (`None`: no header).
    pub fn set_order(&mut self, id: OrderId, now: Option<(String, OrderStatus)>) {
        let old = self.orders.get(&id).cloned();
        if old == now {
            return;
        }
        if let Some((c, s)) = &old {
            unlink(&mut self.by_customer, c, &id);
            unlink(&mut self.by_status, s, &id);
        }
        match now {
            Some((c, s)) => {
                self.by_customer.entry(c.clone()).or_default().insert(id);
                self.by_status.entry(s).or_default().insert(id);
                self.orders.insert(id, (c, s));
            }
            None => {
                self.orders.remove(&id);
            }
        }
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

    /// Orders in id order (oldest first: ids are time-ordered), after
    /// `after`, of one customer and/or in one status — from the narrowest
    /// index, so a page costs O(page) plus, when both filters are given,
    /// the customer's other orders.
    pub fn orders_after<'a>(
        &'a self,
        customer: Option<&'a str>,
        status: Option<OrderStatus>,
        after: Option<&OrderId>,
    ) -> Box<dyn Iterator<Item = OrderId> + 'a> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, |a| Excluded(*a));
        let keep = move |id: &OrderId| {
            self.index.orders.get(id).is_some_and(|(c, s)| {
                customer.is_none_or(|x| x == c) && status.is_none_or(|x| x == *s)
            })
        };
        match (customer, status) {
            (Some(c), _) => Box::new(
                self.index
                    .by_customer
                    .get(c)
                    .into_iter()
                    .flat_map(move |s| s.range((from, Unbounded)))
                    .copied()
                    .filter(move |id| keep(id)),
            ),
            (None, Some(s)) => Box::new(
                self.index
                    .by_status
                    .get(&s)
                    .into_iter()
                    .flat_map(move |set| set.range((from, Unbounded)))
                    .copied(),
            ),
            (None, None) => Box::new(
                self.index
                    .orders
                    .range((from, Unbounded))
                    .map(|(id, _)| *id),
            ),
        }
    }

    /// How many of a customer's orders are placed and not yet paid.
    pub fn open_orders_of(&self, customer: &str) -> usize {
        self.orders_after(Some(customer), Some(OrderStatus::Placed), None)
            .count()
    }
}
