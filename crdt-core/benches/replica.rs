//! Throughput of the replica's two write paths — `apply_local` and `merge` —
//! for cart adds and product edits with 10k, 100k and 1M keys already in the
//! state; the cost of a digest after one change; and the encoded size of
//! typical deltas (printed before the timings).
//!
//! Run: `cargo bench -p crdt-core` (add `-- --sample-count 20` for a quicker run).

use std::cell::RefCell;

use crdt_core::catalog::{NewProduct, ProductPatch};
use crdt_core::money::{Currency, Money};
use crdt_core::order::Address;
use crdt_core::{
    Actor, CartId, CheckoutItems, NodeId, Op, OrderId, ProductId, Replica, ReplicaConfig,
};
use divan::Bencher;

/// The node's allocator, so these figures are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use divan::counter::ItemsCount;
use uuid::Uuid;

const SIZES: &[usize] = &[10_000, 100_000, 1_000_000];
/// Distinct products the carts draw from.
const CATALOG: usize = 1_000;
/// Operations per timed sample.
const BATCH: usize = 2_000;

fn actor(n: &str) -> Actor {
    Actor::first(NodeId::new(n).expect("valid"))
}

fn product_id(i: usize) -> ProductId {
    ProductId(Uuid::from_u128(0xAAAA_0000_0000_0000 + i as u128))
}

fn cart_id(i: usize) -> CartId {
    CartId(Uuid::from_u128(
        0xCCCC_0000_0000_0000_0000_0000 + i as u128 * 0x9E37_79B9,
    ))
}

fn new_product(i: usize) -> NewProduct {
    NewProduct {
        sku: format!("SKU-{i:07}"),
        name: format!("Product {i}"),
        description: "A fine product for benchmarks".into(),
        price: Money {
            minor: 1_999,
            currency: Currency::new("USD").expect("known"),
        },
        category: "bench".into(),
        tags: vec!["a".into(), "b".into()],
        attributes: Default::default(),
        embedding: None,
    }
}

fn cfg(a: Actor) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(a);
    // A log that stays at its bound, as on a node whose peers acknowledge
    // deltas: memory is recycled instead of growing through the run.
    c.log_max_bytes = 8 << 20;
    c
}

/// A replica holding `CATALOG` products and `carts` carts of one line each.
fn with_carts(carts: usize) -> Replica {
    let mut r = Replica::new(cfg(actor("n1")));
    for i in 0..CATALOG {
        r.apply_local(
            Op::CreateProduct {
                id: product_id(i),
                product: new_product(i),
                initial_stock: 1_000_000,
            },
            1,
        )
        .expect("create");
    }
    for c in 0..carts {
        r.apply_local(
            Op::AddToCart {
                cart: cart_id(c),
                product: product_id(c % CATALOG),
                quantity: 1,
                customer: None,
            },
            2,
        )
        .expect("add");
    }
    r
}

/// A replica holding `products` products.
fn with_products(products: usize) -> Replica {
    let mut r = Replica::new(cfg(actor("n1")));
    for i in 0..products {
        r.apply_local(
            Op::CreateProduct {
                id: product_id(i),
                product: new_product(i),
                initial_stock: 0,
            },
            1,
        )
        .expect("create");
    }
    r
}

/// The same state under another actor, rebuilt the way a node restarts.
fn as_actor(r: &Replica, a: Actor) -> Replica {
    let s = r.state();
    let entries: Vec<_> = s
        .all_keys()
        .into_iter()
        .filter_map(|k| s.encode_entry(&k).map(|b| (k, b)))
        .collect();
    Replica::restore(cfg(a), r.meta(), entries, Vec::<Vec<u8>>::new())
        .expect("restore")
        .0
}

/// A cart add to a random existing cart; each cart draws from four products,
/// so carts stay the size shoppers make them.
fn cart_add(i: usize, carts: usize) -> Op {
    let c = (i.wrapping_mul(7919)) % carts;
    Op::AddToCart {
        cart: cart_id(c),
        product: product_id((c * 3 + i % 4) % CATALOG),
        quantity: 1,
        customer: None,
    }
}

fn price_edit(i: usize, products: usize) -> Op {
    Op::UpdateProduct {
        id: product_id((i.wrapping_mul(7919)) % products),
        patch: ProductPatch {
            price: Some((
                Money {
                    minor: 1_000 + (i % 500) as u64,
                    currency: Currency::new("USD").expect("known"),
                },
                None,
            )),
            ..Default::default()
        },
    }
}

