//! Model test of the bounded counter through whole replicas: random
//! restocks, checkouts, transfers and cancels on three nodes, with messages
//! withheld for a while and released later, and merges. After every step the
//! escrow invariants hold at every replica, and globally the units in live
//! orders never exceed the units ever restocked (the history is the model).

use std::collections::BTreeMap;

use crdt_core::money::Money;
use crdt_core::status::OrderStatus;
use crdt_core::{
    Actor, CartId, CheckoutItems, Op, OpError, OrderId, ProductId, Replica, ReplicaConfig, Sku,
};
use uuid::Uuid;

use crate::support::{Rng, actor, address, check_stock_invariants, usd};

const N: usize = 3;

fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let actors: Vec<Actor> = (0..N).map(|i| actor(&format!("m{i}"))).collect();
    let mut reps: Vec<Replica> = actors
        .iter()
        .map(|a| Replica::new(ReplicaConfig::new(*a)))
        .collect();
    let product = ProductId(Uuid::from_u128(7));
    let sku = Sku("WIDGET".into());
    // Create the product on node 0 and let everyone have it.
    let created = reps[0]
        .apply_local(
            Op::CreateProduct {
                id: product,
                product: crdt_core::catalog::NewProduct {
                    sku: sku.0.clone(),
                    name: "Widget".into(),
                    description: String::new(),
                    price: Money {
                        minor: 500,
                        currency: usd(),
                    },
                    category: String::new(),
                    tags: vec![],
                    attributes: Default::default(),
                    embedding: None,
                },
                initial_stock: 3,
            },
            1,
        )
        .expect("create");
    for r in reps.iter_mut().skip(1) {
        r.merge_bytes(&created.logged.bytes, 1).expect("decodes");
    }
    let mut restocked_total: u64 = 3;
    let mut held: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut orders: Vec<OrderId> = Vec::new();
    let mut next_order = 1u128;
    for step in 0..400u64 {
        let wall = 10 + step;
        let r = rng.below(N as u64) as usize;
        let op = match rng.below(10) {
            0 | 1 => {
                let q = 1 + rng.below(3);
                restocked_total += q;
                Some(Op::Restock {
                    sku: sku.clone(),
                    quantity: q,
                })
            }
            2..=4 => {
                next_order += 1;
                Some(Op::Checkout {
                    order: OrderId(Uuid::from_u128(next_order)),
                    customer: "c".into(),
                    items: CheckoutItems::Lines(vec![(product, 1 + rng.below(3) as u32)]),
                    shipping: address(),
                    email: None,
                })
            }
            5 => Some(Op::TransferRights {
                sku: sku.clone(),
                to: actors[rng.below(N as u64) as usize],
                quantity: 1 + rng.below(2),
            }),
            6 => orders
                .get(rng.below(orders.len().max(1) as u64) as usize)
                .map(|o| Op::MoveOrder {
                    order: *o,
                    to: [
                        OrderStatus::Cancelled,
                        OrderStatus::Paid,
                        OrderStatus::Shipped,
                    ][rng.below(3) as usize],
                }),
            7 => reps[r]
                .returns_due()
                .first()
                .map(|o| Op::ReturnUnits { order: *o }),
            8 => {
                // Release some withheld messages, in random order.
                for _ in 0..rng.below(held.len() as u64 + 1) {
                    let i = rng.below(held.len() as u64) as usize;
                    let (to, bytes) = held.swap_remove(i);
                    reps[to].merge_bytes(&bytes, wall).expect("decodes");
                }
                None
            }
            _ => {
                let o = rng.below(N as u64) as usize;
                let vv = reps[r].version_vector().clone();
                if let Ok(batch) = reps[o].missing_for(&vv, usize::MAX) {
                    for l in batch {
                        reps[r].merge_bytes(&l.bytes, wall).expect("decodes");
                    }
                }
                None
            }
        };
        if let Some(op) = op {
            let is_checkout = matches!(op, Op::Checkout { .. });
            match reps[r].apply_local(op, wall) {
                Ok(applied) => {
                    if is_checkout && let Some(crdt_core::Key::Order(id)) = applied.changed.last() {
                        orders.push(*id);
                    }
                    // Withhold each message with some probability.
                    for to in (0..N).filter(|&t| t != r) {
                        if rng.chance(40) {
                            held.push((to, applied.logged.bytes.to_vec()));
                        } else {
                            reps[to]
                                .merge_bytes(&applied.logged.bytes, wall)
                                .expect("decodes");
                        }
                    }
                }
                Err(OpError::InsufficientStock { held, needed, .. }) => assert!(held < needed),
                Err(_) => {}
            }
        }
        for rep in &reps {
            check_stock_invariants(rep).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
        }
        // The model: across the whole history, live units ≤ units restocked.
        let mut live: BTreeMap<OrderId, u64> = BTreeMap::new();
        for rep in &reps {
            for (id, o) in rep.state().orders.iter() {
                if let Some(h) = o.header() {
                    let units: u64 = h.lines.iter().map(|l| u64::from(l.quantity)).sum();
                    let st = reps
                        .iter()
                        .filter_map(|x| x.state().orders.get(id))
                        .map(|e| e.status.0)
                        .max();
                    if st.is_some_and(|s| s.is_live()) {
                        live.insert(*id, units);
                    }
                }
            }
        }
        let live_units: u64 = live.values().sum();
        assert!(
            live_units <= restocked_total,
            "seed {seed} step {step}: {live_units} live > {restocked_total} restocked"
        );
    }
    let _ = CartId(Uuid::nil());
}

#[test]
fn the_counter_never_oversells() {
    for seed in 0..200 {
        run(seed);
    }
}
