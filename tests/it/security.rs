//! Each attack of the security review, run against a real node, with the
//! answer a user must be able to rely on: no customer data without the
//! right token, no event to the wrong audience, no forged client address, no oracle on other
//! customers' carts and orders, no tying up stock or storage, no metric
//! series per made-up method, no deceptive names, hardened headers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use concord_node::auth::Role;
use concord_tests::InProcessNode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw request text and returns what the server answered until it
/// closed the connection or `wait` passed.
pub(crate) async fn raw(addr: SocketAddr, request: &str, wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The events a subscriber with `token` receives in `wait`.
async fn events(addr: SocketAddr, token: Option<&str>, extra: &str, wait: Duration) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw(
        addr,
        &format!("GET /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n"),
        wait,
    )
    .await
}

async fn product(n: &InProcessNode, sku: &str, stock: u64) -> String {
    concord_tests::create(&n.admin(), sku, stock).await
}

fn address() -> Value {
    json!({"name": "A", "line1": "1 St", "city": "X", "postalCode": "1", "country": "US"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_needs_an_admin_token_and_status_shows_no_customer_data() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 0\n")
        .await
        .expect("node");
    let paths = [
        "/api/v1/cluster/tree?keyspace=orders&level=0&index=0",
        "/api/v1/cluster/bucket?keyspace=orders&bucket=0",
        "/api/v1/cluster/diff?a=n1&b=n1",
        "/api/v1/cluster/nodes",
    ];
    for p in paths {
        let a = n.anonymous().get(p).await.expect("answers");
        assert_eq!(a.status.as_u16(), 401, "anonymous {p}: {}", a.text());
        let a = n.customer("mallory").get(p).await.expect("answers");
        assert_eq!(a.status.as_u16(), 403, "customer {p}: {}", a.text());
        // An admin gets past the check (this in-process node's config names
        // an address nobody listens on, so a fan-out may answer 503).
        let a = n.admin().get(p).await.expect("answers");
        assert!(
            a.status.is_success() || a.status.as_u16() == 503,
            "admin {p}: {}",
            a.text()
        );
    }
    // Status stays public, and holds no customer data: no keys, no carts.
    let pid = product(&n, "SEC-1", 5).await;
    let cart = uuid::Uuid::new_v4();
    let a = n
        .customer("alice")
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let st = n
        .anonymous()
        .get("/api/v1/cluster/status")
        .await
        .expect("answers");
    assert!(st.status.is_success());
    assert!(!st.text().contains(&cart.to_string()));
    assert!(!st.text().contains("alice"));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_only_to_their_audience_and_streams_are_bounded() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 0\nmax_event_subscribers = 3\n")
        .await
        .expect("node");
    let pid = product(&n, "EVT-1", 5).await;
    let (alice_cart, bob_cart) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for (who, cart) in [("alice", alice_cart), ("bob", bob_cart)] {
        let a = n
            .customer(who)
            .post(
                &format!("/api/v1/carts/{cart}/items"),
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .expect("answers");
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
    let order: Value = n
        .customer("alice")
        .post(
            "/api/v1/orders",
            &json!({"customerId": "alice", "cartId": alice_cart, "shippingAddress": address()}),
        )
        .await
        .expect("answers")
        .json()
        .expect("json");
    let order_id = order["id"].as_str().expect("order").to_string();
    // Replays from the start of the ring: what each audience sees.
    let replay = "Last-Event-ID: 0\r\n";
    let wait = Duration::from_millis(700);
    let anon = events(n.addr, None, replay, wait).await;
    assert!(
        anon.contains("EVT-1") || anon.contains(&pid),
        "the catalog is public: {anon}"
    );
    for secret in [
        alice_cart.to_string(),
        bob_cart.to_string(),
        order_id.clone(),
    ] {
        assert!(
            !anon.contains(&secret),
            "an anonymous stream shows {secret}"
        );
    }
    assert!(!anon.contains("event: peer") && !anon.contains("event: digest"));
    let alice_token = n.token(Role::Customer, "alice");
    let alice = events(n.addr, Some(&alice_token), replay, wait).await;
    assert!(
        alice.contains(&alice_cart.to_string()),
        "alice sees her cart"
    );
    assert!(alice.contains(&order_id), "alice sees her order");
    assert!(
        !alice.contains(&bob_cart.to_string()),
        "alice sees bob's cart"
    );
    let admin_token = n.token(Role::Admin, "admin");
    let admin = events(n.addr, Some(&admin_token), replay, wait).await;
    assert!(admin.contains(&bob_cart.to_string()) && admin.contains("event: digest"));
    // The largest id a client can send does not crash or replay anything.
    let far = events(
        n.addr,
        None,
        "Last-Event-ID: 18446744073709551615\r\n",
        wait,
    )
    .await;
    assert_eq!(status_of(&far), 200, "{far}");
    // Past the cap, another stream gets 503.
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(n.addr).await.expect("connect");
        s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut b = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
        open.push(s);
    }
    let fourth = events(n.addr, None, "", Duration::from_millis(500)).await;
    assert_eq!(status_of(&fourth), 503, "{fourth}");
    drop(open);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let req = |xff: &str| {
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
        )
    };
    // Untrusted: every forged address shares the connection's bucket.
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 1\nrate_limit_burst = 3\n")
        .await
        .expect("node");
    let mut limited = 0;
    for i in 0..8 {
        let a = raw(
            n.addr,
            &req(&format!("203.0.113.{i}")),
            Duration::from_secs(2),
        )
        .await;
        limited += usize::from(status_of(&a) == 429);
    }
    assert!(
        limited >= 4,
        "forged X-Forwarded-For bought fresh buckets ({limited} of 8 limited)"
    );
    n.stop().await;
    // Behind a trusted proxy, each client has its own bucket.
    let n = InProcessNode::start(
        "[http]\nrate_limit_per_sec = 1\nrate_limit_burst = 3\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    )
    .await
    .expect("node");
    for i in 0..8 {
        let a = raw(
            n.addr,
            &req(&format!("203.0.113.{i}")),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(status_of(&a), 200, "client {i} behind the proxy: {a}");
    }
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_and_per_token_limits_hold() {
    let n = InProcessNode::start(
        "[http]\nrate_limit_per_sec = 1000\ntoken_rate_limit_per_sec = 2\ntoken_rate_limit_burst = 3\n[http.route_limits]\n\"GET /api/v1/products/{id}\" = { per_sec = 1, burst = 2 }\n",
    )
    .await
    .expect("node");
    let pid = uuid::Uuid::new_v4();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            n.anonymous()
                .get(&format!("/api/v1/products/{pid}"))
                .await
                .expect("answers")
                .status
                .as_u16(),
        );
    }
    assert!(
        codes.contains(&429) && codes[0] == 404,
        "route limit: {codes:?}"
    );
    let a = n
        .anonymous()
        .get("/api/v1/products")
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "other routes are not limited by it");
    let mut limited = 0;
    for _ in 0..8 {
        let a = n
            .customer("greedy")
            .get("/api/v1/orders")
            .await
            .expect("answers");
        limited += usize::from(a.status.as_u16() == 429);
    }
    assert!(limited >= 3, "per-token limit: {limited} of 8 limited");
    let a = n
        .customer("other")
        .get("/api/v1/orders")
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "another token is not limited by it");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_oracle_on_other_customers_carts_and_orders() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 0\n")
        .await
        .expect("node");
    let pid = product(&n, "ORA-1", 5).await;
    let other = product(&n, "ORA-2", 5).await;
    let cart = uuid::Uuid::new_v4();
    let alice = n.customer("alice");
    let a = alice
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200);
    let bob = n.customer("bob");
    let tries = [
        bob.delete(&format!("/api/v1/carts/{cart}/items/{pid}"))
            .await,
        bob.delete(&format!("/api/v1/carts/{cart}/items/{other}"))
            .await,
        bob.put(
            &format!("/api/v1/carts/{cart}/items/{pid}"),
            &json!({"quantity": 2}),
        )
        .await,
        bob.put(
            &format!("/api/v1/carts/{cart}/items/{other}"),
            &json!({"quantity": 0}),
        )
        .await,
        bob.post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 999_999_999u64}),
        )
        .await,
    ];
    for (i, t) in tries.into_iter().enumerate() {
        let t = t.expect("answers");
        assert_eq!(t.status.as_u16(), 403, "try {i}: {}", t.text());
    }
    let order: Value = alice
        .post(
            "/api/v1/orders",
            &json!({"customerId": "alice", "cartId": cart, "shippingAddress": address()}),
        )
        .await
        .expect("answers")
        .json()
        .expect("json");
    let oid = order["id"].as_str().expect("id");
    let theirs = bob
        .get(&format!("/api/v1/orders/{oid}"))
        .await
        .expect("answers");
    let missing = bob
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::now_v7()))
        .await
        .expect("answers");
    assert_eq!(
        theirs.status,
        missing.status,
        "{} vs {}",
        theirs.text(),
        missing.text()
    );
    assert_eq!(theirs.status.as_u16(), 404);
    let cancel = bob
        .post(&format!("/api/v1/orders/{oid}/cancel"), &json!({}))
        .await
        .expect("answers");
    assert_eq!(cancel.status.as_u16(), 404, "{}", cancel.text());
    // A cart only an admin wrote shows a customer what a missing one does.
    let merchant = uuid::Uuid::new_v4();
    let a = n
        .admin()
        .post(
            &format!("/api/v1/carts/{merchant}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200);
    let unclaimed: Value = bob
        .get(&format!("/api/v1/carts/{merchant}"))
        .await
        .expect("answers")
        .json()
        .expect("json");
    let missing: Value = bob
        .get(&format!("/api/v1/carts/{}", uuid::Uuid::new_v4()))
        .await
        .expect("answers")
        .json()
        .expect("json");
    assert_eq!(unclaimed["items"], json!([]), "{unclaimed}");
    assert_eq!(unclaimed["items"], missing["items"]);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_cannot_tie_up_stock_or_storage() {
    let n = InProcessNode::start(
        "[http]\nrate_limit_per_sec = 0\n[limits]\nmax_cart_lines = 2\nmax_open_orders_per_customer = 2\nunpaid_order_ttl_secs = 10\n",
    )
    .await
    .expect("node");
    let ps = [
        product(&n, "FAIR-1", 10).await,
        product(&n, "FAIR-2", 10).await,
        product(&n, "FAIR-3", 10).await,
    ];
    let cart = uuid::Uuid::new_v4();
    let c = n.customer("hoarder");
    for (i, p) in ps.iter().enumerate() {
        let a = c
            .post(
                &format!("/api/v1/carts/{cart}/items"),
                &json!({"productId": p, "quantity": 1}),
            )
            .await
            .expect("answers");
        let want = if i < 2 { 200 } else { 409 };
        assert_eq!(a.status.as_u16(), want, "line {i}: {}", a.text());
        if i == 2 {
            assert!(a.text().contains("cart_full"), "{}", a.text());
        }
    }
    let buy = |p: &str| json!({"customerId": "hoarder", "lineItems": [{"productId": p, "quantity": 3}], "shippingAddress": address()});
    for i in 0..3 {
        let a = c
            .post("/api/v1/orders", &buy(&ps[0]))
            .await
            .expect("answers");
        let want = if i < 2 { 201 } else { 409 };
        assert_eq!(a.status.as_u16(), want, "order {i}: {}", a.text());
    }
    let inv: Value = n
        .anonymous()
        .get("/api/v1/inventory/FAIR-1")
        .await
        .expect("inv")
        .json()
        .expect("json");
    assert_eq!(inv["stock"], 4, "two unpaid orders hold 6 units");
    // Unpaid past their time, the seller cancels them and the units return.
    let t = Instant::now();
    loop {
        let inv: Value = n
            .anonymous()
            .get("/api/v1/inventory/FAIR-1")
            .await
            .expect("inv")
            .json()
            .expect("json");
        if inv["stock"] == 10 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "units still held: {inv}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page: Value = c
        .get("/api/v1/orders")
        .await
        .expect("orders")
        .json()
        .expect("json");
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|o| o["status"] == "cancelled"),
        "{page}"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_names_and_headers() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 0\n")
        .await
        .expect("node");
    for m in ["FROBNICATE", "XYZZY", "PLUGH"] {
        let _ = raw(
            n.addr,
            &format!("{m} /api/v1/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            Duration::from_secs(2),
        )
        .await;
    }
    let _ = n.anonymous().get("/no/such/route/at/all").await;
    let metrics = n.anonymous().get("/metrics").await.expect("metrics").text();
    for m in ["FROBNICATE", "XYZZY", "PLUGH", "/no/such"] {
        assert!(!metrics.contains(m), "{m} became a metric label");
    }
    assert!(metrics.contains("method=\"OTHER\""));
    // Names that display as something else are refused, naming the field.
    for evil in [
        "Sale\u{202E}gnp.exe",
        "Zero\u{200B}width",
        "\u{2066}isolate",
    ] {
        let a = n
            .admin()
            .post(
                "/api/v1/products",
                &json!({"name": evil, "sku": "EVIL-1", "price": "1.00", "currency": "USD"}),
            )
            .await
            .expect("answers");
        assert_eq!(a.status.as_u16(), 400, "{}", a.text());
        assert!(a.text().contains("name"), "{}", a.text());
    }
    // The console and the API carry the hardening headers.
    let page = n.anonymous().get("/").await.expect("console");
    for h in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
    ] {
        assert!(page.headers.contains_key(h), "the console lacks {h}");
    }
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    n.stop().await;
}
