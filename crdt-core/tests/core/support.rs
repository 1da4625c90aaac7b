//! Shared test support: a seeded RNG, actors, and a generator of random but
//! valid domain operations.

use crdt_core::catalog::{NewProduct, ProductPatch};
use crdt_core::idem::IdemRecord;
use crdt_core::money::{Currency, Money};
use crdt_core::order::Address;
use crdt_core::status::OrderStatus;
use crdt_core::{
    Actor, CartId, CheckoutItems, IdemKey, NodeId, Op, OrderId, ProductId, Replica, Sku,
};
use uuid::Uuid;

/// SplitMix64: a tiny deterministic generator, so a seed replays a run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len() as u64) as usize])
        }
    }
}

pub fn actor(name: &str) -> Actor {
    Actor::first(NodeId::new(name).expect("valid node id"))
}

pub fn usd() -> Currency {
    Currency::new("USD").expect("USD is known")
}

pub fn address() -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: None,
        city: "London".into(),
        region: None,
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

/// A small fixed universe of ids, so random ops collide often.
pub struct Universe {
    pub products: Vec<ProductId>,
    pub carts: Vec<CartId>,
    pub skus: Vec<String>,
    pub customers: Vec<String>,
}

impl Universe {
    pub fn new(products: usize, carts: usize) -> Self {
        Self {
            products: (0..products)
                .map(|i| ProductId(Uuid::from_u128(0x1000 + i as u128)))
                .collect(),
            carts: (0..carts)
                .map(|i| CartId(Uuid::from_u128(0x2000 + i as u128)))
                .collect(),
            skus: (0..products).map(|i| format!("SKU-{i}")).collect(),
            customers: vec!["alice".into(), "bob".into(), "carol".into()],
        }
    }

    pub fn new_product(&self, i: usize, rng: &mut Rng) -> NewProduct {
        NewProduct {
            sku: self.skus[i].clone(),
            name: format!("Product {i} v{}", rng.below(1000)),
            description: "A thing".into(),
            price: Money {
                minor: 100 + rng.below(10_000),
                currency: usd(),
            },
            category: ["tools", "books", "garden"][rng.below(3) as usize].to_string(),
            tags: vec![],
            attributes: Default::default(),
            embedding: None,
        }
    }
}

/// A random operation that has a fair chance of being valid on `r`.
/// An account operation over a small universe: 6 account ids sharing 3
/// e-mails (so concurrent registrations of one e-mail happen), 60 session
/// ids (more than an account keeps), rotations, revocations, failed logins,
/// profile, disable and address-book writes.
/// A payment operation on an order this replica holds: start an attempt,
/// observe one (as an answer or a webhook, possibly a duplicate), refund.
fn payment_op(r: &Replica, rng: &mut Rng) -> Option<Op> {
    use crdt_core::ops::PaymentChange;
    use crdt_core::payment::{CaptureMode, Observation, PaymentStatus, RefundStatus};
    let orders: Vec<crdt_core::OrderId> = r.state().orders.iter().map(|(k, _)| *k).collect();
    let order = *rng.pick(&orders)?;
    let entry = r.state().orders.get(&order)?;
    let attempts: Vec<_> = entry.payments.attempts.keys().copied().collect();
    let refunds: Vec<_> = entry.payments.refunds.keys().copied().collect();
    let event = rng.chance(50).then(|| format!("evt_{}", rng.below(4)));
    let change = match rng.below(4) {
        0 => PaymentChange::Start {
            provider: "test".into(),
            capture: CaptureMode::Immediate,
            method: "visa 4242".into(),
        },
        1 => {
            let attempt = *rng.pick(&attempts)?;
            let status = [
                PaymentStatus::RequiresAction,
                PaymentStatus::RequiresCapture,
                PaymentStatus::Failed,
                PaymentStatus::Succeeded,
            ][rng.below(4) as usize];
            let amount = entry.header().map_or(0, |h| h.total_minor);
            PaymentChange::Observe {
                attempt,
                observation: Observation {
                    status,
                    provider_ref: Some(format!("pi_{}", attempt.1)),
                    captured_minor: if status == PaymentStatus::Succeeded {
                        amount
                    } else {
                        0
                    },
                    failure: None,
                },
                event,
            }
        }
        2 => PaymentChange::StartRefund {
            amount: rng.chance(50).then(|| 1 + rng.below(300)),
            reason: "r".into(),
        },
        _ => PaymentChange::ObserveRefund {
            refund: *rng.pick(&refunds)?,
            status: if rng.chance(70) {
                RefundStatus::Succeeded
            } else {
                RefundStatus::Failed
            },
            provider_ref: Some("re_1".into()),
            event,
        },
    };
    Some(Op::Payment { order, change })
}

