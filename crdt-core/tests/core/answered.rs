//! A write with the record of its answer in its own delta
//! (`Replica::apply_local_then`): one dot, one log entry, and a peer that
//! merges the delta has both or neither.

use crdt_core::idem::IdemRecord;
use crdt_core::{CartId, IdemKey, Key, Op, OpError, ProductId, Replica, ReplicaConfig};
use uuid::Uuid;

use crate::support::{Rng, Universe, actor};

fn record(body: &str) -> IdemRecord {
    IdemRecord {
        hlc: Default::default(),
        writer: actor("someone-else"),
        fingerprint: [7; 16],
        status: 200,
        location: None,
        body: Some(body.as_bytes().to_vec()),
    }
}

fn with_product(name: &str) -> (Replica, ProductId) {
    let u = Universe::new(1, 1);
    let mut r = Replica::new(ReplicaConfig::new(actor(name)));
    let product = u.products[0];
    r.apply_local(
        Op::CreateProduct {
            id: product,
            product: u.new_product(0, &mut Rng::new(1)),
            initial_stock: 5,
        },
        1_000,
    )
    .expect("creates");
    (r, product)
}

#[test]
fn the_record_rides_in_the_writes_own_delta_and_sees_the_write() {
    let (mut n1, product) = with_product("n1");
    let mut n2 = Replica::new(ReplicaConfig::new(actor("n2")));
    let missing = n1
        .missing_for(n2.version_vector(), usize::MAX)
        .expect("in the log");
    for l in missing {
        n2.merge_bytes(&l.bytes, 1_000).expect("decodes");
    }
    let cart = CartId(Uuid::from_u128(9));
    let key = IdemKey::new("alice", "add-1");
    let logged_before = n1.log().len();
    let (applied, lines) = n1
        .apply_local_then(
            Op::AddToCart {
                cart,
                product,
                quantity: 2,
                customer: Some("alice".into()),
            },
            2_000,
            |after| {
                // The answer is rendered from the state with the add in it.
                let lines = after
                    .state()
                    .carts
                    .get(&cart)
                    .map_or(0, |c| c.lines().count());
                (
                    lines,
                    Some((key, record(&format!("{{\"lines\":{lines}}}")))),
                )
            },
        )
        .expect("adds");
    assert_eq!(lines, 1, "the answer sees its own write");
    assert_eq!(
        n1.log().len(),
        logged_before + 1,
        "one delta, one log entry"
    );
    assert!(applied.changed.contains(&Key::Cart(cart)));
    assert!(applied.changed.contains(&Key::Idem(key)));
    let mine = n1.idem_record(&key, 2_000).expect("recorded").clone();
    assert_eq!(mine.writer, n1.actor(), "the writer is the delta's");
    assert_eq!(mine.hlc, applied.delta.hlc, "the stamp is the delta's");

    n2.merge_bytes(&applied.logged.bytes, 2_000)
        .expect("decodes");
    assert_eq!(n2.idem_record(&key, 2_000), Some(&mine));
    assert!(n2.state().carts.get(&cart).is_some());
    assert_eq!(n1.digest(), n2.digest());
}

#[test]
fn a_refused_write_records_nothing() {
    let (mut n1, _) = with_product("n1");
    let key = IdemKey::new("alice", "add-2");
    let missing = ProductId(Uuid::from_u128(77));
    let before = n1.digest();
    let err = n1
        .apply_local_then(
            Op::AddToCart {
                cart: CartId(Uuid::from_u128(9)),
                product: missing,
                quantity: 1,
                customer: None,
            },
            2_000,
            |_| ((), Some((key, record("{}")))),
        )
        .expect_err("no such product");
    assert_eq!(err, OpError::ProductNotFound(missing));
    assert!(n1.idem_record(&key, 2_000).is_none());
    assert_eq!(n1.digest(), before, "nothing changed");
}

#[test]
fn the_sweep_takes_expired_records_oldest_first_and_skips_replaced_ones() {
    let mut cfg = ReplicaConfig::new(actor("n1"));
    cfg.idem_window_ms = 10_000;
    let mut n1 = Replica::new(cfg.clone());
    cfg.actor = actor("n2");
    let mut n2 = Replica::new(cfg);
    let keys: Vec<IdemKey> = (0..10)
        .map(|i| IdemKey::new("alice", &format!("k{i}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let op = Op::Record {
            key: *key,
            record: Box::new(record("{}")),
        };
        n1.apply_local(op, 20_000 + 1_000 * i as u64)
            .expect("records");
    }
    // n2 answered k5 earlier: its record wins the join on n1.
    let op = Op::Record {
        key: keys[5],
        record: Box::new(record("{\"earlier\":true}")),
    };
    let early = n2.apply_local(op, 19_500).expect("records");
    n1.merge_bytes(&early.logged.bytes, 29_500)
        .expect("decodes");
    assert_eq!(n1.idem_record(&keys[5], 0).map(|r| r.hlc.ms), Some(19_500));

    let swept = |r: &mut Replica, now, max| -> Vec<IdemKey> {
        r.sweep_idem(now, max)
            .into_iter()
            .map(|k| match k {
                Key::Idem(k) => k,
                other => panic!("swept {other:?}"),
            })
            .collect()
    };
    // Past the window at 32,500: stamps below 22,500 (k5's is 19,500).
    assert_eq!(
        swept(&mut n1, 32_500, 100),
        vec![keys[5], keys[0], keys[1], keys[2]]
    );
    assert!(n1.idem_record(&keys[3], 32_500).is_some());
    // Bounded per call, oldest first; k5's replaced filing is skipped.
    assert_eq!(swept(&mut n1, 100_000, 2), vec![keys[3], keys[4]]);
    let rest = swept(&mut n1, 100_000, 100);
    assert_eq!(rest, keys[6..].to_vec());
    assert!(swept(&mut n1, 100_000, 100).is_empty());
    for k in &keys {
        assert!(n1.idem_record(k, 0).is_none());
    }
}
