//! Lattice laws, proven by property tests: every join is commutative,
//! associative and idempotent on reachable states; merging a delta equals
//! merging the full state it came from; and the add-wins set agrees with
//! `crdts::Orswot` on the same histories.

use std::collections::BTreeSet;

use crdt_core::account::{AccountEntry, AccountRole, Registration, Rotation, SessionState};
use crdt_core::causal::Causal;
use crdt_core::clock::{Hlc, Stamp};
use crdt_core::counter::BoundedCounter;
use crdt_core::idem::{IdemEntry, IdemRecord};
use crdt_core::lww::Lww;
use crdt_core::order::{OrderEntry, OrderHeader};
use crdt_core::orset::{OrMap, OrSet};
use crdt_core::payment::Payments;
use crdt_core::status::{MaxReg, OrderStatus};
use crdt_core::{Actor, AddressId, Replica, ReplicaConfig, SessionId};
use crdts::{CmRDT, CvRDT, Orswot};
use proptest::prelude::*;

use crate::support::{Rng, Universe, actor, apply_maybe_answered, random_op};

const REPLICAS: usize = 3;

fn actors() -> Vec<Actor> {
    (0..REPLICAS).map(|i| actor(&format!("r{i}"))).collect()
}

/// One step of a set/map history: an op at a replica, or a merge.
#[derive(Clone, Debug)]
enum Step {
    Add(usize, u8, u32),
    Remove(usize, u8),
    Merge(usize, usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0..REPLICAS, 0u8..6, 0u32..100).prop_map(|(r, e, v)| Step::Add(r, e, v)),
        2 => (0..REPLICAS, 0u8..6).prop_map(|(r, e)| Step::Remove(r, e)),
        3 => (0..REPLICAS, 0..REPLICAS).prop_map(|(a, b)| Step::Merge(a, b)),
    ];
    prop::collection::vec(step, 0..40)
}

fn check_laws<T: Clone + PartialEq + std::fmt::Debug>(
    a: &T,
    b: &T,
    c: &T,
    join: impl Fn(&T, &T) -> T,
) {
    assert_eq!(join(a, b), join(b, a), "commutative");
    assert_eq!(join(&join(a, b), c), join(a, &join(b, c)), "associative");
    assert_eq!(join(a, a), *a, "idempotent");
}

/// Runs a history on our OR-Set and on `crdts::Orswot`, checking after every
/// step that both agree and that every delta joins like its full state.
fn run_sets(steps: &[Step]) -> Vec<OrSet<u8>> {
    let actors = actors();
    let mut ours = vec![OrSet::<u8>::default(); REPLICAS];
    let mut theirs: Vec<Orswot<u8, u8>> = vec![Orswot::new(); REPLICAS];
    for s in steps {
        match *s {
            Step::Add(r, e, _) | Step::Remove(r, e) => {
                let before = ours[r].clone();
                let delta = if matches!(s, Step::Add(..)) {
                    ours[r].add(actors[r], e)
                } else {
                    ours[r].remove(&e)
                };
                ours[r].join(&delta);
                // Delta = full state, for any receiver that has the sender's past.
                for j in 0..REPLICAS {
                    let with_past = ours[j].joined(&before);
                    assert_eq!(
                        with_past.joined(&delta),
                        with_past.joined(&ours[r]),
                        "delta-merge = full-merge"
                    );
                }
                let op = if matches!(s, Step::Add(..)) {
                    theirs[r].add(e, theirs[r].read_ctx().derive_add_ctx(r as u8))
                } else {
                    theirs[r].rm(e, theirs[r].contains(&e).derive_rm_ctx())
                };
                theirs[r].apply(op);
            }
            Step::Merge(a, b) => {
                let other = ours[b].clone();
                ours[a].join(&other);
                let other = theirs[b].clone();
                theirs[a].merge(other);
            }
        }
        for r in 0..REPLICAS {
            let a: BTreeSet<u8> = ours[r].elements().copied().collect();
            let b: BTreeSet<u8> = theirs[r].read().val.into_iter().collect();
            assert_eq!(
                a, b,
                "differential: replica {r} disagrees with crdts::Orswot after {s:?}"
            );
        }
    }
    ours
}