fn account_op(r: &Replica, rng: &mut Rng) -> Op {
    use crdt_core::ops::AccountChange;
    use crdt_core::{AccountId, AddressId, SessionId};
    let n = rng.below(6) as u128;
    let id = AccountId(Uuid::from_u128(0x5000 + n));
    let session = SessionId(Uuid::from_u128(0x6000 + rng.below(60) as u128));
    let live: Vec<(SessionId, u32)> = r
        .account(&id)
        .map(|e| {
            e.sessions
                .iter()
                .filter(|(_, s)| !s.revoked)
                .map(|(k, s)| (*k, s.rotation.generation))
                .collect()
        })
        .unwrap_or_default();
    let change = match rng.below(9) {
        0 | 1 => AccountChange::Register {
            email: format!("user{}@example.com", n % 3),
            name: "N".into(),
            password_hash: format!("hash-{n}"),
            role: crdt_core::account::AccountRole::Customer,
            session: Some(session),
            cart: None,
        },
        2 => AccountChange::StartSession {
            session,
            cart: None,
        },
        3 => match rng.pick(&live) {
            Some((s, g)) => AccountChange::Rotate {
                session: *s,
                from: *g,
            },
            None => AccountChange::FailedLogin,
        },
        4 => AccountChange::Revoke {
            sessions: rng.pick(&live).map(|(s, _)| vec![*s]).unwrap_or_default(),
        },
        5 => AccountChange::FailedLogin,
        6 => AccountChange::SetName(format!("name {}", rng.below(4))),
        7 => AccountChange::SetDisabled(rng.chance(50)),
        _ => AccountChange::PutAddress {
            id: AddressId(Uuid::from_u128(0x7000 + rng.below(3) as u128)),
            address: rng.chance(70).then(address),
        },
    };
    Op::Account { id, change }
}

