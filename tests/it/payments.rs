//! Payments against an in-process node: each of Stripe's test cards,
//! capture on ship, refunds bounded by the capture, a cancel that gives the
//! money back by itself, provider webhooks verified and merged once, a
//! provider timeout retried without a second charge, and every bad input
//! refused naming its field.

use std::time::Duration;

use concord_node::http_client::{Answer, Client};
use concord_node::payments::webhook;
use concord_tests::{InProcessNode, create, eventually};
use serde_json::{Value, json};

/// Payments with the test provider, and nothing else in the way.
pub fn config(extra: &str) -> String {
    format!(
        "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[payments]\nprovider = \"test\"\n{extra}"
    )
}

pub const OK: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";
pub const NO_FUNDS: &str = "4000000000009995";
pub const THREE_DS: &str = "4000002760003184";

pub fn card(number: &str) -> Value {
    json!({"card": {"number": number, "expMonth": 12, "expYear": 2034, "cvc": "123"}})
}

pub fn address() -> Value {
    json!({"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"})
}

/// Places an order of `qty` units of `pid` (10.00 each) for `customer`.
pub async fn order(c: &Client, customer: &str, pid: &str, qty: u32) -> String {
    let a = c
        .post(
            "/api/v1/orders",
            &json!({"customerId": customer, "lineItems": [{"productId": pid, "quantity": qty}], "shippingAddress": address()}),
        )
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    a.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn pay(c: &Client, order: &str, number: &str) -> Answer {
    c.post(&format!("/api/v1/orders/{order}/payments"), &card(number))
        .await
        .unwrap()
}

/// Repeats `ask` while it answers 503 `provider_unavailable` or
/// `seller_unreachable` — a repeat is safe, that is the point — `gap`
/// apart, at most `tries` times; returns the first other answer, which must
/// be a 200.
pub async fn until_answered<F, Fut>(tries: usize, gap: Duration, mut ask: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut last = ask().await;
    for _ in 0..tries {
        if last.status.as_u16() != 503 {
            break;
        }
        tokio::time::sleep(gap).await;
        last = ask().await;
    }
    assert_eq!(last.status.as_u16(), 200, "{}", last.text());
    last
}

pub fn code(a: &Answer) -> String {
    a.json::<Value>()
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The test provider's ledger entries for `order` on the node `admin` talks to.
pub async fn ledger(admin: &Client, order: &str) -> Vec<Value> {
    let v: Value = admin
        .get("/api/v1/payments/test/ledger")
        .await
        .unwrap()
        .json()
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["order"] == order)
        .cloned()
        .collect()
}

/// Σ charges over the ledger entries of `order`.
pub fn charges(entries: &[Value]) -> u64 {
    entries.iter().map(|e| e["charges"].as_u64().unwrap()).sum()
}

/// A Stripe-shaped event about an order's attempt, and its signature.
pub fn intent_event(
    id: &str,
    order: &str,
    attempt: &str,
    pi: &str,
    status: &str,
    received: u64,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "type": format!("payment_intent.{status}"),
        "data": {"object": {
            "id": pi, "object": "payment_intent", "status": status,
            "amount_received": received,
            "metadata": {"order": order, "attempt": attempt}
        }}
    }))
    .unwrap()
}

