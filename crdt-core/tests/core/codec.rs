//! The codec: golden byte vectors for the types on disk and on the wire, the
//! size of typical deltas, and hostile bytes into every decoder.

use crdt_core::cart::CartEntry;
use crdt_core::codec::{self, DecodeError, Versioned};
use crdt_core::counter::BoundedCounter;
use crdt_core::delta::Delta;
use crdt_core::order::OrderEntry;
use crdt_core::replica::ReplicaMeta;
use crdt_core::state::ProductState;
use crdt_core::{CartId, Op, ProductId, RepairSnapshot, Replica, ReplicaConfig};
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::{actor, usd};

fn sample_replica() -> (Replica, Vec<Vec<u8>>) {
    let mut r = Replica::new(ReplicaConfig::new(actor("n1")));
    let p = ProductId(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001));
    let cart = CartId(Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888));
    let mut deltas = Vec::new();
    let mut push = |r: &mut Replica, op: Op, t: u64| {
        let a = r.apply_local(op, t).expect("applies");
        deltas.push(a.logged.bytes.to_vec());
    };
    push(
        &mut r,
        Op::CreateProduct {
            id: p,
            product: crdt_core::catalog::NewProduct {
                sku: "KB-01".into(),
                name: "Keyboard".into(),
                description: "Mechanical".into(),
                price: crdt_core::money::Money {
                    minor: 12_999,
                    currency: usd(),
                },
                category: "peripherals".into(),
                tags: vec!["usb".into()],
                attributes: Default::default(),
                embedding: None,
            },
            initial_stock: 10,
        },
        1_764_000_000_000,
    );
    push(
        &mut r,
        Op::AddToCart {
            cart,
            product: p,
            quantity: 1,
            customer: None,
        },
        1_764_000_000_001,
    );
    push(
        &mut r,
        Op::AddToCart {
            cart,
            product: p,
            quantity: 2,
            customer: None,
        },
        1_764_000_000_002,
    );
    (r, deltas)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Golden vectors: if one of these changes, the on-disk and wire format
/// changed, and old data would be misread — bump the revision instead.
#[test]
fn golden_delta_bytes() {
    let (_, deltas) = sample_replica();
    assert_eq!(
        hex(&deltas[1]),
        "434e43440301026e31000281d0dfb4ab3300000101111122223333444455556666777788880192000000007000800000000000000101"
    );
    assert_eq!(
        hex(&deltas[2]),
        "434e43440301026e31000382d0dfb4ab330001026e3100020101111122223333444455556666777788880192000000007000800000000000000103"
    );
    for d in &deltas {
        let back: Delta = codec::decode(d).expect("decodes");
        assert_eq!(&codec::encode(&back), d);
    }
}

/// A store or peer of an earlier build holds revision-1 or revision-2
/// deltas: they still read, as the same delta (the bytes below are those
/// revisions' golden vectors, whose body this revision keeps for every part
/// but orders).
#[test]
fn revision_one_and_two_deltas_still_read() {
    let (_, deltas) = sample_replica();
    for revision in [1, 2] {
        let mut old = deltas[2].clone();
        old[4] = revision;
        assert!(
            codec::decode::<Delta>(&old).is_err(),
            "the strict decoder refuses revision {revision}"
        );
        let back = Delta::decode(&old).expect("the upgrading decoder reads it");
        assert_eq!(codec::encode(&back), deltas[2]);
    }
}

/// The cart-add target: a delta of at most 64 bytes, envelope included.
#[test]
fn a_cart_add_delta_is_at_most_64_bytes() {
    let (_, deltas) = sample_replica();
    assert!(
        deltas[1].len() <= 64,
        "first add: {} bytes",
        deltas[1].len()
    );
    assert!(deltas[2].len() <= 64, "re-add: {} bytes", deltas[2].len());
}

fn all_decoders(bytes: &[u8]) {
    fn one<T: Versioned>(b: &[u8]) {
        let _ = codec::decode::<T>(b);
    }
    one::<Delta>(bytes);
    one::<ProductState>(bytes);
    one::<CartEntry>(bytes);
    one::<BoundedCounter>(bytes);
    one::<OrderEntry>(bytes);
    one::<ReplicaMeta>(bytes);
    one::<RepairSnapshot>(bytes);
    let _ = crdt_core::Key::from_bytes(bytes);
}

#[test]
fn truncated_and_other_version_bytes_are_refused() {
    let (r, deltas) = sample_replica();
    let mut samples = deltas.clone();
    for k in r.state().all_keys() {
        samples.extend(r.state().encode_entry(&k));
    }
    samples.push(codec::encode(&r.meta()));
    for s in &samples {
        for cut in 0..s.len() {
            all_decoders(&s[..cut]);
        }
        // Another revision of the same kind: refused, named.
        let mut other = s.clone();
        other[4] = other[4].wrapping_add(1);
        let e = codec::decode::<Delta>(&other);
        assert!(
            matches!(
                e,
                Err(DecodeError::UnknownVersion { .. }) | Err(DecodeError::WrongKind { .. })
            ),
            "{e:?}"
        );
    }
    // A delta truncated anywhere is an error, never a panic or a partial value.
    for cut in 0..deltas[0].len() {
        assert!(codec::decode::<Delta>(&deltas[0][..cut]).is_err());
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        all_decoders(&bytes);
        let mut with_header = b"CNCD".to_vec();
        with_header.extend_from_slice(&bytes);
        all_decoders(&with_header);
    }

    #[test]
    fn bit_flipped_deltas_never_panic(idx in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut r, deltas) = sample_replica();
        let mut d = deltas[0].clone();
        let i = idx.index(d.len());
        d[i] ^= 1 << bit;
        all_decoders(&d);
        // Even if a flipped delta decodes, merging it must not panic.
        let _ = r.merge_bytes(&d, 0);
    }
}
