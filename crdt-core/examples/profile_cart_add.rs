//! Profiling driver: 100k carts, then a million cart adds, timed. Run under
//! `perf record` to see where a cart add spends its time.

use crdt_core::catalog::NewProduct;
use crdt_core::money::{Currency, Money};
use crdt_core::{Actor, CartId, NodeId, Op, ProductId, Replica, ReplicaConfig};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let carts: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let ops: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut cfg = ReplicaConfig::new(Actor::first(NodeId::new("n1").expect("id")));
    // As in the benchmark: a log held at its bound, as on a node whose peers acknowledge.
    cfg.log_max_bytes = 8 << 20;
    let mut r = Replica::new(cfg);
    let pid = |i: usize| ProductId(Uuid::from_u128(0xAAAA_0000 + i as u128));
    let cid = |i: usize| {
        CartId(Uuid::from_u128(
            0xCCCC_0000_0000_0000 + (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    };
    for i in 0..1000 {
        let product = NewProduct {
            sku: format!("SKU-{i}"),
            name: format!("P{i}"),
            description: String::new(),
            price: Money {
                minor: 100,
                currency: Currency::new("USD").expect("usd"),
            },
            category: String::new(),
            tags: vec![],
            attributes: Default::default(),
            embedding: None,
        };
        r.apply_local(
            Op::CreateProduct {
                id: pid(i),
                product,
                initial_stock: 0,
            },
            1,
        )
        .expect("create");
    }
    // Carts of a few lines, as shoppers make them: cart c draws from 4 products.
    let add = |i: usize, c: usize| Op::AddToCart {
        cart: cid(c),
        product: pid((c * 3 + i % 4) % 1000),
        quantity: 1,
        customer: None,
    };
    for c in 0..carts {
        r.apply_local(add(c, c), 2).expect("add");
    }
    let t = std::time::Instant::now();
    for i in 0..ops {
        r.apply_local(add(i, i.wrapping_mul(7919) % carts), 3)
            .expect("add");
    }
    let e = t.elapsed();
    println!(
        "{carts} carts: {ops} cart adds in {e:?} = {:.0} ops/s",
        ops as f64 / e.as_secs_f64()
    );
}
