//! Dots, version vectors and the causal context of delta-state CRDTs
//! (Almeida, Shoker and Baquero, "Delta state replicated data types", 2018).
//!
//! A *dot* names one mutation: the actor that made it and its sequence number.
//! A *causal context* is the set of dots a replica has seen, kept compact as a
//! version vector (every dot up to `vv[actor]`) plus a small cloud of dots seen
//! out of order, folded into the vector as soon as the gap closes. Removes
//! leave nothing behind but dots in this context: there are no tombstones.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::Actor;

/// A version vector: for each actor, the highest sequence number seen, with
/// everything below it seen too. `crdts::VClock` keeps it in a `BTreeMap`, so
/// equal vectors encode to equal bytes.
pub type VersionVector = crdts::VClock<Actor>;

/// One mutation: the actor that made it and that actor's sequence number
/// (1, 2, 3 … with no gaps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dot {
    /// Who made the mutation.
    pub actor: Actor,
    /// Its number among that actor's mutations, starting at 1.
    pub seq: u64,
}

impl Dot {
    /// A dot of `actor` numbered `seq`.
    pub fn new(actor: Actor, seq: u64) -> Self {
        Self { actor, seq }
    }
}

impl From<Dot> for crdts::Dot<Actor> {
    fn from(d: Dot) -> Self {
        crdts::Dot::new(d.actor, d.seq)
    }
}

/// Anything that can say whether it has seen a dot: a replica's causal
/// context, or the few dots a delta covers.
pub trait Covers {
    /// Whether `dot` is in this context.
    fn covers(&self, dot: &Dot) -> bool;
}

/// A compact set of dots: a version vector plus the dots seen beyond it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalContext {
    vv: VersionVector,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The contiguous part: every dot up to `vv[actor]` is in the context.
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }

    /// Dots seen beyond the contiguous part, not yet folded into it.
    pub fn cloud(&self) -> &BTreeSet<Dot> {
        &self.cloud
    }

    /// Whether no dot has been seen.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Adds one dot, keeping the representation compact.
    pub fn insert(&mut self, dot: Dot) {
        let have = self.vv.get(&dot.actor);
        if dot.seq <= have {
            return;
        }
        if dot.seq == have + 1 {
            self.vv.dots.insert(dot.actor, dot.seq);
            self.fold(dot.actor);
        } else {
            self.cloud.insert(dot);
        }
    }

    /// Adds every dot of `other`.
    pub fn union(&mut self, other: &CausalContext) {
        for (actor, &seq) in &other.vv.dots {
            if seq > self.vv.get(actor) {
                self.vv.dots.insert(*actor, seq);
            }
        }
        for d in &other.cloud {
            self.insert(*d);
        }
        let actors: Vec<Actor> = other.vv.dots.keys().copied().collect();
        for a in actors {
            self.fold(a);
        }
    }

    /// Moves cloud dots of `actor` that have become contiguous into the vector,
    /// and drops cloud dots the vector already covers.
    fn fold(&mut self, actor: Actor) {
        let mut have = self.vv.get(&actor);
        let lo = Dot::new(actor, 0);
        let hi = Dot::new(actor, u64::MAX);
        let mut stale = Vec::new();
        for d in self.cloud.range(lo..=hi) {
            if d.seq <= have {
                stale.push(*d);
            } else if d.seq == have + 1 {
                have += 1;
                stale.push(*d);
            } else {
                break;
            }
        }
        for d in stale {
            self.cloud.remove(&d);
        }
        if have > 0 {
            self.vv.dots.insert(actor, have);
        }
    }

    /// Every dot in the context, for tests and small contexts only.
    pub fn iter_dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.vv
            .dots
            .iter()
            .flat_map(|(a, &n)| (1..=n).map(move |s| Dot::new(*a, s)))
            .chain(self.cloud.iter().copied())
    }
}

impl Covers for CausalContext {
    fn covers(&self, dot: &Dot) -> bool {
        dot.seq <= self.vv.get(&dot.actor) || self.cloud.contains(dot)
    }
}

/// A small sorted set of dots: the context of one delta (its own dot, the dots
/// it overwrites or removes, and the dots in its store).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DotList(Vec<Dot>);

impl DotList {
    /// Builds the set from any dots, sorting and deduplicating them.
    pub fn new(mut dots: Vec<Dot>) -> Self {
        dots.sort_unstable();
        dots.dedup();
        Self(dots)
    }

    /// The dots, sorted.
    pub fn as_slice(&self) -> &[Dot] {
        &self.0
    }
}

impl Covers for DotList {
    fn covers(&self, dot: &Dot) -> bool {
        self.0.binary_search(dot).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn a(n: &str) -> Actor {
        Actor::first(NodeId::new(n).unwrap())
    }

    #[test]
    fn out_of_order_dots_fold_when_the_gap_closes() {
        let mut cc = CausalContext::new();
        cc.insert(Dot::new(a("n1"), 3));
        cc.insert(Dot::new(a("n1"), 2));
        assert_eq!(cc.vv().get(&a("n1")), 0);
        assert_eq!(cc.cloud().len(), 2);
        cc.insert(Dot::new(a("n1"), 1));
        assert_eq!(cc.vv().get(&a("n1")), 3);
        assert!(cc.cloud().is_empty());
        assert!(cc.covers(&Dot::new(a("n1"), 2)));
        assert!(!cc.covers(&Dot::new(a("n1"), 4)));
    }

    #[test]
    fn union_folds_the_other_cloud() {
        let mut x = CausalContext::new();
        x.insert(Dot::new(a("n1"), 1));
        x.insert(Dot::new(a("n1"), 3));
        let mut y = CausalContext::new();
        y.insert(Dot::new(a("n1"), 1));
        y.insert(Dot::new(a("n1"), 2));
        x.union(&y);
        assert_eq!(x.vv().get(&a("n1")), 3);
        assert!(x.cloud().is_empty());
    }
}