fn run_maps(steps: &[Step]) -> Vec<OrMap<u8, u32>> {
    let actors = actors();
    let mut m = vec![OrMap::<u8, u32>::default(); REPLICAS];
    let mut t = 0u64;
    for s in steps {
        t += 1;
        match *s {
            Step::Add(r, k, v) => {
                let before = m[r].clone();
                let hlc = Hlc::from_ms(t).max(m[r].floor(&k).tick());
                let d = m[r].put(actors[r], k, v, hlc);
                m[r].join(&d);
                for j in 0..REPLICAS {
                    let with_past = m[j].joined(&before);
                    assert_eq!(with_past.joined(&d), with_past.joined(&m[r]));
                }
                assert_eq!(m[r].get(&k), Some(&v), "a write is read back");
            }
            Step::Remove(r, k) => {
                let d = m[r].remove(&k);
                m[r].join(&d);
                assert_eq!(m[r].get(&k), None);
            }
            Step::Merge(a, b) => {
                let o = m[b].clone();
                m[a].join(&o);
            }
        }
    }
    m
}

fn stamp() -> impl Strategy<Value = Stamp> {
    (0u64..4, 0u32..2, 0usize..3).prop_map(|(ms, logical, a)| Stamp {
        hlc: Hlc { ms, logical },
        actor: actor(&format!("r{a}")),
    })
}

fn status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        Just(OrderStatus::Placed),
        Just(OrderStatus::Paid),
        Just(OrderStatus::Cancelled),
        Just(OrderStatus::Shipped),
        Just(OrderStatus::Delivered),
    ]
}

/// Reachable bounded counters: histories of restocks, sales, transfers and
/// returns at three replicas with merges.
fn counters(seed: u64) -> Vec<BoundedCounter> {
    let a = actors();
    let mut rng = Rng::new(seed);
    let mut c = vec![BoundedCounter::default(); REPLICAS];
    for _ in 0..30 {
        let r = rng.below(REPLICAS as u64) as usize;
        let k = 1 + rng.below(4);
        match rng.below(5) {
            0 => c[r].restock(a[r], k),
            1 => {
                let _ = c[r].sell(a[r], k);
            }
            2 => {
                let to = a[rng.below(REPLICAS as u64) as usize];
                let _ = c[r].transfer(a[r], to, k);
            }
            3 => c[r].return_units(a[r], 1),
            _ => {
                let o = c[rng.below(REPLICAS as u64) as usize].clone();
                c[r].join(&o);
            }
        }
    }
    c
}

/// Payments as histories make them: attempts by the three replicas (some
/// known only by an observation), refunds of them, provider events.
fn payments() -> impl Strategy<Value = Payments> {
    use crdt_core::payment::{
        Attempt, AttemptStart, CaptureMode, Observation, PaymentStatus, Refund, RefundStart,
        RefundStatus,
    };
    let pay_status = (0usize..7).prop_map(|i| {
        use PaymentStatus::*;
        [
            RequiresPaymentMethod,
            RequiresAction,
            Processing,
            RequiresCapture,
            Failed,
            Canceled,
            Succeeded,
        ][i]
    });
    let attempt = (
        any::<bool>(),
        0u64..3,
        pay_status,
        prop::option::of(0u8..3),
        0u64..3,
    )
        .prop_map(|(started, ms, st, pref, captured)| {
            let seen = Attempt::observed(&Observation {
                status: st,
                provider_ref: pref.map(|p| format!("pi_{p}")),
                captured_minor: captured * 100,
                failure: (st == PaymentStatus::Failed).then(|| "card_declined".into()),
            });
            if !started {
                return seen;
            }
            let mut a = Attempt::started(AttemptStart {
                provider: "test".into(),
                amount_minor: 300,
                currency: crate::support::usd(),
                capture: CaptureMode::Immediate,
                method: "visa 4242".into(),
                created_ms: ms,
            });
            a.join(&seen);
            a
        });
    let refund =
        (any::<bool>(), 0u32..3, 1u64..4, 0usize..3).prop_map(|(started, n, amount, st)| Refund {
            start: started.then(|| RefundStart {
                attempt: (actors()[0], n),
                amount_minor: amount * 50,
                reason: "r".into(),
                created_ms: 1,
            }),
            status: MaxReg(
                [
                    RefundStatus::Pending,
                    RefundStatus::Failed,
                    RefundStatus::Succeeded,
                ][st],
            ),
            provider_ref: MaxReg(None),
        });
    (
        prop::collection::btree_map((0usize..3, 1u32..3), attempt, 0..3),
        prop::collection::btree_map((0usize..3, 1u32..3), refund, 0..3),
        prop::collection::btree_set("evt_[a-c]", 0..3),
    )
        .prop_map(|(attempts, refunds, events)| {
            let a = actors();
            Payments {
                attempts: attempts
                    .into_iter()
                    .map(|((r, n), x)| ((a[r], n), x))
                    .collect(),
                refunds: refunds
                    .into_iter()
                    .map(|((r, n), x)| ((a[r], n), x))
                    .collect(),
                events,
            }
        })
}

