//! The add-wins observed-remove set and map, as delta-state CRDTs without
//! per-element tombstones (the ORSWOT family).
//!
//! `add` makes a new dot and covers the element's older dots; `remove` covers
//! the element's dots and adds nothing; a concurrent add's dot is not covered
//! by the remove, so it survives: add wins. Each mutator returns the *delta*
//! (a small [`Causal`] state); the replica applies it with [`Causal::join`],
//! and so does every peer that receives it, in any order, any number of times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::causal::{Causal, DotFun, DotMap, DotSet, DotStore};
use crate::clock::Hlc;
use crate::context::{CausalContext, Dot};
use crate::ids::Actor;

/// An add-wins observed-remove set of `E`.
pub type OrSet<E> = Causal<DotMap<E, DotSet>>;

/// A value with the clock reading of its write: how concurrent writes of one
/// key are ordered (reading first, then the writer's actor).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamped<V> {
    /// When the value was written.
    pub hlc: Hlc,
    /// The value.
    pub value: V,
}

/// The siblings of one key of an add-wins map with last-writer-wins values.
pub type LwwSiblings<V> = DotFun<Stamped<V>>;

/// An add-wins observed-remove map whose values are last-writer-wins
/// registers: a concurrent write and remove keep the key, and concurrent
/// writes resolve to the one with the greatest (clock, actor).
pub type OrMap<K, V> = Causal<DotMap<K, LwwSiblings<V>>>;

/// The next dot of `actor` in a state whose context holds all its own dots.
fn next_dot(cc: &CausalContext, actor: Actor) -> Dot {
    Dot::new(actor, cc.vv().get(&actor) + 1)
}

/// A delta context: the new dot (if any) plus the dots it covers.
fn delta_cc(new: Option<Dot>, covered: impl IntoIterator<Item = Dot>) -> CausalContext {
    let mut cc = CausalContext::new();
    new.into_iter().chain(covered).for_each(|d| cc.insert(d));
    cc
}

impl<E: Ord + Clone> Causal<DotMap<E, DotSet>> {
    /// The delta that adds `e` at `actor`.
    pub fn add(&self, actor: Actor, e: E) -> Self {
        let d = next_dot(&self.cc, actor);
        let old = self.store.0.get(&e).cloned().unwrap_or_default();
        Causal {
            store: DotMap(BTreeMap::from([(e, DotSet::from([d]))])),
            cc: delta_cc(Some(d), old),
        }
    }

    /// The delta that removes `e` (empty if `e` is absent).
    pub fn remove(&self, e: &E) -> Self {
        let old = self.store.0.get(e).cloned().unwrap_or_default();
        Causal {
            store: DotMap::default(),
            cc: delta_cc(None, old),
        }
    }

    /// Whether `e` is in the set.
    pub fn contains(&self, e: &E) -> bool {
        self.store.0.contains_key(e)
    }

    /// The elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &E> {
        self.store.0.keys()
    }
}

/// The winner among siblings: the greatest (clock reading, actor).
pub fn lww_winner<V>(siblings: &LwwSiblings<V>) -> Option<(&Dot, &Stamped<V>)> {
    siblings
        .0
        .iter()
        .max_by(|(da, a), (db, b)| (a.hlc, da.actor).cmp(&(b.hlc, db.actor)))
}

/// The greatest clock reading among siblings, the floor a new write must beat.
pub fn lww_floor<V>(siblings: &LwwSiblings<V>) -> Hlc {
    siblings.0.values().map(|s| s.hlc).max().unwrap_or_default()
}

impl<K: Ord + Clone, V: Clone + Ord> Causal<DotMap<K, LwwSiblings<V>>> {
    /// The delta that writes `value` under `key` at `actor` with reading `hlc`
    /// (which the caller makes greater than [`Self::floor`] of the key).
    pub fn put(&self, actor: Actor, key: K, value: V, hlc: Hlc) -> Self {
        let d = next_dot(&self.cc, actor);
        let mut old = Vec::new();
        if let Some(s) = self.store.0.get(&key) {
            s.for_each_dot(&mut |d| old.push(d));
        }
        Causal {
            store: DotMap(BTreeMap::from([(
                key,
                DotFun::single(d, Stamped { hlc, value }),
            )])),
            cc: delta_cc(Some(d), old),
        }
    }

    /// The delta that removes `key` (empty if absent).
    pub fn remove(&self, key: &K) -> Self {
        let mut old = Vec::new();
        if let Some(s) = self.store.0.get(key) {
            s.for_each_dot(&mut |d| old.push(d));
        }
        Causal {
            store: DotMap::default(),
            cc: delta_cc(None, old),
        }
    }

    /// The value under `key`: the last writer's.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.store
            .0
            .get(key)
            .and_then(lww_winner)
            .map(|(_, s)| &s.value)
    }

    /// The greatest clock reading written under `key`.
    pub fn floor(&self, key: &K) -> Hlc {
        self.store.0.get(key).map(lww_floor).unwrap_or_default()
    }

    /// Every key with its winning value, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.store
            .0
            .iter()
            .filter_map(|(k, s)| lww_winner(s).map(|(_, w)| (k, &w.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn actor(n: &str) -> Actor {
        Actor::first(NodeId::new(n).unwrap())
    }

    #[test]
    fn concurrent_add_beats_remove() {
        let mut a = OrSet::<u8>::default();
        let add = a.add(actor("a"), 1);
        a.join(&add);
        let mut b = a.clone();
        let rm = b.remove(&1);
        b.join(&rm);
        let re = a.add(actor("a"), 1);
        a.join(&re);
        let ab = a.joined(&b);
        assert!(ab.contains(&1));
        assert_eq!(ab, b.joined(&a));
    }

    #[test]
    fn observed_remove_removes() {
        let mut a = OrSet::<u8>::default();
        let add = a.add(actor("a"), 1);
        a.join(&add);
        let mut b = OrSet::<u8>::default();
        b.join(&a);
        let rm = b.remove(&1);
        b.join(&rm);
        assert!(!a.joined(&b).contains(&1));
    }

    #[test]
    fn map_last_writer_wins_and_add_wins() {
        let mut a = OrMap::<u8, u32>::default();
        let p = a.put(actor("a"), 1, 10, Hlc::from_ms(5));
        a.join(&p);
        let mut b = a.clone();
        // Concurrent writes: the later reading wins.
        let pa = a.put(actor("a"), 1, 11, Hlc::from_ms(6));
        a.join(&pa);
        let pb = b.put(actor("b"), 1, 12, Hlc::from_ms(7));
        b.join(&pb);
        assert_eq!(a.joined(&b).get(&1), Some(&12));
        // A remove concurrent with a write keeps the key.
        let rm = a.remove(&1);
        a.join(&rm);
        assert_eq!(a.joined(&b).get(&1), Some(&12));
    }
}
