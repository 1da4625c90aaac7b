//! Dot stores: the building blocks of the add-wins set and map, joined under
//! causal contexts (Almeida et al. 2018, §5).
//!
//! A dot store holds dots (and, for [`DotFun`], a value per dot). Joining two
//! stores `s1` (seen under context `c1`) and `s2` (under `c2`) keeps a dot when
//! it is in both stores, or in one store and absent from the *other's
//! context*: a dot the other side has seen but no longer holds was removed
//! there. So a remove needs no tombstone — only the dots it covers in the
//! context.
//!
//! Lattice laws (proven by the property tests in `tests/laws.rs`): for states
//! `(s, c)` whose context covers their store's dots, [`Causal::join`] is
//! commutative, associative and idempotent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::context::{CausalContext, Covers, Dot};

/// A store of dots that joins under causal contexts.
pub trait DotStore: Clone + Default + PartialEq {
    /// Whether the store holds nothing (the lattice bottom).
    fn is_bottom(&self) -> bool;

    /// Calls `f` on every dot in the store.
    fn for_each_dot(&self, f: &mut dyn FnMut(Dot));

    /// Joins `other` (seen under `other_cc`) into `self` (seen under `self_cc`).
    /// The caller unions the contexts afterwards.
    fn join(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers);
}

/// A set of dots: the presence of one element of an add-wins set.
pub type DotSet = BTreeSet<Dot>;

impl DotStore for DotSet {
    fn is_bottom(&self) -> bool {
        self.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.iter().copied().for_each(f);
    }

    fn join(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers) {
        self.retain(|d| other.contains(d) || !other_cc.covers(d));
        for d in other {
            if !self.contains(d) && !self_cc.covers(d) {
                self.insert(*d);
            }
        }
    }
}

/// A map from dots to values: the concurrent writes (siblings) of one
/// register. A write makes a new dot and covers the dots it has seen, so
/// normally one sibling survives; concurrent writes leave several, and the
/// reader resolves them (last writer wins, by stamp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotFun<V>(pub BTreeMap<Dot, V>);

impl<V> Default for DotFun<V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<V> DotFun<V> {
    /// One sibling.
    pub fn single(dot: Dot, value: V) -> Self {
        Self(BTreeMap::from([(dot, value)]))
    }

    /// The dots of all siblings.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.0.keys().copied()
    }
}

impl<V: Clone + Ord> DotStore for DotFun<V> {
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.0.keys().copied().for_each(f);
    }

    fn join(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers) {
        self.0
            .retain(|d, _| other.0.contains_key(d) || !other_cc.covers(d));
        for (d, v) in &other.0 {
            match self.0.get_mut(d) {
                // One dot names one write, so the values agree; should bytes
                // from outside disagree, keep the larger so both sides match.
                Some(mine) => {
                    if v > mine {
                        *mine = v.clone();
                    }
                }
                None => {
                    if !self_cc.covers(d) {
                        self.0.insert(*d, v.clone());
                    }
                }
            }
        }
    }
}

/// A map from keys to dot stores: an add-wins map. A key is present while its
/// store holds a dot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotMap<K: Ord, V>(pub BTreeMap<K, V>);

impl<K: Ord, V> Default for DotMap<K, V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<K: Ord + Clone, V: DotStore> DotMap<K, V> {
    /// Joins only the keys listed in `other`.
    ///
    /// This is the join for a *delta* whose context covers dots at its listed
    /// keys only (every delta this crate makes lists each key whose dots it
    /// covers, with an empty store when it removes it); it then equals
    /// [`DotStore::join`] while costing O(keys in the delta), not O(state).
    pub fn join_delta(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers) {
        for (k, ov) in &other.0 {
            match self.0.get_mut(k) {
                Some(v) => {
                    v.join(self_cc, ov, other_cc);
                    if v.is_bottom() {
                        self.0.remove(k);
                    }
                }
                None => {
                    let mut v = V::default();
                    v.join(self_cc, ov, other_cc);
                    if !v.is_bottom() {
                        self.0.insert(k.clone(), v);
                    }
                }
            }
        }
    }
}

impl<K: Ord + Clone, V: DotStore> DotStore for DotMap<K, V> {
    fn is_bottom(&self) -> bool {
        self.0.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        for v in self.0.values() {
            v.for_each_dot(f);
        }
    }

    fn join(&mut self, self_cc: &dyn Covers, other: &Self, other_cc: &dyn Covers) {
        let empty = V::default();
        for (k, v) in self.0.iter_mut() {
            v.join(self_cc, other.0.get(k).unwrap_or(&empty), other_cc);
        }
        self.0.retain(|_, v| !v.is_bottom());
        for (k, ov) in &other.0 {
            if !self.0.contains_key(k) {
                let mut v = V::default();
                v.join(self_cc, ov, other_cc);
                if !v.is_bottom() {
                    self.0.insert(k.clone(), v);
                }
            }
        }
    }
}

/// A dot store with its causal context: a complete delta-state CRDT (or a
/// delta of one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Causal<S> {
    /// The live dots (and values).
    pub store: S,
    /// Every dot ever seen, live or removed.
    pub cc: CausalContext,
}

impl<S: DotStore> Causal<S> {
    /// The lattice join: commutative, associative, idempotent.
    pub fn join(&mut self, other: &Self) {
        self.store.join(&self.cc, &other.store, &other.cc);
        self.cc.union(&other.cc);
    }

    /// The join of two states, leaving both untouched.
    pub fn joined(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.join(other);
        out
    }
}

impl<S: DotStore> crdts::CvRDT for Causal<S> {
    type Validation = std::convert::Infallible;

    fn validate_merge(&self, _other: &Self) -> Result<(), Self::Validation> {
        Ok(())
    }

    fn merge(&mut self, other: Self) {
        self.join(&other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Actor, NodeId};

    fn dot(n: &str, s: u64) -> Dot {
        Dot::new(Actor::first(NodeId::new(n).unwrap()), s)
    }

    #[test]
    fn a_removed_dot_stays_removed_and_a_new_one_survives() {
        // Replica x added d1; replica y saw d1 and removed it; x concurrently
        // re-added with d2.
        let d1 = dot("x", 1);
        let d2 = dot("x", 2);
        let mut x = Causal::<DotSet>::default();
        x.store.insert(d1);
        x.store.insert(d2);
        x.cc.insert(d1);
        x.cc.insert(d2);
        let mut y = Causal::<DotSet>::default();
        y.cc.insert(d1);
        let j = x.joined(&y);
        assert_eq!(j.store, DotSet::from([d2]));
        assert_eq!(j, y.joined(&x));
    }
}