/// Order entries as histories make them: up to three sales of one
/// checkout (by the three replicas), any status, returns and ships, and
/// payments.
fn order_entry() -> impl Strategy<Value = OrderEntry> {
    (
        prop::collection::btree_map(0usize..3, 0u64..4, 0..3),
        status(),
        prop::collection::btree_set(0usize..3, 0..3),
        prop::collection::btree_set(0usize..3, 0..2),
        payments(),
        prop::collection::btree_set("placed|shipped|cancelled", 0..3),
        prop::option::of("[ab]@example\\.com"),
    )
        .prop_map(
            |(sales, st, returned, shipped, payments, notified, email)| {
                let a = actors();
                let mut e = OrderEntry::default();
                for (r, ms) in sales {
                    let mut h = sample_header();
                    h.seller = a[r];
                    h.created_ms = ms;
                    e.join(&OrderEntry::placed(h));
                }
                e.status = MaxReg(st);
                e.returned = returned.into_iter().map(|r| a[r]).collect();
                e.shipped = shipped.into_iter().map(|r| a[r]).collect();
                e.payments = payments;
                e.notified = notified;
                e.email = MaxReg(email);
                e
            },
        )
}

fn sample_header() -> OrderHeader {
    OrderHeader {
        customer: "alice".into(),
        seller: actors()[0],
        lines: Vec::new(),
        currency: crate::support::usd(),
        total_minor: 0,
        shipping: crate::support::address(),
        created_ms: 0,
        cart: None,
    }
}

fn idem_entry() -> impl Strategy<Value = IdemEntry> {
    prop::option::of((0u64..4, 0usize..3, 200u16..203)).prop_map(|r| {
        IdemEntry(r.map(|(ms, a, status)| IdemRecord {
            hlc: Hlc { ms, logical: 0 },
            writer: actors()[a],
            fingerprint: [a as u8; 16],
            status,
            location: None,
            body: Some(vec![a as u8]),
        }))
    })
}

/// Account entries over a small universe: up to 40 sessions (more than an
/// account keeps, so truncation runs), each with the creation time its id
/// fixes (creation is immutable), random rotations and revocations; failure
/// buckets beyond the kept number; registrations, names and addresses.
fn account_entry() -> impl Strategy<Value = AccountEntry> {
    let session = (0u128..40, 0u32..4, 0u64..3, 0usize..3, any::<bool>());
    let failure = (0u64..8, 0usize..3, 0u32..5);
    let reg = prop::option::of((0u64..3, 0usize..3));
    let name = prop::option::of((0u32..3, stamp()));
    let address = (0u128..3, any::<bool>(), stamp());
    (
        prop::collection::vec(session, 0..40),
        prop::collection::vec(failure, 0..10),
        reg,
        name,
        prop::collection::vec(address, 0..4),
    )
        .prop_map(|(sessions, failures, reg, name, addresses)| {
            let a = actors();
            let mut e = AccountEntry::default();
            for (sid, generation, at, w, revoked) in sessions {
                let s = SessionState {
                    created: Hlc {
                        ms: 1_000 + (sid as u64 % 7),
                        logical: sid as u32,
                    },
                    rotation: Rotation {
                        generation,
                        at_ms: at,
                        writer: Some(a[w]),
                    },
                    revoked,
                };
                let mut d = AccountEntry::default();
                d.sessions.insert(SessionId(uuid::Uuid::from_u128(sid)), s);
                e.join(&d);
            }
            for (bucket, w, n) in failures {
                let mut d = AccountEntry::default();
                d.failures.entry(bucket).or_default().insert(a[w], n);
                e.join(&d);
            }
            e.registration = reg.map(|(ms, w)| Registration {
                created: Hlc { ms, logical: 0 },
                writer: a[w],
                email: "a@example.com".into(),
                role: AccountRole::Customer,
            });
            e.name = name.map(|(v, s)| Lww::new(format!("n{v}"), s));
            for (id, live, s) in addresses {
                let v = live.then(crate::support::address);
                e.addresses
                    .insert(AddressId(uuid::Uuid::from_u128(id)), Lww::new(v, s));
            }
            e
        })
}

