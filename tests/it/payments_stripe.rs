//! The `stripe` adapter against a fake of Stripe's API (ours, the same
//! shapes): a payment-method id pays, a decline is a 402, 3-D Secure asks
//! for a second confirmation, capture on ship and refunds go through, a
//! timed-out call repeated charges once, card numbers never reach it, and
//! every request carries the secret key and an idempotency key.

use std::sync::atomic::Ordering;
use std::time::Duration;

use concord_tests::{InProcessNode, create};
use serde_json::{Value, json};

use crate::payments::{code, order, until_answered};
use crate::stripe_fake::{Fake, SECRET, intents_of};

async fn node(fake: &Fake, extra: &str) -> (InProcessNode, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "concord-sk-{}-{}",
        std::process::id(),
        fake.addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("stripe.key");
    std::fs::write(&key, SECRET).unwrap();
    let n = InProcessNode::start(&format!(
        "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[payments]\nprovider = \"stripe\"\napi_base = \"http://{}\"\nsecret_key_file = {:?}\n{extra}",
        fake.addr,
        key.display().to_string()
    ))
    .await
    .unwrap();
    (n, dir)
}

async fn pay_with(
    c: &concord_node::http_client::Client,
    o: &str,
    pm: &str,
) -> concord_node::http_client::Answer {
    c.post(
        &format!("/api/v1/orders/{o}/payments"),
        &json!({"paymentMethod": pm}),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_payments_declines_and_authentication() {
    let fake = Fake::start().await;
    let (n, dir) = node(&fake, "").await;
    let admin = n.admin();
    let alice = n.customer("alice");
    let pid = create(&admin, "TENT", 20).await;

    let o = order(&admin, "alice", &pid, 2).await;
    let a = pay_with(&alice, &o, "pm_card_visa").await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let v: Value = a.json().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    assert_eq!(v["payment"]["provider"], "stripe");
    assert!(
        v["payment"]["providerRef"]
            .as_str()
            .unwrap()
            .starts_with("pi_fake_")
    );
    let i = &intents_of(&fake, &o)[0];
    assert_eq!(
        (i["amount"].as_u64(), i["currency"].as_str()),
        (Some(2000), Some("usd"))
    );
    assert_eq!(i["metadata"]["attempt"], v["payment"]["attempt"]);

    let d = pay_with(
        &alice,
        &order(&admin, "alice", &pid, 1).await,
        "pm_card_chargeDeclined",
    )
    .await;
    assert_eq!(
        (d.status.as_u16(), code(&d).as_str()),
        (402, "payment_declined"),
        "{}",
        d.text()
    );
    assert!(d.text().contains("generic_decline"), "{}", d.text());

    let o3 = order(&admin, "alice", &pid, 1).await;
    let r: Value = pay_with(&alice, &o3, "pm_card_authenticationRequired")
        .await
        .json()
        .unwrap();
    assert_eq!(r["payment"]["status"], "requires_action");
    let done: Value = pay_with(&alice, &o3, "pm_card_authenticationRequired")
        .await
        .json()
        .unwrap();
    assert_eq!(done["status"], "paid");

    // A card number is for the test provider only: it never reaches Stripe.
    let calls = fake.books.lock().unwrap().calls.len();
    let card = alice
        .post(
            &format!(
                "/api/v1/orders/{}/payments",
                order(&admin, "alice", &pid, 1).await
            ),
            &crate::payments::card(crate::payments::OK),
        )
        .await
        .unwrap();
    assert_eq!(card.status.as_u16(), 400, "{}", card.text());
    assert!(card.text().contains("card"), "{}", card.text());
    assert_eq!(fake.books.lock().unwrap().calls.len(), calls);
    assert_eq!(
        fake.books.lock().unwrap().unauthorised,
        0,
        "every call carried the key"
    );
    assert_eq!(fake.charges(), 2);
    n.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_capture_on_ship_refunds_and_a_timeout_retried() {
    let fake = Fake::start().await;
    let (n, dir) = node(&fake, "capture = \"on_ship\"\ncall_timeout_ms = 300\n").await;
    let admin = n.admin();
    let alice = n.customer("alice");
    let pid = create(&admin, "STOVE", 20).await;
    let o = order(&admin, "alice", &pid, 3).await;
    // Stripe is slow: the first tries time out (503), the repeats resume.
    fake.latency_ms.store(700, Ordering::Relaxed);
    let first = pay_with(&alice, &o, "pm_card_visa").await;
    assert_eq!(
        (first.status.as_u16(), code(&first).as_str()),
        (503, "provider_unavailable"),
        "{}",
        first.text()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = until_answered(30, Duration::from_millis(400), || {
        pay_with(&alice, &o, "pm_card_visa")
    })
    .await;
    fake.latency_ms.store(0, Ordering::Relaxed);
    let v: Value = last.json().unwrap();
    assert_eq!(v["payment"]["status"], "requires_capture");
    assert_eq!(
        intents_of(&fake, &o).len(),
        1,
        "one intent for all the tries"
    );
    assert_eq!(fake.charges(), 0, "authorised, not captured");
    let s: Value = admin
        .post(&format!("/api/v1/orders/{o}/ship"), &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (s["status"].as_str(), s["payment"]["status"].as_str()),
        (Some("shipped"), Some("succeeded"))
    );
    assert_eq!(fake.charges(), 1);
    let r = admin
        .post(
            &format!("/api/v1/orders/{o}/refunds"),
            &json!({"amount": "5.00", "reason": "late"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let v: Value = r.json().unwrap();
    assert_eq!(
        (v["refunded"].clone(), v["refunds"][0]["status"].as_str()),
        (json!(5.0), Some("succeeded"))
    );
    assert!(
        v["refunds"][0]["providerRef"]
            .as_str()
            .unwrap()
            .starts_with("re_")
    );
    assert_eq!(intents_of(&fake, &o)[0]["amount_refunded"], 500);
    assert_eq!(
        fake.charges(),
        1,
        "one charge through timeouts, ship and refund"
    );
    n.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