pub fn random_op(
    r: &Replica,
    u: &Universe,
    others: &[Actor],
    rng: &mut Rng,
    order_seq: &mut u128,
) -> Op {
    let pi = rng.below(u.products.len() as u64) as usize;
    let product = u.products[pi];
    let cart = *rng.pick(&u.carts).expect("carts");
    let customer = if rng.chance(50) {
        Some(rng.pick(&u.customers).expect("customers").clone())
    } else {
        None
    };
    if rng.chance(12) {
        return account_op(r, rng);
    }
    if rng.chance(8)
        && let Some(op) = payment_op(r, rng)
    {
        return op;
    }
    match rng.below(100) {
        0..=11 => Op::CreateProduct {
            id: product,
            product: u.new_product(pi, rng),
            initial_stock: rng.below(4),
        },
        12..=19 => Op::UpdateProduct {
            id: product,
            patch: ProductPatch {
                name: rng
                    .chance(50)
                    .then(|| format!("Renamed {}", rng.below(100))),
                price: rng.chance(50).then(|| {
                    (
                        Money {
                            minor: rng.below(5000),
                            currency: usd(),
                        },
                        Some("sale".into()),
                    )
                }),
                tags: rng.chance(30).then(|| vec![format!("t{}", rng.below(5))]),
                ..Default::default()
            },
        },
        20..=23 => Op::DeleteProduct { id: product },
        24..=33 => Op::Restock {
            sku: Sku(u.skus[pi].clone()),
            quantity: 1 + rng.below(5),
        },
        34..=38 => Op::TransferRights {
            sku: Sku(u.skus[pi].clone()),
            to: *rng.pick(others).unwrap_or(&r.actor()),
            quantity: 1 + rng.below(3),
        },
        39..=55 => Op::AddToCart {
            cart,
            product,
            quantity: 1 + rng.below(3) as u32,
            customer,
        },
        56..=61 => Op::SetCartItem {
            cart,
            product,
            quantity: rng.below(4) as u32,
            customer,
        },
        62..=66 => Op::RemoveCartItem {
            cart,
            product,
            customer,
        },
        67..=79 => {
            *order_seq += 1;
            let owner = r
                .state()
                .carts
                .get(&cart)
                .and_then(|c| c.customer().map(str::to_string));
            // Some checkouts carry an idempotency key from a small set, so
            // two nodes that have not heard of each other's sale both sell
            // the same order id.
            let order = if rng.chance(40) {
                let who = owner.as_deref().unwrap_or("alice");
                OrderId::for_checkout(who, &format!("key-{}", rng.below(4)))
            } else {
                OrderId(Uuid::from_u128(*order_seq))
            };
            let items = if rng.chance(50) {
                CheckoutItems::Cart(cart)
            } else {
                CheckoutItems::Lines(vec![(product, 1 + rng.below(3) as u32)])
            };
            Op::Checkout {
                order,
                customer: owner.unwrap_or_else(|| "alice".into()),
                items,
                shipping: address(),
                email: None,
            }
        }
        80..=94 => {
            let orders: Vec<OrderId> = r.state().orders.iter().map(|(k, _)| *k).collect();
            let order = rng
                .pick(&orders)
                .copied()
                .unwrap_or(OrderId(Uuid::from_u128(1)));
            let to = [
                OrderStatus::Paid,
                OrderStatus::Cancelled,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
            ][rng.below(4) as usize];
            Op::MoveOrder { order, to }
        }
        95..=96 => Op::Record {
            key: IdemKey::new("alice", &format!("key-{}", rng.below(6))),
            record: Box::new(IdemRecord {
                hlc: Default::default(),
                writer: r.actor(),
                fingerprint: [rng.below(3) as u8; 16],
                status: 201,
                location: None,
                body: Some(format!("{{\"n\":{}}}", rng.below(9)).into_bytes()),
            }),
        },
        _ => {
            let due = r.returns_due();
            match rng.pick(&due) {
                Some(order) => Op::ReturnUnits { order: *order },
                None => Op::Restock {
                    sku: Sku(u.skus[pi].clone()),
                    quantity: 1,
                },
            }
        }
    }
}

/// A replica as its store would bring it back: every entry, the metadata
/// and every delta the log holds, through their encoded forms, with the same
/// log bound.
pub fn persisted(r: &Replica) -> Replica {
    let s = r.state();
    let entries: Vec<_> = s
        .all_keys()
        .into_iter()
        .filter_map(|k| s.encode_entry(&k).map(|b| (k, b)))
        .collect();
    let mut log = Vec::new();
    for (actor, floor) in r.log().floors() {
        for seq in floor + 1..=r.version_vector().get(&actor) {
            if let Some(l) = r.log().get(&crdt_core::Dot::new(actor, seq)) {
                log.push(l.bytes.to_vec());
            }
        }
    }
    let mut cfg = crdt_core::ReplicaConfig::new(r.actor());
    cfg.log_max_bytes = r.log().max_bytes();
    let (restored, stale) = Replica::restore(cfg, r.meta(), entries, log).expect("restore");
    assert!(stale.is_empty(), "a log within its bound restores whole");
    restored
}

