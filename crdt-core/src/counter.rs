//! The bounded counter for stock: escrow of rights (Balegas et al., SRDS
//! 2015; AntidoteDB's `counter_b`).
//!
//! Stock is split into *rights* held by actors. An actor sells only against
//! rights it holds; a restock gives rights to the restocking actor; an actor
//! may transfer rights to another; a cancelled order's units return to the
//! actor that sold them.
//!
//! State: grow-only entries, each written by one actor only —
//! `restocked[i]` (i's restocks), `returned[i]` (units returned to i),
//! `sold[i]`, and `transferred[(i, j)]` (rights i gave j). Join is the
//! entry-wise max: commutative, associative, idempotent, and needs no causal
//! delivery.
//!
//! Invariant: `rights(i) ≥ 0` for every actor in every state a replica can
//! reach, hence `stock ≥ 0`, i.e. Σ units in live orders ≤ Σ restocked. Why:
//! an actor's own entries only move through its own writes, checked against
//! its current rights; and every delta carries the *whole* counter of its SKU,
//! so wherever an actor's row arrives, the grants it had seen arrive with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Actor;

/// Not enough rights at the actor that tried to spend them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("needs {needed} units but holds rights to {held}")]
pub struct InsufficientRights {
    /// Units asked for.
    pub needed: u64,
    /// Rights the actor holds.
    pub held: u64,
}

/// A bounded counter of one SKU's stock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoundedCounter {
    restocked: BTreeMap<Actor, u64>,
    returned: BTreeMap<Actor, u64>,
    sold: BTreeMap<Actor, u64>,
    transferred: BTreeMap<(Actor, Actor), u64>,
}

fn join_max<K: Ord + Clone>(mine: &mut BTreeMap<K, u64>, other: &BTreeMap<K, u64>) {
    for (k, &v) in other {
        let e = mine.entry(k.clone()).or_insert(0);
        if v > *e {
            *e = v;
        }
    }
}

fn get<K: Ord>(m: &BTreeMap<K, u64>, k: &K) -> i128 {
    i128::from(m.get(k).copied().unwrap_or(0))
}

fn sum<K>(m: &BTreeMap<K, u64>) -> i128 {
    m.values().map(|&v| i128::from(v)).sum()
}

impl BoundedCounter {
    /// The lattice join.
    pub fn join(&mut self, other: &Self) {
        join_max(&mut self.restocked, &other.restocked);
        join_max(&mut self.returned, &other.returned);
        join_max(&mut self.sold, &other.sold);
        join_max(&mut self.transferred, &other.transferred);
    }

    /// Rights `a` holds, exactly (negative only in a state no valid history
    /// reaches; the model test checks it never is).
    pub fn rights_exact(&self, a: &Actor) -> i128 {
        let received: i128 = self
            .transferred
            .iter()
            .filter(|((_, to), _)| to == a)
            .map(|(_, &v)| i128::from(v))
            .sum();
        let given: i128 = self
            .transferred
            .iter()
            .filter(|((from, _), _)| from == a)
            .map(|(_, &v)| i128::from(v))
            .sum();
        get(&self.restocked, a) + get(&self.returned, a) + received - given - get(&self.sold, a)
    }

    /// Rights `a` holds, floored at zero.
    pub fn rights(&self, a: &Actor) -> u64 {
        clamp_u64(self.rights_exact(a))
    }

    /// Every actor that holds or held rights, with its current rights.
    pub fn rights_by_actor(&self) -> BTreeMap<Actor, u64> {
        let mut actors: Vec<Actor> = self
            .restocked
            .keys()
            .chain(self.returned.keys())
            .copied()
            .collect();
        actors.extend(self.transferred.keys().flat_map(|(a, b)| [*a, *b]));
        actors.extend(self.sold.keys().copied());
        actors.sort_unstable();
        actors.dedup();
        actors.into_iter().map(|a| (a, self.rights(&a))).collect()
    }

    /// Units on hand: restocked + returned − sold.
    pub fn stock_exact(&self) -> i128 {
        sum(&self.restocked) + sum(&self.returned) - sum(&self.sold)
    }

    /// Units on hand, floored at zero.
    pub fn stock(&self) -> u64 {
        clamp_u64(self.stock_exact())
    }

    /// Σ units ever restocked.
    pub fn total_restocked(&self) -> u64 {
        clamp_u64(sum(&self.restocked))
    }

    /// Σ units sold minus Σ units returned: the units in live orders.
    pub fn live_sold(&self) -> i128 {
        sum(&self.sold) - sum(&self.returned)
    }

    /// Adds `k` units of stock, as rights of `a`.
    pub fn restock(&mut self, a: Actor, k: u64) {
        let e = self.restocked.entry(a).or_insert(0);
        *e = e.saturating_add(k);
    }

    /// Returns `k` units of a cancelled order to the actor `a` that sold them.
    pub fn return_units(&mut self, a: Actor, k: u64) {
        let e = self.returned.entry(a).or_insert(0);
        *e = e.saturating_add(k);
    }

    /// Sells `k` units against `a`'s rights, or refuses.
    pub fn sell(&mut self, a: Actor, k: u64) -> Result<(), InsufficientRights> {
        self.check(&a, k)?;
        let e = self.sold.entry(a).or_insert(0);
        *e = e.saturating_add(k);
        Ok(())
    }

    /// Gives `k` of `from`'s rights to `to`, or refuses.
    pub fn transfer(&mut self, from: Actor, to: Actor, k: u64) -> Result<(), InsufficientRights> {
        self.check(&from, k)?;
        if from != to {
            let e = self.transferred.entry((from, to)).or_insert(0);
            *e = e.saturating_add(k);
        }
        Ok(())
    }

    fn check(&self, a: &Actor, k: u64) -> Result<(), InsufficientRights> {
        let held = self.rights(a);
        if held < k {
            Err(InsufficientRights { needed: k, held })
        } else {
            Ok(())
        }
    }
}

fn clamp_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn a(n: &str) -> Actor {
        Actor::first(NodeId::new(n).unwrap())
    }

    #[test]
    fn sells_only_within_rights_and_transfers_move_them() {
        let mut c = BoundedCounter::default();
        c.restock(a("n1"), 10);
        assert_eq!(
            c.sell(a("n2"), 1),
            Err(InsufficientRights { needed: 1, held: 0 })
        );
        c.transfer(a("n1"), a("n2"), 4).unwrap();
        c.sell(a("n2"), 4).unwrap();
        assert!(c.sell(a("n2"), 1).is_err());
        assert_eq!(c.rights(&a("n1")), 6);
        assert_eq!(c.stock(), 6);
        c.return_units(a("n2"), 2);
        assert_eq!(c.rights(&a("n2")), 2);
        assert_eq!(c.stock(), 8);
        assert_eq!(c.live_sold(), 2);
    }

    #[test]
    fn concurrent_sales_on_two_nodes_never_oversell() {
        let mut base = BoundedCounter::default();
        base.restock(a("n1"), 10);
        base.transfer(a("n1"), a("n2"), 5).unwrap();
        let mut x = base.clone();
        let mut y = base.clone();
        x.sell(a("n1"), 5).unwrap();
        y.sell(a("n2"), 5).unwrap();
        assert!(x.sell(a("n1"), 1).is_err());
        x.join(&y);
        assert_eq!(x.stock_exact(), 0);
    }
}
