//! What a storefront brings, tried as a new user would: conditional
//! requests, ids of the wrong shape, client-named carts, CORS from a
//! configured origin, and request ids.

use concord_node::http_client::{Client, Method};
use concord_tests::InProcessNode;
use serde_json::{Value, json};

const SHOP: &str = "https://shop.example.com";

async fn node() -> InProcessNode {
    InProcessNode::start(&format!(
        "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\ncors_origins = [\"{SHOP}\"]\n"
    ))
    .await
    .expect("node starts")
}

fn etag(a: &concord_node::http_client::Answer) -> String {
    a.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn etags_change_with_the_representation_and_guard_writes() {
    let n = node().await;
    let admin = n.admin();
    let a = admin
        .post(
            "/api/v1/products",
            &json!({"name": "Mug", "sku": "MUG-1", "price": "9.00", "currency": "USD", "initialQuantity": 3}),
        )
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    let pid = a.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/products/{pid}");
    let first = admin.get(&path).await.unwrap();
    let e1 = etag(&first);
    assert!(e1.starts_with('"'), "an ETag: {:?}", first.headers);
    // Unchanged: 304 with no body.
    let same = admin
        .clone()
        .with_header("If-None-Match", &e1)
        .get(&path)
        .await
        .unwrap();
    assert_eq!(same.status.as_u16(), 304);
    assert!(same.body.is_empty());
    // A restock changes only the stock, and the product's ETag with it.
    let r = admin
        .post("/api/v1/inventory/MUG-1/restock", &json!({"quantity": 2}))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let after = admin
        .clone()
        .with_header("If-None-Match", &e1)
        .get(&path)
        .await
        .unwrap();
    assert_eq!(
        after.status.as_u16(),
        200,
        "stock moved, so the representation did"
    );
    let e2 = etag(&after);
    assert_ne!(e1, e2);
    // If-Match: a stale ETag is refused with 412 and changes nothing; the
    // current one passes.
    let patch = json!({"name": "Big mug"});
    let stale = admin
        .clone()
        .with_header("If-Match", &e1)
        .send(Method::PATCH, &path, Some(&patch))
        .await
        .unwrap();
    assert_eq!(stale.status.as_u16(), 412, "{}", stale.text());
    assert_eq!(etag(&stale), e2, "the 412 names the current ETag");
    let now: Value = admin.get(&path).await.unwrap().json().unwrap();
    assert_eq!(now["name"], "Mug", "a refused precondition writes nothing");
    let ok = admin
        .clone()
        .with_header("If-Match", &e2)
        .send(Method::PATCH, &path, Some(&patch))
        .await
        .unwrap();
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.text());
    // Carts and orders carry ETags too.
    let alice = n.customer("alice");
    let c = alice
        .post(
            "/api/v1/carts/cart-1/items",
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .unwrap();
    assert_eq!(c.status.as_u16(), 200, "{}", c.text());
    let cart = alice.get("/api/v1/carts/cart-1").await.unwrap();
    let ec = etag(&cart);
    assert!(!ec.is_empty());
    let stale_cart = alice
        .clone()
        .with_header("If-Match", "\"0000\"")
        .send(
            Method::PUT,
            &format!("/api/v1/carts/cart-1/items/{pid}"),
            Some(&json!({"quantity": 5})),
        )
        .await
        .unwrap();
    assert_eq!(stale_cart.status.as_u16(), 412, "{}", stale_cart.text());
    n.stop().await;
}

#[tokio::test]
async fn wrong_shapes_are_404s_and_new_shapes_are_read() {
    let n = node().await;
    let admin = n.admin();
    for (path, code) in [
        ("/api/v1/products/not-a-uuid", "product_not_found"),
        ("/api/v1/orders/12", "order_not_found"),
        ("/api/v1/carts/has%20space", "cart_not_found"),
    ] {
        let a = admin.get(path).await.unwrap();
        assert_eq!(a.status.as_u16(), 404, "{path}: {}", a.text());
        assert!(a.text().contains(code), "{path}: {}", a.text());
    }
    // A cart named by the client; a bad name on a write is a 400 naming it.
    let bob = n.customer("bob");
    let bad = bob
        .post(
            &format!("/api/v1/carts/{}/items", "x".repeat(65)),
            &json!({"productId": "0193aaaa-0000-7000-8000-000000000001", "quantity": 1}),
        )
        .await
        .unwrap();
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.text());
    assert!(bad.text().contains("cartId"), "{}", bad.text());
    // An unknown country code is a 400 naming the field.
    let body = json!({"customerId": "bob", "lineItems": [{"productId": "0193aaaa-0000-7000-8000-000000000001", "quantity": 1}],
        "shippingAddress": {"street": "1 Main St", "city": "X", "zip": "1", "country": "UK"}});
    let a = bob.post("/api/v1/orders", &body).await.unwrap();
    assert_eq!(a.status.as_u16(), 400, "{}", a.text());
    assert!(a.text().contains("shippingAddress.country"), "{}", a.text());
    n.stop().await;
}

#[tokio::test]
async fn cors_for_configured_origins_and_request_ids() {
    let n = node().await;
    let anon = Client::new(n.addr);
    // A preflight from the shop is answered before any token check.
    let pre = anon
        .clone()
        .with_header("Origin", SHOP)
        .with_header("Access-Control-Request-Method", "POST")
        .send(Method::OPTIONS, "/api/v1/orders", None)
        .await
        .unwrap();
    assert_eq!(pre.status.as_u16(), 204);
    let h = |a: &concord_node::http_client::Answer, k: &str| {
        a.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h(&pre, "access-control-allow-origin"), SHOP);
    assert!(h(&pre, "access-control-allow-headers").contains("idempotency-key"));
    // Answers to the shop name it and expose the headers it reads.
    let get = anon
        .clone()
        .with_header("Origin", SHOP)
        .get("/api/v1/products")
        .await
        .unwrap();
    assert_eq!(h(&get, "access-control-allow-origin"), SHOP);
    assert!(h(&get, "access-control-expose-headers").contains("etag"));
    // Another origin gets nothing a browser would accept.
    let evil = anon
        .clone()
        .with_header("Origin", "https://evil.example")
        .get("/api/v1/products")
        .await
        .unwrap();
    assert_eq!(h(&evil, "access-control-allow-origin"), "");
    let evil_pre = anon
        .clone()
        .with_header("Origin", "https://evil.example")
        .with_header("Access-Control-Request-Method", "POST")
        .send(Method::OPTIONS, "/api/v1/orders", None)
        .await
        .unwrap();
    assert_eq!(evil_pre.status.as_u16(), 403);
    // Request ids: echoed, or minted.
    let mine = anon
        .clone()
        .with_header("X-Request-Id", "req-42")
        .get("/health")
        .await
        .unwrap();
    assert_eq!(h(&mine, "x-request-id"), "req-42");
    let minted = anon.get("/health").await.unwrap();
    assert_eq!(h(&minted, "x-request-id").len(), 36, "a UUID");
    n.stop().await;
}