fn main() {
    print_delta_sizes();
    divan::main();
}

/// Encoded sizes of typical deltas, envelope included.
fn print_delta_sizes() {
    let mut r = with_carts(10);
    let first = r.apply_local(cart_add(10_001, 10), 3).expect("add");
    let again = r.apply_local(cart_add(10_001, 10), 4).expect("add");
    let price = r.apply_local(price_edit(3, CATALOG), 5).expect("edit");
    let checkout = r
        .apply_local(
            Op::Checkout {
                order: OrderId(Uuid::now_v7()),
                customer: "alice".into(),
                items: CheckoutItems::Cart(cart_id(0)),
                shipping: Address {
                    name: "Ada Lovelace".into(),
                    line1: "12 St James's Square".into(),
                    line2: None,
                    city: "London".into(),
                    region: None,
                    postal_code: "SW1Y 4JH".into(),
                    country: "GB".into(),
                },
                email: None,
            },
            6,
        )
        .expect("checkout");
    println!("encoded delta sizes (bytes, envelope included):");
    println!("  cart add, new line      {:>4}", first.logged.bytes.len());
    println!("  cart add, existing line {:>4}", again.logged.bytes.len());
    println!("  price change            {:>4}", price.logged.bytes.len());
    println!(
        "  checkout (1 line)       {:>4}",
        checkout.logged.bytes.len()
    );
}

/// Times `apply_local` of `op(1)`, `op(2)`, … on `r`.
fn bench_apply_local(bencher: Bencher, r: Replica, op: impl Fn(usize) -> Op) {
    let r = RefCell::new(r);
    let mut i = 0usize;
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let mut r = r.borrow_mut();
        for _ in 0..BATCH {
            i += 1;
            divan::black_box(r.apply_local(op(i), 10).ok());
        }
    });
}

/// Times `merge` of encoded deltas: `make()` twice gives a source and a
/// target that start equal; the target merges the source's deltas of
/// `op(1)`, `op(2)`, … in order.
fn bench_merge(bencher: Bencher, make: impl Fn() -> Replica, op: impl Fn(usize) -> Op) {
    let mut source = make();
    let target = RefCell::new(as_actor(&make(), actor("n2")));
    let deltas: Vec<_> = (0..BATCH * 40)
        .map(|i| {
            source
                .apply_local(op(i + 1), 10)
                .expect("applies")
                .logged
                .bytes
        })
        .collect();
    drop(source);
    let mut next = 0usize;
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let mut t = target.borrow_mut();
        for _ in 0..BATCH {
            let b = &deltas[next % deltas.len()];
            next += 1;
            divan::black_box(t.merge_bytes(b, 10).ok());
        }
    });
}

#[divan::bench(args = SIZES, sample_count = 30, sample_size = 1)]
fn cart_add_apply_local(bencher: Bencher, carts: usize) {
    bench_apply_local(bencher, with_carts(carts), |i| cart_add(i, carts));
}

#[divan::bench(args = SIZES, sample_count = 30, sample_size = 1)]
fn cart_add_merge(bencher: Bencher, carts: usize) {
    bench_merge(bencher, || with_carts(carts), |i| cart_add(i, carts));
}

#[divan::bench(args = SIZES, sample_count = 30, sample_size = 1)]
fn product_edit_apply_local(bencher: Bencher, products: usize) {
    bench_apply_local(bencher, with_products(products), |i| {
        price_edit(i, products)
    });
}

#[divan::bench(args = SIZES, sample_count = 30, sample_size = 1)]
fn product_edit_merge(bencher: Bencher, products: usize) {
    bench_merge(
        bencher,
        || with_products(products),
        |i| price_edit(i, products),
    );
}

/// One cart add, then the digest of the whole state: O(log n) work.
#[divan::bench(args = SIZES, sample_count = 30, sample_size = 100)]
fn digest_after_one_change(bencher: Bencher, carts: usize) {
    let r = RefCell::new(with_carts(carts));
    let mut i = 0usize;
    bencher.bench_local(|| {
        let mut r = r.borrow_mut();
        i += 1;
        r.apply_local(cart_add(i, carts), 10).ok();
        divan::black_box(r.digest())
    });
}
