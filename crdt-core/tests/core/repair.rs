//! Repairs under concurrent traffic, step by step: the scenarios that broke
//! a repair which adopted the sender's context for buckets it judged equal
//! against hashes the receiver had reported earlier, and the divergence
//! repair that restores a lost write without undoing a concurrent remove.

use crdt_core::{Actor, CartId, KeyspaceId, MergeOutcome, Op, Replica, ReplicaConfig};

use crate::support::{Rng, Universe, actor};

fn replica(name: &str) -> Replica {
    Replica::new(ReplicaConfig::new(actor(name)))
}

/// Applies `op` on `r` and returns the delta's bytes.
fn local(r: &mut Replica, op: Op, wall: u64) -> Vec<u8> {
    r.apply_local(op, wall)
        .expect("op applies")
        .logged
        .bytes
        .to_vec()
}

fn deliver(r: &mut Replica, bytes: &[u8], wall: u64) {
    match r.merge_bytes(bytes, wall).expect("decodes") {
        MergeOutcome::Applied(_) | MergeOutcome::AlreadySeen => {}
        MergeOutcome::Pending => panic!("delivered out of order"),
    }
}

fn differing(base: &crdt_core::repair::RepairBase, sender: &Replica) -> Vec<(KeyspaceId, u16)> {
    let mut out = Vec::new();
    for ks in KeyspaceId::ALL {
        for b in base.tree(ks).diff(sender.state().tree(ks)) {
            out.push((ks, b));
        }
    }
    out
}

fn has_line(r: &Replica, cart: &CartId, product: &crdt_core::ProductId) -> bool {
    r.state()
        .carts
        .get(cart)
        .and_then(|c| c.quantity(product))
        .is_some()
}

/// Three replicas share a product; returns them with the product and a cart.
fn three() -> (Vec<Replica>, crdt_core::ProductId, CartId) {
    let u = Universe::new(1, 1);
    let mut reps = vec![replica("r"), replica("s"), replica("t")];
    let mut rng = Rng::new(1);
    let create = local(
        &mut reps[2],
        Op::CreateProduct {
            id: u.products[0],
            product: u.new_product(0, &mut rng),
            initial_stock: 0,
        },
        10,
    );
    deliver(&mut reps[0], &create, 11);
    deliver(&mut reps[1], &create, 11);
    (reps, u.products[0], u.carts[0])
}

/// The scenario of the issue: R reports its hashes; T adds line K, S receives
/// it and a user on S removes it, so S's bucket hashes as R reported; R then
/// receives the add by push; S's snapshot skips the bucket but its context
/// covers the add and the remove. The line must not survive on R, and S's
/// remove arriving later must find nothing to undo.
#[test]
fn a_catch_up_repair_under_traffic_does_not_resurrect_a_removed_line() {
    let (mut reps, product, cart) = three();
    let base = reps[0].begin_repair();
    let add = local(
        &mut reps[2],
        Op::AddToCart {
            cart,
            product,
            quantity: 1,
            customer: None,
        },
        20,
    );
    deliver(&mut reps[1], &add, 21);
    let remove = local(
        &mut reps[1],
        Op::RemoveCartItem {
            cart,
            product,
            customer: None,
        },
        22,
    );
    deliver(&mut reps[0], &add, 23);
    assert!(has_line(&reps[0], &cart, &product));
    let buckets = differing(&base, &reps[1]);
    assert!(
        !buckets.iter().any(|(ks, _)| *ks == KeyspaceId::Carts),
        "the sender judges the cart's bucket equal: the scenario needs it"
    );
    let snap = reps[1].repair_for(&buckets);
    reps[0].merge_repair(&snap, &base, 24).expect("fresh base");
    assert!(
        !has_line(&reps[0], &cart, &product),
        "the removed line lives on after the repair"
    );
    deliver(&mut reps[0], &remove, 25);
    assert_eq!(reps[0].digest(), reps[1].digest());
}

/// A base is good for one repair: a second `begin_repair` makes the first
/// stale, and a stale snapshot changes nothing.
#[test]
fn a_stale_base_is_refused_and_changes_nothing() {
    let (mut reps, _, _) = three();
    let old = reps[0].begin_repair();
    let _new = reps[0].begin_repair();
    let snap = reps[1].repair_for(&differing(&old, &reps[1]));
    let before = reps[0].digest();
    assert!(reps[0].merge_repair(&snap, &old, 30).is_err());
    assert_eq!(reps[0].digest(), before);
}

/// Equal vectors, one replica lost a cart line: the divergence repair brings
/// it back on that replica — and honours a remove the sender had made and the
/// receiver not yet applied, in both directions.
#[test]
fn a_divergence_repair_restores_a_lost_write_but_not_a_removed_one() {
    let (mut reps, product, cart) = three();
    let u = Universe::new(2, 2);
    let other_cart = u.carts[1];
    let mut adds = Vec::new();
    for c in [cart, other_cart] {
        adds.push(local(
            &mut reps[2],
            Op::AddToCart {
                cart: c,
                product,
                quantity: 2,
                customer: None,
            },
            40,
        ));
    }
    for r in reps.iter_mut().take(2) {
        for a in &adds {
            deliver(r, a, 41);
        }
    }
    assert_eq!(reps[0].digest(), reps[1].digest());
    // R loses the first cart (a disk that lost a write).
    assert!(reps[0].forget_entry(&crdt_core::Key::Cart(cart)));
    assert_ne!(reps[0].digest(), reps[1].digest());
    // Meanwhile S removes the other cart's line; R has not seen it yet.
    let remove = local(
        &mut reps[1],
        Op::RemoveCartItem {
            cart: other_cart,
            product,
            customer: None,
        },
        42,
    );
    // R repairs from S.
    let base = reps[0].begin_repair();
    let snap = reps[1].repair_for(&differing(&base, &reps[1]));
    let newer = reps[1]
        .newer_than(base.version_vector(), usize::MAX)
        .expect("S's log holds its newer deltas");
    let out = reps[0]
        .merge_divergent(&snap, &newer, &base)
        .expect("fresh base");
    assert!(out.changed.contains(&crdt_core::Key::Cart(cart)));
    assert!(has_line(&reps[0], &cart, &product), "the lost line is back");
    assert!(
        !has_line(&reps[0], &other_cart, &product),
        "a line S removed must not survive on R"
    );
    // S repairs from R before R's state has anything S lacks: nothing to undo.
    let base = reps[1].begin_repair();
    let snap = reps[0].repair_for(&differing(&base, &reps[0]));
    let newer = reps[0]
        .newer_than(base.version_vector(), usize::MAX)
        .expect("R is not ahead");
    reps[1]
        .merge_divergent(&snap, &newer, &base)
        .expect("fresh base");
    assert!(!has_line(&reps[1], &other_cart, &product));
    deliver(&mut reps[0], &remove, 43);
    assert_eq!(reps[0].digest(), reps[1].digest());
}

#[test]
fn the_journal_records_only_while_a_repair_runs() {
    let (mut reps, product, cart) = three();
    let add = |r: &mut Replica, wall| {
        local(
            r,
            Op::AddToCart {
                cart,
                product,
                quantity: 1,
                customer: None,
            },
            wall,
        )
    };
    add(&mut reps[0], 50);
    let base = reps[0].begin_repair();
    add(&mut reps[0], 51);
    reps[0].abort_repair();
    let snap = reps[1].repair_for(&differing(&base, &reps[1]));
    assert!(
        reps[0].merge_repair(&snap, &base, 52).is_err(),
        "an aborted repair cannot be joined"
    );
    let _: Actor = reps[0].actor();
}
