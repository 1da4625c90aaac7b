//! Payments at the replica: the seller alone starts attempts and refunds,
//! observations merge idempotently, an authorised attempt makes the order
//! paid, and refunds never exceed the capture — however many are asked.

use crdt_core::ops::{PaymentChange, PaymentError};
use crdt_core::payment::{CaptureMode, Observation, PaymentStatus, RefundStatus};
use crdt_core::status::OrderStatus;
use crdt_core::{CheckoutItems, Op, OpError, OrderId, ProductId, Replica, ReplicaConfig};
use uuid::Uuid;

use crate::support::{actor, address, usd};

const T: u64 = 1_764_000_000_000;

/// A replica `n1` that sold order 1 (3 × 1000) and one `n2` that holds it.
fn sold() -> (Replica, Replica, OrderId) {
    let mut n1 = Replica::new(ReplicaConfig::new(actor("n1")));
    let mut n2 = Replica::new(ReplicaConfig::new(actor("n2")));
    let p = ProductId(Uuid::from_u128(1));
    let order = OrderId(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0009));
    let ops = [
        Op::CreateProduct {
            id: p,
            product: crdt_core::catalog::NewProduct {
                sku: "S-1".into(),
                name: "Tent".into(),
                description: String::new(),
                price: crdt_core::money::Money {
                    minor: 1000,
                    currency: usd(),
                },
                category: "c".into(),
                tags: vec![],
                attributes: Default::default(),
                embedding: None,
            },
            initial_stock: 10,
        },
        Op::Checkout {
            order,
            customer: "alice".into(),
            items: CheckoutItems::Lines(vec![(p, 3)]),
            shipping: address(),
            email: None,
        },
    ];
    for op in ops {
        let a = n1.apply_local(op, T).expect("applies");
        n2.merge((*a.delta).clone(), a.logged.bytes.clone(), T);
    }
    (n1, n2, order)
}

fn apply(
    r: &mut Replica,
    peer: &mut Replica,
    order: OrderId,
    change: PaymentChange,
) -> Result<(), OpError> {
    let a = r.apply_local(Op::Payment { order, change }, T + 1)?;
    peer.merge((*a.delta).clone(), a.logged.bytes.clone(), T + 1);
    Ok(())
}

fn start() -> PaymentChange {
    PaymentChange::Start {
        provider: "test".into(),
        capture: CaptureMode::Immediate,
        method: "visa 4242".into(),
    }
}

fn succeeded(amount: u64, event: Option<&str>) -> PaymentChange {
    PaymentChange::Observe {
        attempt: (actor("n1"), 1),
        observation: Observation {
            status: PaymentStatus::Succeeded,
            provider_ref: Some("pi_1".into()),
            captured_minor: amount,
            failure: None,
        },
        event: event.map(String::from),
    }
}

#[test]
fn only_the_seller_starts_an_attempt_and_one_at_a_time() {
    let (mut n1, mut n2, order) = sold();
    let refused = apply(&mut n2, &mut n1, order, start());
    assert!(
        matches!(refused, Err(OpError::NotSeller { .. })),
        "{refused:?}"
    );
    apply(&mut n1, &mut n2, order, start()).expect("the seller starts");
    let again = apply(&mut n1, &mut n2, order, start());
    assert_eq!(
        again,
        Err(OpError::Payment(PaymentError::InProgress {
            order,
            attempt: 1
        }))
    );
    let e = n2.state().orders.get(&order).expect("order");
    let a = &e.payments.attempts[&(actor("n1"), 1)];
    assert_eq!(a.status.0, PaymentStatus::Processing);
    assert_eq!(a.start.as_ref().map(|s| s.amount_minor), Some(3000));
}

#[test]
fn a_decline_ends_the_attempt_and_the_next_one_pays_the_order() {
    let (mut n1, mut n2, order) = sold();
    apply(&mut n1, &mut n2, order, start()).expect("starts");
    let declined = PaymentChange::Observe {
        attempt: (actor("n1"), 1),
        observation: Observation {
            status: PaymentStatus::Failed,
            provider_ref: Some("pi_1".into()),
            captured_minor: 0,
            failure: Some("card_declined".into()),
        },
        event: None,
    };
    apply(&mut n1, &mut n2, order, declined).expect("observes");
    assert_eq!(
        n1.state().orders.get(&order).expect("o").status.0,
        OrderStatus::Placed
    );
    apply(&mut n1, &mut n2, order, start()).expect("a second attempt");
    let paid = PaymentChange::Observe {
        attempt: (actor("n1"), 2),
        observation: Observation {
            status: PaymentStatus::Succeeded,
            provider_ref: Some("pi_2".into()),
            captured_minor: 3000,
            failure: None,
        },
        event: None,
    };
    // The observation lands on n2 (a webhook) and pays the order there.
    apply(&mut n2, &mut n1, order, paid).expect("observes");
    for r in [&n1, &n2] {
        let e = r.state().orders.get(&order).expect("o");
        assert_eq!(e.status.0, OrderStatus::Paid);
        assert_eq!(e.payments.captured(), 3000);
    }
    assert_eq!(
        apply(&mut n1, &mut n2, order, start()),
        Err(OpError::Payment(PaymentError::AlreadyPaid(order)))
    );
}

#[test]
fn a_provider_event_merges_once() {
    let (mut n1, mut n2, order) = sold();
    apply(&mut n1, &mut n2, order, start()).expect("starts");
    apply(&mut n2, &mut n1, order, succeeded(3000, Some("evt_1"))).expect("first delivery");
    assert_eq!(
        apply(&mut n1, &mut n2, order, succeeded(3000, Some("evt_1"))),
        Err(OpError::Payment(PaymentError::EventSeen("evt_1".into())))
    );
    // The same observation without a new event changes nothing.
    assert_eq!(
        apply(&mut n1, &mut n2, order, succeeded(3000, None)),
        Err(OpError::Unchanged)
    );
}

#[test]
fn refunds_never_exceed_the_capture() {
    let (mut n1, mut n2, order) = sold();
    apply(&mut n1, &mut n2, order, start()).expect("starts");
    apply(&mut n1, &mut n2, order, succeeded(3000, None)).expect("captures");
    let refund = |amount| PaymentChange::StartRefund {
        amount,
        reason: "damaged".into(),
    };
    // Only the actor holding the capture refunds it.
    assert!(matches!(
        apply(&mut n2, &mut n1, order, refund(Some(100))),
        Err(OpError::NotSeller { .. })
    ));
    apply(&mut n1, &mut n2, order, refund(Some(2000))).expect("a partial refund");
    assert_eq!(
        apply(&mut n1, &mut n2, order, refund(Some(1001))),
        Err(OpError::Payment(PaymentError::ExceedsCapture {
            asked: 1001,
            remaining: 1000
        }))
    );
    // A failed refund frees its amount again.
    let failed = PaymentChange::ObserveRefund {
        refund: (actor("n1"), 1),
        status: RefundStatus::Failed,
        provider_ref: None,
        event: None,
    };
    apply(&mut n1, &mut n2, order, failed).expect("observes");
    apply(&mut n1, &mut n2, order, refund(None)).expect("refunds all that remains");
    let e = n2.state().orders.get(&order).expect("o");
    assert_eq!(e.payments.refunded_of((actor("n1"), 1)), 3000);
    assert_eq!(
        apply(&mut n1, &mut n2, order, refund(None)),
        Err(OpError::Payment(PaymentError::ExceedsCapture {
            asked: 0,
            remaining: 0
        }))
    );
}