fn join_causal<S: crdt_core::causal::DotStore>(a: &Causal<S>, b: &Causal<S>) -> Causal<S> {
    a.joined(b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn orset_laws_and_differential(s in steps()) {
        let st = run_sets(&s);
        check_laws(&st[0], &st[1], &st[2], join_causal);
    }

    #[test]
    fn ormap_laws(s in steps()) {
        let st = run_maps(&s);
        check_laws(&st[0], &st[1], &st[2], join_causal);
    }

    #[test]
    fn lww_laws(x in (0u32..3, stamp()), y in (0u32..3, stamp()), z in (0u32..3, stamp())) {
        let mk = |(v, s): (u32, Stamp)| Lww::new(v, s);
        check_laws(&mk(x), &mk(y), &mk(z), |a, b| { let mut r = a.clone(); r.join(b); r });
    }

    #[test]
    fn maxreg_laws(x in status(), y in status(), z in status()) {
        check_laws(&MaxReg(x), &MaxReg(y), &MaxReg(z), |a, b| { let mut r = *a; r.join(b); r });
    }

    #[test]
    fn order_entry_laws(x in order_entry(), y in order_entry(), z in order_entry()) {
        let join = |a: &OrderEntry, b: &OrderEntry| { let mut r = a.clone(); r.join(b); r };
        check_laws(&x, &y, &z, join);
        // The winning sale is a function of the joined state: the same
        // whichever way the join was taken, and one of the sales.
        let xy = join(&x, &y);
        let yx = join(&y, &x);
        prop_assert_eq!(xy.header(), yx.header());
        if let Some(h) = xy.header() {
            prop_assert!(xy.sales.get(&h.seller) == Some(h));
        }
    }

    #[test]
    fn payments_laws(x in payments(), y in payments(), z in payments()) {
        let join = |a: &Payments, b: &Payments| { let mut r = a.clone(); r.join(b); r };
        check_laws(&x, &y, &z, join);
        // The join is inflationary: no attempt's status or capture, and no
        // refund's status, moves back.
        let xy = join(&x, &y);
        for side in [&x, &y] {
            for (k, a) in &side.attempts {
                prop_assert!(xy.attempts[k].status >= a.status);
                prop_assert!(xy.attempts[k].captured_minor >= a.captured_minor);
            }
            for (k, r) in &side.refunds {
                prop_assert!(xy.refunds[k].status >= r.status);
            }
            prop_assert!(xy.events.is_superset(&side.events));
        }
    }

    #[test]
    fn idem_entry_laws(x in idem_entry(), y in idem_entry(), z in idem_entry()) {
        check_laws(&x, &y, &z, |a, b| { let mut r = a.clone(); r.join(b); r });
    }

    #[test]
    fn account_entry_laws(x in account_entry(), y in account_entry(), z in account_entry()) {
        let join = |a: &AccountEntry, b: &AccountEntry| { let mut r = a.clone(); r.join(b); r };
        check_laws(&x, &y, &z, join);
        let xyz = join(&join(&x, &y), &z);
        prop_assert!(xyz.sessions.len() <= crdt_core::account::MAX_SESSIONS);
        prop_assert!(xyz.failures.len() <= crdt_core::account::FAILURE_BUCKETS);
    }

    #[test]
    fn bounded_counter_laws(seed in any::<u64>()) {
        let c = counters(seed);
        check_laws(&c[0], &c[1], &c[2], |a, b| { let mut r = a.clone(); r.join(b); r });
        for x in &c {
            for (a, _) in x.rights_by_actor() {
                prop_assert!(x.rights_exact(&a) >= 0);
            }
        }
    }
}

/// A copy of a replica, made the way a node restarts: from what it persisted.
pub fn clone_replica(r: &Replica) -> Replica {
    crate::support::persisted(r)
}

/// The full-state join of `b` into `a`: a repair covering every bucket where
/// they differ.
pub fn full_join(a: &mut Replica, b: &Replica) {
    let mut buckets = Vec::new();
    for ks in crdt_core::KeyspaceId::ALL {
        for bucket in b.state().tree(ks).diff(a.state().tree(ks)) {
            buckets.push((ks, bucket));
        }
    }
    let snap = b.repair_for(&buckets);
    let base = a.begin_repair();
    a.merge_repair(&snap, &base, 0).expect("a fresh base");
}

fn joined(a: &Replica, b: &Replica) -> Replica {
    let mut x = clone_replica(a);
    full_join(&mut x, b);
    x
}

/// Replica-level laws over whole domain states reached by random ops.
#[test]
fn replica_full_join_laws_and_delta_equals_full_state() {
    let u = Universe::new(5, 3);
    let a = actors();
    for seed in 0..60u64 {
        let mut rng = Rng::new(seed);
        let mut reps: Vec<Replica> = a
            .iter()
            .map(|x| Replica::new(ReplicaConfig::new(*x)))
            .collect();
        let mut order_seq = 0u128;
        for step in 0..60u64 {
            let r = rng.below(REPLICAS as u64) as usize;
            if rng.chance(25) {
                let o = rng.below(REPLICAS as u64) as usize;
                let other = clone_replica(&reps[o]);
                full_join(&mut reps[r], &other);
                continue;
            }
            let before = clone_replica(&reps[r]);
            let op = random_op(&reps[r], &u, &a, &mut rng, &mut order_seq);
            if let Ok(applied) = apply_maybe_answered(&mut reps[r], op, 1_000 + step, &mut rng) {
                // A receiver holding the sender's past: delta = full state.
                let j = rng.below(REPLICAS as u64) as usize;
                let mut via_delta = joined(&reps[j], &before);
                let mut via_full = clone_replica(&via_delta);
                via_delta.merge(
                    applied.delta.as_ref().clone(),
                    applied.logged.bytes.clone(),
                    0,
                );
                full_join(&mut via_full, &reps[r]);
                assert_eq!(
                    via_delta.digest(),
                    via_full.digest(),
                    "seed {seed} step {step}"
                );
            }
        }
        let d = |x: &Replica| x.digest();
        assert_eq!(
            d(&joined(&reps[0], &reps[1])),
            d(&joined(&reps[1], &reps[0])),
            "commutative, seed {seed}"
        );
        assert_eq!(
            d(&joined(&joined(&reps[0], &reps[1]), &reps[2])),
            d(&joined(&reps[0], &joined(&reps[1], &reps[2]))),
            "associative, seed {seed}"
        );
        assert_eq!(
            d(&joined(&reps[0], &reps[0])),
            d(&reps[0]),
            "idempotent, seed {seed}"
        );
    }
}

/// The flat cart representation agrees with the generic add-wins map of LWW
/// quantities on random histories, and its full join obeys the laws.
#[test]
fn flat_cart_agrees_with_the_generic_map() {
    use crdt_core::cart::{CartEntry, LineSibling};
    use crdt_core::causal::DotStore;
    use crdt_core::context::{CausalContext, DotList};
    use crdt_core::{Dot, ProductId};

    let a = actors();
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let mut flat: Vec<(CartEntry, CausalContext)> = vec![Default::default(); REPLICAS];
        let mut generic = vec![OrMap::<u8, u32>::default(); REPLICAS];
        for t in 1..40u64 {
            let r = rng.below(REPLICAS as u64) as usize;
            let k = rng.below(4) as u8;
            let product = ProductId(uuid::Uuid::from_u128(u128::from(k)));
            match rng.below(3) {
                0 | 1 => {
                    let q = 1 + rng.below(9) as u32;
                    let (e, cc) = &mut flat[r];
                    let dot = Dot::new(a[r], cc.vv().get(&a[r]) + 1);
                    let hlc = Hlc::from_ms(t).max(e.item_floor(&product).tick());
                    let mut ctx = e.item_dots(&product);
                    ctx.push(dot);
                    let sib = LineSibling {
                        product,
                        dot,
                        hlc,
                        qty: q,
                    };
                    e.join_line(cc, product, Some(sib), &DotList::new(ctx.clone()));
                    ctx.into_iter().for_each(|d| cc.insert(d));
                    let g = generic[r].put(a[r], k, q, hlc);
                    generic[r].join(&g);
                }
                _ => {
                    let (e, cc) = &mut flat[r];
                    let ctx = e.item_dots(&product);
                    e.join_line(cc, product, None, &DotList::new(ctx.clone()));
                    ctx.into_iter().for_each(|d| cc.insert(d));
                    let g = generic[r].remove(&k);
                    generic[r].join(&g);
                }
            }
            if rng.chance(30) {
                let (x, y) = (
                    rng.below(REPLICAS as u64) as usize,
                    rng.below(REPLICAS as u64) as usize,
                );
                let (oe, occ) = flat[y].clone();
                let (e, cc) = &mut flat[x];
                e.join(cc, &oe, &occ);
                cc.union(&occ);
                let o = generic[y].clone();
                generic[x].join(&o);
            }
            for r in 0..REPLICAS {
                let f: Vec<(u8, u32)> = flat[r]
                    .0
                    .lines()
                    .map(|(p, q)| (p.0.as_u128() as u8, q))
                    .collect();
                let g: Vec<(u8, u32)> = generic[r].entries().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(f, g, "seed {seed} step {t} replica {r}");
            }
        }
        let join = |x: &(CartEntry, CausalContext), y: &(CartEntry, CausalContext)| {
            let mut out = x.clone();
            out.0.join(&x.1, &y.0, &y.1);
            out.1.union(&y.1);
            out
        };
        check_laws(&flat[0], &flat[1], &flat[2], join);
    }
}