pub async fn deliver(c: &Client, secret: &[u8], body: &[u8], t: u64) -> Answer {
    c.clone()
        .with_header("Stripe-Signature", webhook::sign(secret, t, body))
        .send_raw(
            concord_node::http_client::Method::POST,
            "/api/v1/payments/webhooks/test",
            Some((body.to_vec(), "application/json")),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_test_card_pays_declines_or_asks_for_authentication() {
    let n = InProcessNode::start(&config("")).await.unwrap();
    let admin = n.admin();
    let alice = n.customer("alice");
    let pid = create(&admin, "TENT-2P", 100).await;

    // 4242: paid at once, captured, one charge.
    let o1 = order(&admin, "alice", &pid, 2).await;
    let a = pay(&alice, &o1, OK).await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let v: Value = a.json().unwrap();
    assert_eq!(v["status"], "paid");
    assert_eq!(v["payment"]["status"], "succeeded");
    assert_eq!(v["payment"]["method"], "visa 4242");
    assert_eq!(v["payment"]["provider"], "test");
    assert_eq!(v["captured"], json!(20.0));
    assert!(!a.text().contains(OK), "the card number never comes back");
    // Paying again changes nothing and charges nothing.
    assert_eq!(pay(&alice, &o1, OK).await.status.as_u16(), 200);
    assert_eq!(charges(&ledger(&admin, &o1).await), 1);

    // Declined, then insufficient funds: 402 each, the order still placed;
    // each attempt ends and the next card pays.
    let o2 = order(&admin, "alice", &pid, 1).await;
    let d = pay(&alice, &o2, DECLINED).await;
    assert_eq!(
        (d.status.as_u16(), code(&d).as_str()),
        (402, "card_declined"),
        "{}",
        d.text()
    );
    let f = pay(&alice, &o2, NO_FUNDS).await;
    assert_eq!(
        (f.status.as_u16(), code(&f).as_str()),
        (402, "insufficient_funds"),
        "{}",
        f.text()
    );
    let v: Value = alice
        .get(&format!("/api/v1/orders/{o2}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "placed");
    assert_eq!(v["payment"]["status"], "failed");
    assert_eq!(v["payment"]["failure"], "insufficient_funds");
    let p = pay(&alice, &o2, OK).await;
    assert_eq!(p.status.as_u16(), 200, "{}", p.text());
    let v: Value = p.json().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["attempts"].as_u64()),
        (Some("paid"), Some(3))
    );
    assert_eq!(charges(&ledger(&admin, &o2).await), 1);

    // 3-D Secure: requires_action, and the confirmation after the shopper
    // authenticated pays.
    let o3 = order(&admin, "alice", &pid, 1).await;
    let r = pay(&alice, &o3, THREE_DS).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let v: Value = r.json().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["status"].as_str()),
        (Some("placed"), Some("requires_action"))
    );
    let done: Value = pay(&alice, &o3, THREE_DS).await.json().unwrap();
    assert_eq!(
        (done["status"].as_str(), done["payment"]["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );

    // A cancel after the capture refunds it, by itself.
    let c = alice
        .post(&format!("/api/v1/orders/{o1}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(c.status.as_u16(), 200, "{}", c.text());
    let v = eventually(
        &admin,
        &format!("/api/v1/orders/{o1}"),
        "the automatic refund",
        |v| v["refunded"] == json!(20.0),
    )
    .await;
    assert_eq!(v["refunds"][0]["reason"], "order cancelled");
    assert_eq!(ledger(&admin, &o1).await[0]["refundedMinor"], 2000);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_waits_for_the_ship_and_refunds_never_exceed_it() {
    let n = InProcessNode::start(&config("capture = \"on_ship\"\n"))
        .await
        .unwrap();
    let admin = n.admin();
    let alice = n.customer("alice");
    let pid = create(&admin, "STOVE", 100).await;
    let o = order(&admin, "alice", &pid, 3).await;
    let v: Value = pay(&alice, &o, OK).await.json().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["status"].as_str()),
        (Some("paid"), Some("requires_capture"))
    );
    assert_eq!(v["captured"], json!(0.0));
    let refund = |body: Value| {
        let admin = admin.clone();
        let o = o.clone();
        async move {
            admin
                .post(&format!("/api/v1/orders/{o}/refunds"), &body)
                .await
                .unwrap()
        }
    };
    let early = refund(json!({"amount": "1.00", "reason": "early"})).await;
    assert_eq!(
        (early.status.as_u16(), code(&early).as_str()),
        (409, "nothing_captured"),
        "{}",
        early.text()
    );
    let s = admin
        .post(&format!("/api/v1/orders/{o}/ship"), &json!({}))
        .await
        .unwrap();
    assert_eq!(s.status.as_u16(), 200, "{}", s.text());
    let v: Value = s.json().unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["status"].as_str()),
        (Some("shipped"), Some("succeeded"))
    );
    assert_eq!(v["captured"], json!(30.0));

    // Partial, then more than remains (409), then all that remains.
    let r = refund(json!({"amount": "12.50", "reason": "one burner broken"})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let over = refund(json!({"amount": "17.51", "reason": "too much"})).await;
    assert_eq!(
        (over.status.as_u16(), code(&over).as_str()),
        (409, "refund_exceeds_capture"),
        "{}",
        over.text()
    );
    let rest: Value = refund(json!({"reason": "returned"})).await.json().unwrap();
    assert_eq!(rest["refunded"], json!(30.0));
    assert_eq!(rest["refunds"].as_array().unwrap().len(), 2);
    let none = refund(json!({"reason": "again"})).await;
    assert_eq!(none.status.as_u16(), 409, "{}", none.text());
    let l = ledger(&admin, &o).await;
    assert_eq!(
        (l[0]["charges"].as_u64(), l[0]["refundedMinor"].as_u64()),
        (Some(1), Some(3000))
    );

    // An authorised order cancelled before the ship releases its hold.
    let o2 = order(&admin, "alice", &pid, 1).await;
    assert_eq!(pay(&alice, &o2, OK).await.status.as_u16(), 200);
    alice
        .post(&format!("/api/v1/orders/{o2}/cancel"), &json!({}))
        .await
        .unwrap();
    eventually(
        &admin,
        &format!("/api/v1/orders/{o2}"),
        "the released authorisation",
        |v| v["payment"]["status"] == "canceled",
    )
    .await;
    assert_eq!(charges(&ledger(&admin, &o2).await), 0);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_timeout_is_retried_without_a_second_charge() {
    let n = InProcessNode::start(&config("test_latency_ms = 1200\ncall_timeout_ms = 400\n"))
        .await
        .unwrap();
    let admin = n.admin();
    let alice = n.customer("alice");
    let pid = create(&admin, "PAD", 10).await;
    let o = order(&admin, "alice", &pid, 1).await;
    // The create call outlasts the deadline: 503, safe to repeat.
    let first = pay(&alice, &o, OK).await;
    assert_eq!(
        (first.status.as_u16(), code(&first).as_str()),
        (503, "provider_unavailable"),
        "{}",
        first.text()
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let last = until_answered(20, Duration::from_millis(700), || pay(&alice, &o, OK)).await;
    assert_eq!(last.json::<Value>().unwrap()["status"], "paid");
    let l = ledger(&admin, &o).await;
    assert_eq!(l.len(), 1, "one intent: {l:?}");
    assert_eq!(charges(&l), 1);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_webhooks_are_verified_and_merge_once() {
    let dir = std::env::temp_dir().join(format!("concord-whsec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("webhook.secret");
    let secret = b"whsec_test_0123456789abcdef";
    std::fs::write(&secret_file, secret).unwrap();
    let n = InProcessNode::start(&config(&format!(
        "webhook_secret_file = {:?}\n",
        secret_file.display().to_string()
    )))
    .await
    .unwrap();
    let admin = n.admin();
    let alice = n.customer("alice");
    let anon = n.anonymous();
    let pid = create(&admin, "LAMP", 10).await;
    let o = order(&admin, "alice", &pid, 1).await;
    let v: Value = pay(&alice, &o, THREE_DS).await.json().unwrap();
    assert_eq!(v["payment"]["status"], "requires_action");
    let (attempt, pi) = (
        v["payment"]["attempt"].as_str().unwrap().to_string(),
        v["payment"]["providerRef"].as_str().unwrap().to_string(),
    );
    let now = concord_node::clock::now_secs();
    let body = intent_event("evt_1", &o, &attempt, &pi, "succeeded", 1000);

    // Forged, stale, unsigned, oversized, or for another provider: refused.
    let forged = deliver(&anon, b"whsec_not_the_secret_at_all", &body, now).await;
    assert_eq!(
        (forged.status.as_u16(), code(&forged).as_str()),
        (400, "invalid_signature")
    );
    let stale = deliver(&anon, secret, &body, now - 301).await;
    assert_eq!(stale.status.as_u16(), 400, "{}", stale.text());
    let unsigned = anon
        .send_raw(
            concord_node::http_client::Method::POST,
            "/api/v1/payments/webhooks/test",
            Some((body.clone(), "application/json")),
        )
        .await
        .unwrap();
    assert_eq!(unsigned.status.as_u16(), 400);
    let big = vec![b' '; webhook::MAX_BODY + 1];
    assert_eq!(deliver(&anon, secret, &big, now).await.status.as_u16(), 413);
    let other = anon
        .clone()
        .with_header("Stripe-Signature", webhook::sign(secret, now, &body))
        .send_raw(
            concord_node::http_client::Method::POST,
            "/api/v1/payments/webhooks/paypal",
            Some((body.clone(), "application/json")),
        )
        .await
        .unwrap();
    assert_eq!(
        (other.status.as_u16(), code(&other).as_str()),
        (404, "unknown_provider")
    );
    let bad_meta = intent_event("evt_2", &o, "not-an-attempt", &pi, "succeeded", 1000);
    let bm = deliver(&anon, secret, &bad_meta, now).await;
    assert_eq!(bm.status.as_u16(), 400, "{}", bm.text());
    assert!(bm.text().contains("metadata.attempt"), "{}", bm.text());
    let v: Value = admin
        .get(&format!("/api/v1/orders/{o}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "placed", "nothing refused changed the order");

    // The real one merges; its repetition is a duplicate.
    let ok = deliver(&anon, secret, &body, now).await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text());
    assert_eq!(
        ok.json::<Value>().unwrap(),
        json!({"received": true, "merged": true, "duplicate": false})
    );
    let again = deliver(&anon, secret, &body, now).await;
    assert_eq!(again.json::<Value>().unwrap()["duplicate"], true);
    let v: Value = admin
        .get(&format!("/api/v1/orders/{o}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"]["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    n.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payment_input_is_refused_naming_the_field() {
    let n = InProcessNode::start(&config("")).await.unwrap();
    let admin = n.admin();
    let alice = n.customer("alice");
    let bob = n.customer("bob");
    let pid = create(&admin, "MUG", 10).await;
    let o = order(&admin, "alice", &pid, 1).await;
    let path = format!("/api/v1/orders/{o}/payments");
    let with = |number: &str, month: u32, year: u32, cvc: &str| json!({"card": {"number": number, "expMonth": month, "expYear": year, "cvc": cvc}});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "letters",
            with("4242abcd42424242", 12, 2034, "123"),
            400,
            "card.number",
        ),
        ("short", with("4242", 12, 2034, "123"), 400, "card.number"),
        (
            "luhn",
            with("4242424242424241", 12, 2034, "123"),
            400,
            "Luhn",
        ),
        ("month", with(OK, 13, 2034, "123"), 400, "card.expMonth"),
        ("year", with(OK, 12, 2001, "123"), 400, "card.expYear"),
        ("cvc", with(OK, 12, 2034, "1"), 400, "card.cvc"),
        (
            "both",
            json!({"card": card(OK)["card"], "paymentMethod": "pm_1"}),
            400,
            "exactly one",
        ),
        ("neither", json!({}), 400, "exactly one"),
        (
            "token on test",
            json!({"paymentMethod": "pm_card_visa"}),
            400,
            "paymentMethod",
        ),
        (
            "unknown field",
            json!({"card": card(OK)["card"], "amount": 1}),
            400,
            "amount",
        ),
        (
            "bad type",
            json!({"card": {"number": 4242, "expMonth": 1, "expYear": 2034, "cvc": "1"}}),
            400,
            "card.number",
        ),
    ];
    for (what, body, want, needle) in cases {
        let a = alice.post(&path, &body).await.unwrap();
        assert_eq!(a.status.as_u16(), want, "{what}: {}", a.text());
        assert!(a.text().contains(needle), "{what}: {}", a.text());
    }
    // Another customer's order is unknown to them; nobody anonymous pays.
    assert_eq!(pay(&bob, &o, OK).await.status.as_u16(), 404);
    assert_eq!(pay(&n.anonymous(), &o, OK).await.status.as_u16(), 401);
    let bogus = pay(&alice, "not-an-id", OK).await;
    assert_eq!(bogus.status.as_u16(), 400, "{}", bogus.text());
    // The provider's ledger is the admin's.
    let l = alice.get("/api/v1/payments/test/ledger").await.unwrap();
    assert_eq!(l.status.as_u16(), 403, "{}", l.text());
    let l = n
        .anonymous()
        .get("/api/v1/payments/test/ledger")
        .await
        .unwrap();
    assert_eq!(l.status.as_u16(), 401, "{}", l.text());
    // With payments configured, a customer cannot mark an order paid.
    let p = alice
        .post(&format!("/api/v1/orders/{o}/pay"), &json!({}))
        .await
        .unwrap();
    assert_eq!(p.status.as_u16(), 403, "{}", p.text());
    // Refunds: admins only, and their fields checked.
    let rpath = format!("/api/v1/orders/{o}/refunds");
    assert_eq!(
        alice
            .post(&rpath, &json!({"reason": "x"}))
            .await
            .unwrap()
            .status
            .as_u16(),
        403
    );
    for (what, body, needle) in [
        ("amount", json!({"amount": "abc", "reason": "x"}), "amount"),
        ("zero", json!({"amount": "0", "reason": "x"}), "amount"),
        ("negative", json!({"amount": "-1", "reason": "x"}), "amount"),
        ("no reason", json!({"amount": "1"}), "reason"),
        ("empty reason", json!({"reason": ""}), "reason"),
    ] {
        let a = admin.post(&rpath, &body).await.unwrap();
        assert_eq!(a.status.as_u16(), 400, "{what}: {}", a.text());
        assert!(a.text().contains(needle), "{what}: {}", a.text());
    }
    let unpaid = admin.post(&rpath, &json!({"reason": "x"})).await.unwrap();
    assert_eq!(
        (unpaid.status.as_u16(), code(&unpaid).as_str()),
        (409, "nothing_captured")
    );
    // Nothing above changed the order.
    let v: Value = admin
        .get(&format!("/api/v1/orders/{o}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (v["status"].as_str(), v["payment"].is_null()),
        (Some("placed"), true),
        "{v}"
    );
    n.stop().await;
}
