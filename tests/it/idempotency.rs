//! Exactly-once writes with real node processes: a retried write replays on
//! the node that took it and, once replication caught up, on any other; a
//! checkout retried on the far side of a partition, or after a `kill -9`,
//! still ends as one order whose units are sold once.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::auth::Role;
use concord_node::http_client::{Answer, Client};
use concord_tests::{CLUSTER_LOCK, create, eventually};
use serde_json::{Value, json};

const ADDRESS: &str =
    r#"{"name": "A", "line1": "1 St", "city": "X", "postalCode": "1", "country": "US"}"#;

fn checkout(customer: &str, pid: &str, qty: u32) -> Value {
    json!({"customerId": customer, "lineItems": [{"productId": pid, "quantity": qty}],
           "shippingAddress": serde_json::from_str::<Value>(ADDRESS).unwrap()})
}

fn shopper(c: &ProcessCluster, i: usize, who: &str, key: &str) -> Client {
    Client::new(c.nodes[i].http)
        .with_token(c.token(Role::Customer, who))
        .with_header("Idempotency-Key", key)
}

fn replayed(a: &Answer) -> bool {
    a.headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn stock(c: &Client, sku: &str) -> u64 {
    let inv: Value = c
        .get(&format!("/api/v1/inventory/{sku}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    inv["stock"].as_u64().unwrap()
}

async fn orders_of(c: &Client, who: &str) -> Vec<Value> {
    let page: Value = c
        .get(&format!("/api/v1/orders?customerId={who}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

/// How many idempotency records node `i` wrote as deltas of their own.
async fn separate_records(c: &ProcessCluster, i: usize) -> f64 {
    let text = c.anonymous(i).get("/metrics").await.unwrap().text();
    concord_chaos::observe::metric(&text, "concord_writes_total{op=\"idempotency_record\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_replay_here_and_on_other_nodes() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(Spec::default()).await.unwrap();
    let pid = create(&c.client(0), "IDEM-1", 10).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();

    // A checkout and its retry on the same node: one order, one sale.
    let body = checkout("ida", &pid, 2);
    let first = shopper(&c, 0, "ida", "k-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(first.status.as_u16(), 201, "{}", first.text());
    assert!(!replayed(&first));
    let again = shopper(&c, 0, "ida", "k-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(again.status.as_u16(), 201, "{}", again.text());
    assert!(replayed(&again), "the retry is a replay");
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(again.headers.get("location"), first.headers.get("location"));
    // The same key with another request is refused.
    let other = shopper(&c, 0, "ida", "k-1")
        .post("/api/v1/orders", &checkout("ida", &pid, 3))
        .await
        .unwrap();
    assert_eq!(other.status.as_u16(), 422, "{}", other.text());
    assert!(other.text().contains("idempotency_key_reused"));
    // Keys are per caller: another customer's "k-1" is a new request.
    let bob = shopper(&c, 0, "bob", "k-1")
        .post("/api/v1/orders", &checkout("bob", &pid, 1))
        .await
        .unwrap();
    assert_eq!(bob.status.as_u16(), 201, "{}", bob.text());
    assert!(!replayed(&bob));

    // Once replicated, a retry on another node replays too.
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let far = shopper(&c, 2, "ida", "k-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(far.status.as_u16(), 201, "{}", far.text());
    assert!(
        replayed(&far),
        "replayed on another node: {:?}",
        far.headers
    );
    assert_eq!(far.body, first.body);
    assert_eq!(orders_of(&c.client(2), "ida").await.len(), 1);
    assert_eq!(stock(&c.client(2), "IDEM-1").await, 10 - 2 - 1);

    // A cart add retried is applied once.
    let cart = "/api/v1/carts/session-ida-1/items";
    let add = json!({"productId": pid, "quantity": 2});
    for _ in 0..3 {
        let a = shopper(&c, 1, "ida", "add-1")
            .post(cart, &add)
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
    let v: Value = c
        .client(1)
        .get("/api/v1/carts/session-ida-1")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["id"], "session-ida-1",
        "a cart keeps the name it was given"
    );
    assert_eq!(v["items"][0]["quantity"], 2, "{v}");
    // The answer's record rode in the add's own delta: no separate record.
    assert_eq!(separate_records(&c, 1).await, 0.0);

    // A 404 is final and replays; a 409 for stock is not recorded, so a
    // retry after a restock succeeds.
    let missing = json!({"productId": "0193aaaa-0000-7000-8000-000000000009", "quantity": 1});
    let a = shopper(&c, 1, "ida", "add-404")
        .post(cart, &missing)
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 404);
    let b = shopper(&c, 1, "ida", "add-404")
        .post(cart, &missing)
        .await
        .unwrap();
    assert!(replayed(&b) && b.status.as_u16() == 404);
    // A refusal has no write to ride in: its record is a delta of its own.
    assert_eq!(separate_records(&c, 1).await, 1.0);
    let big = checkout("ida", &pid, 50);
    let a = shopper(&c, 1, "ida", "big")
        .post("/api/v1/orders", &big)
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 409, "{}", a.text());
    let r = c
        .client(1)
        .post(
            "/api/v1/inventory/IDEM-1/restock",
            &json!({"quantity": 100}),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let b = shopper(&c, 1, "ida", "big")
        .post("/api/v1/orders", &big)
        .await
        .unwrap();
    assert_eq!(b.status.as_u16(), 201, "{}", b.text());
    assert!(!replayed(&b));

    // A bad key is a 400 naming the header.
    let bad = Client::new(c.nodes[0].http)
        .with_token(c.token(Role::Customer, "ida"))
        .with_header("Idempotency-Key", "")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(bad.status.as_u16(), 400);
    assert!(bad.text().contains("Idempotency-Key"), "{}", bad.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_retried_across_a_partition_is_sold_once() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(Spec {
        proxies: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let pid = create(&c.client(0), "IDEM-P", 0).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    for i in [0, 2] {
        let a = c
            .client(i)
            .post("/api/v1/inventory/IDEM-P/restock", &json!({"quantity": 5}))
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), 200);
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let ids = c.ids();
    c.faults.partition(&ids[..1], &ids[1..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first attempt lands on node 0; its answer is "lost" and the app
    // retries on node 2, which cannot hear node 0.
    let body = checkout("pat", &pid, 3);
    let a = shopper(&c, 0, "pat", "checkout-9")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    let b = shopper(&c, 2, "pat", "checkout-9")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(b.status.as_u16(), 201, "{}", b.text());
    let (va, vb): (Value, Value) = (a.json().unwrap(), b.json().unwrap());
    assert_eq!(va["id"], vb["id"], "both sides name one order");
    // While cut off, each side has sold it once.
    assert_eq!(stock(&c.client(0), "IDEM-P").await, 7);
    assert_eq!(stock(&c.client(2), "IDEM-P").await, 7);
    // A pay made on the side whose sale will lose carries over.
    let sellers = [va["node"].clone(), vb["node"].clone()];
    let pay = shopper(&c, 2, "pat", "pay-9")
        .post(
            &format!("/api/v1/orders/{}/pay", vb["id"].as_str().unwrap()),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(pay.status.as_u16(), 200, "{}", pay.text());
    c.faults.heal();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("converges after the heal");
    // After the heal: one order, paid, its units sold once everywhere.
    for i in 0..3 {
        let cl = c.client(i);
        let v = eventually(
            &cl,
            "/api/v1/inventory/IDEM-P",
            "the losing sale returned",
            |v| v["stock"] == 7,
        )
        .await;
        assert_eq!(v["stock"], 7, "node {i}");
        let orders = orders_of(&cl, "pat").await;
        assert_eq!(orders.len(), 1, "node {i}: {orders:?}");
        assert_eq!(orders[0]["status"], "paid", "node {i}");
        assert!(sellers.contains(&orders[0]["node"]));
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("converges after the return");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_retried_after_kill_9_is_one_order() {
    let _g = CLUSTER_LOCK.lock().await;
    // The first checkout asks node 0 for stock rights: give that all the
    // time a loaded test machine may need (this test is about the retry).
    let mut c = ProcessCluster::start(Spec {
        extra_toml: format!(
            "{}\n[replication]\nrights_timeout_ms = 15000\n",
            Spec::default().extra_toml
        ),
        ..Default::default()
    })
    .await
    .unwrap();
    let pid = create(&c.client(0), "IDEM-K", 10).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let body = checkout("kim", &pid, 4);
    let a = shopper(&c, 1, "kim", "kill-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    c.kill9(1).unwrap();
    // The retry goes to another node at once (replicated or not).
    let b = shopper(&c, 2, "kim", "kill-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert!(matches!(b.status.as_u16(), 200 | 201), "{}", b.text());
    let (va, vb): (Value, Value) = (a.json().unwrap(), b.json().unwrap());
    assert_eq!(va["id"], vb["id"]);
    c.restart(1).await.unwrap();
    // And once more on the node that was killed: it kept the record.
    let d = shopper(&c, 1, "kim", "kill-1")
        .post("/api/v1/orders", &body)
        .await
        .unwrap();
    assert!(replayed(&d), "{:?} {}", d.headers, d.text());
    assert_eq!(d.body, a.body);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .unwrap();
    for i in 0..3 {
        let cl = c.client(i);
        eventually(&cl, "/api/v1/inventory/IDEM-K", "sold once", |v| {
            v["stock"] == 6
        })
        .await;
        assert_eq!(orders_of(&cl, "kim").await.len(), 1, "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_checkout_retried_without_a_key_answers_its_order() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let pid = create(&c.client(0), "IDEM-C", 5).await;
    let me = Client::new(c.nodes[0].http).with_token(c.token(Role::Customer, "cara"));
    let a = me
        .post(
            "/api/v1/carts/cart-1/items",
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let body = json!({"customerId": "cara", "cartId": "cart-1",
        "shippingAddress": {"street": "1 Main St", "city": "Springfield", "state": "IL",
                            "zip": "62701", "country": "USA"}});
    let first = me.post("/api/v1/orders", &body).await.unwrap();
    assert_eq!(first.status.as_u16(), 201, "{}", first.text());
    let v: Value = first.json().unwrap();
    assert_eq!(v["shippingAddress"]["country"], "US");
    assert_eq!(v["shippingAddress"]["region"], "IL");
    assert_eq!(
        v["shippingAddress"]["name"], "cara",
        "the customer is the recipient"
    );
    let again = me.post("/api/v1/orders", &body).await.unwrap();
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    let w: Value = again.json().unwrap();
    assert_eq!(w["id"], v["id"]);
    assert_eq!(
        again.headers.get("location").and_then(|l| l.to_str().ok()),
        Some(format!("/api/v1/orders/{}", v["id"].as_str().unwrap()).as_str())
    );
    assert_eq!(stock(&c.client(0), "IDEM-C").await, 4);
    // Another customer's retry of that cart learns nothing of the order.
    let eve = Client::new(c.nodes[0].http).with_token(c.token(Role::Customer, "eve"));
    let mut body_eve = body.clone();
    body_eve["customerId"] = json!("eve");
    let e = eve.post("/api/v1/orders", &body_eve).await.unwrap();
    assert_eq!(e.status.as_u16(), 403, "{}", e.text());
}
