//! Carts: per cart an add-wins map from product to a last-writer-wins
//! quantity, plus the customer the cart belongs to.
//!
//! The Dynamo rule holds: an item added on one node is never lost to a
//! concurrent change on another, because a remove covers only the dots it has
//! seen. The owner is a first-writer-wins register (the smallest stamp wins):
//! the first write by a customer binds the cart to them, and a concurrent
//! first write elsewhere resolves the same way on every node.
//!
//! Representation: the cart is the dot store `product → {dot ↦ (hlc, qty)}`
//! of an add-wins map with LWW values, flattened into one vector of siblings
//! sorted by (product, dot) — one allocation per cart, binary search within
//! it — because a cart add is the hottest write. `tests/laws.rs` checks it
//! against the generic [`crate::orset::OrMap`] on random histories.
//!
//! Lattice: siblings join as a dot store (a sibling survives when both sides
//! hold it, or one side holds it and the other has not seen its dot); the
//! owner joins by `min`; both are semilattices, so their product is.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::causal::DotStore;
use crate::clock::{Hlc, Stamp};
use crate::context::{Covers, Dot};
use crate::ids::ProductId;

/// Who a cart belongs to, and when that was decided.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CartOwner {
    /// The first write's stamp; the smallest wins.
    pub stamp: Stamp,
    /// The customer id (a customer token's subject).
    pub customer: String,
}

/// One write of one cart line: a sibling of the line's LWW register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineSibling {
    /// The product.
    pub product: ProductId,
    /// The write's dot.
    pub dot: Dot,
    /// The write's clock reading (with `dot.actor`, its LWW stamp).
    pub hlc: Hlc,
    /// The quantity written.
    pub qty: u32,
}

impl LineSibling {
    fn id(&self) -> (ProductId, Dot) {
        (self.product, self.dot)
    }

    fn rank(&self) -> (Hlc, crate::ids::Actor) {
        (self.hlc, self.dot.actor)
    }
}

/// One cart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartEntry {
    /// The customer the cart is bound to, if a customer has written to it
    /// (boxed: most carts a benchmark or an admin writes have none, and a
    /// smaller entry keeps more carts in cache).
    pub owner: Option<Box<CartOwner>>,
    /// Live siblings, sorted by (product, dot). Most carts hold one line
    /// with one sibling: it lives inline, in the cart's own slot, so a cart
    /// add touches one cache line fewer and allocates nothing.
    siblings: SmallVec<[LineSibling; 1]>,
}

impl CartEntry {
    fn range(&self, product: &ProductId) -> &[LineSibling] {
        let lo = self.siblings.partition_point(|s| s.product < *product);
        let hi = lo + self.siblings[lo..].partition_point(|s| s.product == *product);
        &self.siblings[lo..hi]
    }

    /// The quantity of each item (the winning sibling's), in product order.
    pub fn lines(&self) -> impl Iterator<Item = (ProductId, u32)> + '_ {
        self.siblings
            .chunk_by(|a, b| a.product == b.product)
            .filter_map(|group| {
                group
                    .iter()
                    .max_by_key(|s| s.rank())
                    .map(|w| (w.product, w.qty))
            })
    }

    /// The quantity of one item, if it is in the cart.
    pub fn quantity(&self, product: &ProductId) -> Option<u32> {
        self.range(product)
            .iter()
            .max_by_key(|s| s.rank())
            .map(|w| w.qty)
    }

    /// The dots of one item's siblings (what a write or remove of it covers).
    pub fn item_dots(&self, product: &ProductId) -> Vec<Dot> {
        self.range(product).iter().map(|s| s.dot).collect()
    }

    /// The greatest clock reading written to one item: a new write must beat it.
    pub fn item_floor(&self, product: &ProductId) -> Hlc {
        self.range(product)
            .iter()
            .map(|s| s.hlc)
            .max()
            .unwrap_or_default()
    }

    /// Every sibling, for inspection.
    pub fn siblings(&self) -> &[LineSibling] {
        &self.siblings
    }

    /// The owner's customer id, if bound.
    pub fn customer(&self) -> Option<&str> {
        self.owner.as_ref().map(|o| o.customer.as_str())
    }

    /// Joins an owner (first writer wins: the smaller stamp).
    pub fn join_owner(&mut self, other: Option<&CartOwner>) {
        if let Some(o) = other
            && self.owner.as_deref().is_none_or(|m| o < m)
        {
            self.owner = Some(Box::new(o.clone()));
        }
    }

    /// Joins the fragment "line `product` holds just `sibling` (or nothing),
    /// seen under `other_cc`" — what a cart-line delta stands for.
    pub fn join_line(
        &mut self,
        self_cc: &dyn Covers,
        product: ProductId,
        sibling: Option<LineSibling>,
        other_cc: &dyn Covers,
    ) {
        let lo = self.siblings.partition_point(|s| s.product < product);
        let hi = lo + self.siblings[lo..].partition_point(|s| s.product == product);
        let mut keep_new = sibling.filter(|n| n.product == product);
        // Ours survive when the fragment holds them too, or has not seen them.
        let mut i = lo;
        let mut end = hi;
        while i < end {
            let s = self.siblings[i];
            if keep_new.is_some_and(|n| n.dot == s.dot) {
                keep_new = None;
                i += 1;
            } else if other_cc.covers(&s.dot) {
                self.siblings.remove(i);
                end -= 1;
            } else {
                i += 1;
            }
        }
        // Theirs enters when we have not seen it.
        if let Some(n) = keep_new
            && !self_cc.covers(&n.dot)
        {
            let at = lo + self.siblings[lo..end].partition_point(|s| s.dot < n.dot);
            self.siblings.insert(at, n);
        }
    }
}

impl DotStore for CartEntry {
    fn is_bottom(&self) -> bool {
        self.owner.is_none() && self.siblings.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.siblings.iter().for_each(|s| f(s.dot));
    }

    fn join(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers) {
        let mine = std::mem::take(&mut self.siblings);
        let mut out = SmallVec::with_capacity(mine.len().max(other.siblings.len()));
        let (mut i, mut j) = (0, 0);
        while i < mine.len() || j < other.siblings.len() {
            let a = mine.get(i);
            let b = other.siblings.get(j);
            match (a, b) {
                (Some(x), Some(y)) if x.id() == y.id() => {
                    // One dot names one write; should outside bytes disagree,
                    // keep the larger so both sides match.
                    out.push(*x.max(y));
                    i += 1;
                    j += 1;
                }
                (Some(x), y) if y.is_none_or(|y| x.id() < y.id()) => {
                    if !other_cc.covers(&x.dot) {
                        out.push(*x);
                    }
                    i += 1;
                }
                (_, Some(y)) => {
                    if !self_cc.covers(&y.dot) {
                        out.push(*y);
                    }
                    j += 1;
                }
                (_, None) => break,
            }
        }
        self.siblings = out;
        self.join_owner(other.owner.as_deref());
    }
}