/// After a heal: every sale of an order other than the one that won has
/// given its units back (or shipped: goods that left stay sold), so each
/// checkout is sold once.
pub fn check_sold_once(r: &Replica) -> Result<(), String> {
    for (id, o) in r.state().orders.iter() {
        let Some(w) = o.header() else { continue };
        for seller in o.sales.keys() {
            let cancelled = o.status.0 == OrderStatus::Cancelled;
            if (*seller != w.seller || cancelled)
                && !o.returned.contains(seller)
                && !o.shipped.contains(seller)
            {
                return Err(format!(
                    "{}: order {id}: {seller}'s sale lost to {} but its units are not back",
                    r.actor(),
                    w.seller
                ));
            }
        }
    }
    Ok(())
}

/// The refund invariant at one replica: no attempt has more refunded (or
/// reserved for refunds) than it captured.
pub fn check_refunds_within_capture(r: &Replica) -> Result<(), String> {
    for (id, o) in r.state().orders.iter() {
        for (aid, a) in &o.payments.attempts {
            let refunded = o.payments.refunded_of(*aid);
            if refunded > a.captured_minor.0 {
                return Err(format!(
                    "{}: order {id}: attempt {aid:?} refunded {refunded} of {} captured",
                    r.actor(),
                    a.captured_minor.0
                ));
            }
        }
    }
    Ok(())
}

/// The escrow invariants at one replica: no actor's rights below zero, stock
/// not below zero, and Σ units in live orders ≤ Σ restocked, per SKU.
pub fn check_stock_invariants(r: &Replica) -> Result<(), String> {
    let mut live_units: std::collections::BTreeMap<String, u64> = Default::default();
    for (_, o) in r.state().orders.iter() {
        if let Some(h) = o.header()
            && o.status.0.is_live()
        {
            for (sku, units) in h.units_by_sku() {
                *live_units.entry(sku).or_insert(0) += units;
            }
        }
    }
    for (sku, c) in r.state().stock.iter() {
        if c.stock_exact() < 0 {
            return Err(format!(
                "{}: stock of {sku} is {}",
                r.actor(),
                c.stock_exact()
            ));
        }
        for (a, _) in c.rights_by_actor() {
            if c.rights_exact(&a) < 0 {
                return Err(format!(
                    "{}: rights of {a} on {sku} are {}",
                    r.actor(),
                    c.rights_exact(&a)
                ));
            }
        }
        let live = live_units.remove(&sku.0).unwrap_or(0);
        if u128::from(live) > u128::from(c.total_restocked()) {
            return Err(format!(
                "{}: {live} units of {sku} in live orders but only {} restocked",
                r.actor(),
                c.total_restocked()
            ));
        }
    }
    if let Some((sku, units)) = live_units.into_iter().find(|(_, u)| *u > 0) {
        return Err(format!(
            "{}: {units} units of {sku} in live orders, no stock counter",
            r.actor()
        ));
    }
    Ok(())
}

/// Applies `op` at `wall`; about one time in four (as `rng` decides) with
/// the record of an answer rendered from the new state attached to the
/// op's own delta, as a write under an `Idempotency-Key` does.
pub fn apply_maybe_answered(
    r: &mut Replica,
    op: Op,
    wall: u64,
    rng: &mut Rng,
) -> Result<crdt_core::Applied, crdt_core::OpError> {
    if !rng.chance(25) {
        return r.apply_local(op, wall);
    }
    let key = IdemKey::new("alice", &format!("key-{}", rng.below(6)));
    let fingerprint = [rng.below(3) as u8; 16];
    r.apply_local_then(op, wall, |after| {
        let record = IdemRecord {
            hlc: Default::default(),
            writer: after.actor(),
            fingerprint,
            status: 200,
            location: None,
            body: Some(format!("{{\"orders\":{}}}", after.state().orders.len()).into_bytes()),
        };
        ((), Some((key, record)))
    })
    .map(|(applied, ())| applied)
}
