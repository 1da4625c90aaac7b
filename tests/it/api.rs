//! Every endpoint of DESIGN §5: its happy path and its bad inputs, against a
//! node running in this process on port 0 with a real sled directory.

use concord_node::auth::Role;
use concord_node::http_client::{Answer, Client, Method};
use concord_tests::InProcessNode;
use serde_json::{Value, json};

fn check(what: &str, a: &Answer, status: u16, needle: &str) {
    assert_eq!(
        a.status.as_u16(),
        status,
        "{what}: expected {status}, got {} {}",
        a.status,
        a.text()
    );
    if status >= 400 {
        let v: Value = a
            .json()
            .unwrap_or_else(|_| panic!("{what}: error body is not JSON: {}", a.text()));
        let code = v["error"]["code"].as_str().unwrap_or_default();
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && !msg.is_empty(),
            "{what}: error shape: {v}"
        );
        assert!(
            code.contains(needle) || msg.contains(needle),
            "{what}: expected {needle:?} in the error, got {v}"
        );
    } else if !needle.is_empty() {
        assert!(
            a.text().contains(needle),
            "{what}: expected {needle:?} in {}",
            a.text()
        );
    }
}

fn product_body(sku: &str) -> Value {
    json!({"name": "Trail Tent 2P", "sku": sku, "price": "249.99", "currency": "USD",
           "description": "A two-person tent", "category": "outdoor", "tags": ["tent"], "initialQuantity": 5})
}

fn address() -> Value {
    json!({"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"})
}

#[tokio::test]
async fn every_endpoint_and_its_bad_inputs() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 0\n")
        .await
        .expect("node starts");
    let admin = n.admin();
    let alice = n.customer("alice");
    let bob = n.customer("bob");
    let anon = n.anonymous();

    // ---- products: create
    let a = admin
        .post("/api/v1/products", &product_body("TENT-1"))
        .await
        .unwrap();
    check("create", &a, 201, "\"price\":249.99");
    let p: Value = a.json().unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["stock"], 5);
    assert_eq!(p["currency"], "USD");
    assert!(p["updatedAt"].as_str().unwrap().ends_with('Z'));

    let bad_token = Client::new(n.addr).with_token("abc.def.ghi");
    let expired = Client::new(n.addr).with_token(n.key.issue(&concord_node::auth::Claims {
        sub: "admin".into(),
        role: Role::Admin,
        exp: 1_000,
        iat: 0,
        sid: None,
    }));
    let none_alg =
        Client::new(n.addr).with_token(format!("eyJhbGciOiJub25lIn0.{}.", admin_body_b64()));
    let cases: Vec<(&str, &Client, Value, u16, &str)> = vec![
        ("no token", &anon, product_body("X-1"), 401, "unauthorized"),
        (
            "bad token",
            &bad_token,
            product_body("X-1"),
            401,
            "malformed",
        ),
        (
            "expired token",
            &expired,
            product_body("X-1"),
            401,
            "expired",
        ),
        ("alg none", &none_alg, product_body("X-1"), 401, "HS256"),
        ("customer role", &alice, product_body("X-1"), 403, "admin"),
        (
            "unknown field",
            &admin,
            json!({"name":"a","sku":"A-1","price":"1","currency":"USD","colour":"red"}),
            400,
            "colour",
        ),
        (
            "wrong type",
            &admin,
            json!({"name":"a","sku":"A-1","price":true,"currency":"USD"}),
            400,
            "price",
        ),
        (
            "too precise",
            &admin,
            json!({"name":"a","sku":"A-1","price":"1.999","currency":"USD"}),
            400,
            "price",
        ),
        (
            "negative",
            &admin,
            json!({"name":"a","sku":"A-1","price":-5,"currency":"USD"}),
            400,
            "price",
        ),
        (
            "not a number",
            &admin,
            json!({"name":"a","sku":"A-1","price":"cheap","currency":"USD"}),
            400,
            "price",
        ),
        (
            "JPY decimals",
            &admin,
            json!({"name":"a","sku":"A-1","price":"10.5","currency":"JPY"}),
            400,
            "price",
        ),
        (
            "unknown currency",
            &admin,
            json!({"name":"a","sku":"A-1","price":"1","currency":"XYZ"}),
            400,
            "currency",
        ),
        (
            "missing name",
            &admin,
            json!({"sku":"A-1","price":"1","currency":"USD"}),
            400,
            "name",
        ),
        (
            "empty name",
            &admin,
            json!({"name":"  ","sku":"A-1","price":"1","currency":"USD"}),
            400,
            "name",
        ),
        (
            "bad sku",
            &admin,
            json!({"name":"a","sku":"a b","price":"1","currency":"USD"}),
            400,
            "sku",
        ),
        (
            "embedding dim",
            &admin,
            json!({"name":"a","sku":"A-1","price":"1","currency":"USD","embedding":[1.0,2.0]}),
            400,
            "embedding",
        ),
        (
            "negative stock",
            &admin,
            json!({"name":"a","sku":"A-1","price":"1","currency":"USD","initialQuantity":-1}),
            400,
            "initialQuantity",
        ),
        (
            "duplicate sku",
            &admin,
            product_body("TENT-1"),
            409,
            "sku_exists",
        ),
    ];
    for (what, c, body, status, needle) in cases {
        let a = c.post("/api/v1/products", &body).await.unwrap();
        check(what, &a, status, needle);
    }
    let raw = br#"{"name":"a","sku":"A-1","price":1e3,"currency":"USD"}"#.to_vec();
    let a = admin
        .send_raw(
            Method::POST,
            "/api/v1/products",
            Some((raw, "application/json")),
        )
        .await
        .unwrap();
    check("exponent", &a, 400, "price");
    let a = admin
        .send_raw(
            Method::POST,
            "/api/v1/products",
            Some((b"{nope".to_vec(), "application/json")),
        )
        .await
        .unwrap();
    check("bad JSON", &a, 400, "invalid_body");
    let a = admin
        .send_raw(
            Method::POST,
            "/api/v1/products",
            Some((b"{}".to_vec(), "text/plain")),
        )
        .await
        .unwrap();
    check("wrong content type", &a, 415, "JSON");
    let big = vec![b' '; (1 << 20) + 10];
    let a = admin
        .send_raw(
            Method::POST,
            "/api/v1/products",
            Some((big, "application/json")),
        )
        .await
        .unwrap();
    check("body over 1 MiB", &a, 413, "body_too_large");
    // Nothing half-applied: still exactly one product.
    let a = anon.get("/api/v1/products").await.unwrap();
    assert_eq!(
        a.json::<Value>().unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // ---- products: read, list, patch, price, history, delete
    check(
        "get",
        &anon.get(&format!("/api/v1/products/{pid}")).await.unwrap(),
        200,
        "Trail Tent",
    );
    check(
        "get unknown",
        &anon
            .get("/api/v1/products/01930000-0000-7000-8000-000000000000")
            .await
            .unwrap(),
        404,
        "product_not_found",
    );
    check(
        "get bad id",
        &anon.get("/api/v1/products/not-a-uuid").await.unwrap(),
        404,
        "product_not_found",
    );
    for i in 2..=5 {
        admin
            .post("/api/v1/products", &product_body(&format!("TENT-{i}")))
            .await
            .unwrap();
    }
    let page: Value = anon
        .get("/api/v1/products?limit=2")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest: Value = anon
        .get(&format!("/api/v1/products?limit=100&cursor={cursor}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert!(rest["nextCursor"].is_null());
    let cat: Value = anon
        .get("/api/v1/products?category=nothing")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(cat["items"].as_array().unwrap().is_empty());
    check(
        "limit 0",
        &anon.get("/api/v1/products?limit=0").await.unwrap(),
        400,
        "limit",
    );
    check(
        "limit text",
        &anon.get("/api/v1/products?limit=ten").await.unwrap(),
        400,
        "limit",
    );
    check(
        "unknown param",
        &anon.get("/api/v1/products?colour=red").await.unwrap(),
        400,
        "colour",
    );
    check(
        "bad cursor",
        &anon.get("/api/v1/products?cursor=zzz").await.unwrap(),
        400,
        "cursor",
    );

    let path = format!("/api/v1/products/{pid}");
    check(
        "patch",
        &admin
            .patch(&path, &json!({"name": "Trail Tent 2P v2", "price": 199.5}))
            .await
            .unwrap(),
        200,
        "\"price\":199.50",
    );
    check(
        "patch sku",
        &admin.patch(&path, &json!({"sku": "NEW"})).await.unwrap(),
        400,
        "sku",
    );
    check(
        "patch currency alone",
        &admin
            .patch(&path, &json!({"currency": "EUR"}))
            .await
            .unwrap(),
        400,
        "currency",
    );
    check(
        "patch customer",
        &alice.patch(&path, &json!({"name": "x"})).await.unwrap(),
        403,
        "admin",
    );
    check(
        "patch unknown",
        &admin
            .patch(
                "/api/v1/products/01930000-0000-7000-8000-000000000000",
                &json!({"name": "x"}),
            )
            .await
            .unwrap(),
        404,
        "product_not_found",
    );
    check(
        "set price",
        &admin
            .put(
                &format!("{path}/price"),
                &json!({"price": "179.00", "currency": "USD", "reason": "sale"}),
            )
            .await
            .unwrap(),
        200,
        "\"price\":179.00",
    );
    check(
        "set price bad",
        &admin
            .put(
                &format!("{path}/price"),
                &json!({"price": "1.234", "currency": "USD"}),
            )
            .await
            .unwrap(),
        400,
        "price",
    );
    check(
        "set price missing currency",
        &admin
            .put(&format!("{path}/price"), &json!({"price": "1"}))
            .await
            .unwrap(),
        400,
        "currency",
    );
    let h: Value = anon
        .get(&format!("{path}/history"))
        .await
        .unwrap()
        .json()
        .unwrap();
    let prices = h["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 3, "{h}");
    assert_eq!(prices[2]["reason"], "sale");

    // ---- search: the index follows the catalog asynchronously (within a
    // few milliseconds of the write's 2xx), so wait for it, bounded.
    let mut s = Value::Null;
    for _ in 0..500 {
        s = anon
            .get("/api/v1/search/products?q=tent&k=3")
            .await
            .unwrap()
            .json()
            .unwrap();
        if s["hits"].as_array().is_some_and(|h| h.len() == 3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(s["hits"].as_array().unwrap().len(), 3, "{s}");
    assert!(s["hits"][0]["score"].as_f64().unwrap() > 0.0);
    let s: Value = anon
        .get("/api/v1/search/products?q=TENT-4")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        s["hits"][0]["product"]["sku"], "TENT-4",
        "an exact SKU ranks first: {s}"
    );
    check(
        "search no q",
        &anon.get("/api/v1/search/products").await.unwrap(),
        400,
        "q",
    );
    check(
        "search k 0",
        &anon.get("/api/v1/search/products?q=a&k=0").await.unwrap(),
        400,
        "k",
    );
    check(
        "search k 1000",
        &anon
            .get("/api/v1/search/products?q=a&k=1000")
            .await
            .unwrap(),
        400,
        "k",
    );

    // ---- inventory
    check(
        "restock",
        &admin
            .post("/api/v1/inventory/TENT-1/restock", &json!({"quantity": 10}))
            .await
            .unwrap(),
        200,
        "\"stock\":15",
    );
    check(
        "restock 0",
        &admin
            .post("/api/v1/inventory/TENT-1/restock", &json!({"quantity": 0}))
            .await
            .unwrap(),
        400,
        "quantity",
    );
    check(
        "restock unknown",
        &admin
            .post("/api/v1/inventory/NOPE/restock", &json!({"quantity": 1}))
            .await
            .unwrap(),
        404,
        "sku_not_found",
    );
    check(
        "restock customer",
        &alice
            .post("/api/v1/inventory/TENT-1/restock", &json!({"quantity": 1}))
            .await
            .unwrap(),
        403,
        "admin",
    );
    check(
        "restock string",
        &admin
            .post(
                "/api/v1/inventory/TENT-1/restock",
                &json!({"quantity": "1"}),
            )
            .await
            .unwrap(),
        400,
        "quantity",
    );
    let inv: Value = anon
        .get("/api/v1/inventory/TENT-1")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(inv["stock"], 15);
    assert_eq!(inv["restocked"], 15, "{inv}");
    assert_eq!(inv["liveSold"], 0, "{inv}");
    assert_eq!(inv["rights"]["n1"], 15);
    check(
        "inventory unknown",
        &anon.get("/api/v1/inventory/NOPE").await.unwrap(),
        404,
        "sku_not_found",
    );
    check(
        "inventory bad sku",
        &anon.get("/api/v1/inventory/a%20b").await.unwrap(),
        400,
        "sku",
    );

    // ---- carts
    let cart = "/api/v1/carts/0193aaaa-0000-4000-8000-000000000001";
    check(
        "cart no token",
        &anon.get(cart).await.unwrap(),
        401,
        "token",
    );
    check(
        "cart empty",
        &alice.get(cart).await.unwrap(),
        200,
        "\"items\":[]",
    );
    check(
        "add",
        &alice
            .post(
                &format!("{cart}/items"),
                &json!({"productId": pid, "quantity": 2}),
            )
            .await
            .unwrap(),
        200,
        "\"customerId\":\"alice\"",
    );
    check(
        "add again",
        &alice
            .post(
                &format!("{cart}/items"),
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .unwrap(),
        200,
        "\"quantity\":3",
    );
    check(
        "other customer reads",
        &bob.get(cart).await.unwrap(),
        403,
        "another customer",
    );
    check(
        "other customer adds",
        &bob.post(
            &format!("{cart}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .unwrap(),
        403,
        "another customer",
    );
    check("admin reads", &admin.get(cart).await.unwrap(), 200, "alice");
    check(
        "add 0",
        &alice
            .post(
                &format!("{cart}/items"),
                &json!({"productId": pid, "quantity": 0}),
            )
            .await
            .unwrap(),
        400,
        "quantity",
    );
    check(
        "add unknown product",
        &alice
            .post(
                &format!("{cart}/items"),
                &json!({"productId": "01930000-0000-7000-8000-000000000000", "quantity": 1}),
            )
            .await
            .unwrap(),
        404,
        "product_not_found",
    );
    check(
        "add bad cart id",
        &alice
            .post(
                "/api/v1/carts/bad%20id/items",
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .unwrap(),
        400,
        "cartId",
    );
    check(
        "add bad product id",
        &alice
            .post(
                &format!("{cart}/items"),
                &json!({"productId": "x", "quantity": 1}),
            )
            .await
            .unwrap(),
        400,
        "productId",
    );
    check(
        "set",
        &alice
            .put(&format!("{cart}/items/{pid}"), &json!({"quantity": 4}))
            .await
            .unwrap(),
        200,
        "\"quantity\":4",
    );
    check(
        "set too many",
        &alice
            .put(
                &format!("{cart}/items/{pid}"),
                &json!({"quantity": 5000000}),
            )
            .await
            .unwrap(),
        400,
        "quantity",
    );
    let cart2 = "/api/v1/carts/0193aaaa-0000-4000-8000-000000000002";
    alice
        .post(
            &format!("{cart2}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .unwrap();
    check(
        "set 0 removes",
        &alice
            .put(&format!("{cart2}/items/{pid}"), &json!({"quantity": 0}))
            .await
            .unwrap(),
        200,
        "\"items\":[]",
    );
    check(
        "remove missing",
        &alice.delete(&format!("{cart2}/items/{pid}")).await.unwrap(),
        404,
        "item_not_found",
    );
    check(
        "list carts admin",
        &admin.get("/api/v1/carts?limit=10").await.unwrap(),
        200,
        "alice",
    );
    check(
        "list carts customer",
        &alice.get("/api/v1/carts").await.unwrap(),
        403,
        "admin",
    );

    // ---- orders
    check("checkout other id", &alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "customerId": "bob", "shippingAddress": address()})).await.unwrap(), 403, "own");
    check("checkout both", &alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "lineItems": [{"productId": pid, "quantity": 1}], "customerId": "alice", "shippingAddress": address()})).await.unwrap(), 400, "exactly one");
    check(
        "checkout neither",
        &alice
            .post(
                "/api/v1/orders",
                &json!({"customerId": "alice", "shippingAddress": address()}),
            )
            .await
            .unwrap(),
        400,
        "exactly one",
    );
    check("checkout bad address", &alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "customerId": "alice", "shippingAddress": {"name": "A"}})).await.unwrap(), 400, "shippingAddress");
    check("checkout bad country", &alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "customerId": "alice", "shippingAddress": {"name":"A","line1":"x","city":"y","postalCode":"1","country":"ZZ"}})).await.unwrap(), 400, "country");
    check("checkout too many", &alice.post("/api/v1/orders", &json!({"lineItems": [{"productId": pid, "quantity": 1000}], "customerId": "alice", "shippingAddress": address()})).await.unwrap(), 409, "insufficient_stock");
    let a = alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "customerId": "alice", "shippingAddress": address()})).await.unwrap();
    check("checkout", &a, 201, "\"status\":\"placed\"");
    assert!(
        a.text().contains("\"total\":716.00"),
        "exact total: {}",
        a.text()
    );
    let o: Value = a.json().unwrap();
    assert_eq!(o["lineItems"][0]["quantity"], 4);
    assert_eq!(o["node"], "n1");
    let oid = o["id"].as_str().unwrap().to_string();
    check(
        "cart emptied",
        &alice.get(cart).await.unwrap(),
        200,
        "\"items\":[]",
    );
    check(
        "stock taken",
        &anon.get("/api/v1/inventory/TENT-1").await.unwrap(),
        200,
        "\"stock\":11",
    );
    // Checking out the cart again (a retry whose answer was lost) answers
    // the order that emptied it; a cart that was never checked out is empty.
    let again = alice.post("/api/v1/orders", &json!({"cartId": cart.rsplit('/').next(), "customerId": "alice", "shippingAddress": address()})).await.unwrap();
    check("emptied cart checkout", &again, 200, &oid);
    check("empty cart checkout", &alice.post("/api/v1/orders", &json!({"cartId": "never-used", "customerId": "alice", "shippingAddress": address()})).await.unwrap(), 409, "empty_order");
    let op = format!("/api/v1/orders/{oid}");
    check(
        "get order",
        &alice.get(&op).await.unwrap(),
        200,
        "\"customerId\":\"alice\"",
    );
    // Another customer's order is as unknown as a missing one: no oracle.
    check(
        "get order other",
        &bob.get(&op).await.unwrap(),
        404,
        "order_not_found",
    );
    check(
        "get order unknown",
        &admin
            .get("/api/v1/orders/01930000-0000-7000-8000-000000000000")
            .await
            .unwrap(),
        404,
        "order_not_found",
    );
    check(
        "list orders own",
        &alice.get("/api/v1/orders").await.unwrap(),
        200,
        &oid,
    );
    check(
        "list orders other",
        &alice.get("/api/v1/orders?customerId=bob").await.unwrap(),
        403,
        "own",
    );
    check(
        "list orders bad status",
        &admin.get("/api/v1/orders?status=lost").await.unwrap(),
        400,
        "status",
    );
    check(
        "ship unpaid",
        &admin.post(&format!("{op}/ship"), &json!({})).await.unwrap(),
        409,
        "illegal_transition",
    );
    check(
        "pay",
        &alice.post(&format!("{op}/pay"), &json!({})).await.unwrap(),
        200,
        "\"status\":\"paid\"",
    );
    check(
        "pay again",
        &alice.post(&format!("{op}/pay"), &json!({})).await.unwrap(),
        200,
        "\"status\":\"paid\"",
    );
    check(
        "customer ships",
        &alice.post(&format!("{op}/ship"), &json!({})).await.unwrap(),
        403,
        "admin",
    );
    check(
        "ship",
        &admin.post(&format!("{op}/ship"), &json!({})).await.unwrap(),
        200,
        "\"status\":\"shipped\"",
    );
    check(
        "cancel shipped",
        &alice
            .post(&format!("{op}/cancel"), &json!({}))
            .await
            .unwrap(),
        409,
        "illegal_transition",
    );
    check(
        "deliver",
        &admin
            .post(&format!("{op}/deliver"), &json!({}))
            .await
            .unwrap(),
        200,
        "\"status\":\"delivered\"",
    );
    // A cancel at the seller returns the units at once.
    let a = alice.post("/api/v1/orders", &json!({"lineItems": [{"productId": pid, "quantity": 3}], "customerId": "alice", "shippingAddress": address()})).await.unwrap();
    let oid2 = a.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    check(
        "stock before cancel",
        &anon.get("/api/v1/inventory/TENT-1").await.unwrap(),
        200,
        "\"stock\":8",
    );
    check(
        "cancel",
        &alice
            .post(&format!("/api/v1/orders/{oid2}/cancel"), &json!({}))
            .await
            .unwrap(),
        200,
        "cancelled",
    );
    check(
        "stock after cancel",
        &anon.get("/api/v1/inventory/TENT-1").await.unwrap(),
        200,
        "\"stock\":11",
    );

    // ---- delete product
    check(
        "delete customer",
        &alice.delete(&path).await.unwrap(),
        403,
        "admin",
    );
    check("delete", &admin.delete(&path).await.unwrap(), 204, "");
    check(
        "delete again",
        &admin.delete(&path).await.unwrap(),
        404,
        "product_not_found",
    );
    check(
        "get deleted",
        &anon.get(&path).await.unwrap(),
        404,
        "product_not_found",
    );

    // ---- system
    check("health", &anon.get("/health").await.unwrap(), 200, "ok");
    check("ready", &anon.get("/ready").await.unwrap(), 200, "ok");
    let m = anon.get("/metrics").await.unwrap();
    check("metrics", &m, 200, "concord_http_requests_total");
    assert!(
        m.text().contains("concord_flush_batch_size"),
        "flush batch sizes are exported"
    );
    assert!(m.text().contains("concord_delta_log_entries"));
    let st: Value = anon
        .get("/api/v1/cluster/status")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["id"], "n1");
    assert_eq!(st["digest"].as_str().unwrap().len(), 64);
    assert!(st["versionVector"]["n1"].as_u64().unwrap() > 10);
    let doc: Value = anon.get("/openapi.json").await.unwrap().json().unwrap();
    for p in [
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/products/{id}/price",
        "/api/v1/search/products",
        "/api/v1/inventory/{sku}/restock",
        "/api/v1/inventory/{sku}",
        "/api/v1/carts/{cartId}",
        "/api/v1/carts/{cartId}/items",
        "/api/v1/carts/{cartId}/items/{productId}",
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/pay",
        "/api/v1/orders/{id}/ship",
        "/api/v1/orders/{id}/deliver",
        "/api/v1/orders/{id}/cancel",
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/cluster/status",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} is missing from /openapi.json"
        );
    }
    check(
        "unknown route",
        &anon.get("/api/v2/nothing").await.unwrap(),
        404,
        "not_found",
    );
    n.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_per_client_ip() {
    let n = InProcessNode::start("[http]\nrate_limit_per_sec = 2\nrate_limit_burst = 5\n")
        .await
        .expect("node starts");
    let c = n.anonymous();
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(c.get("/health").await.unwrap().status.as_u16());
    }
    // The readiness probes at start-up spent some of the burst of 5.
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!((1..=5).contains(&ok), "{codes:?}");
    let a = c.get("/health").await.unwrap();
    check("limited", &a, 429, "rate_limited");
    assert!(
        a.headers.contains_key("retry-after"),
        "429 carries Retry-After"
    );
    // The limit is per client: it refills, and only this client waited.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(c.get("/health").await.unwrap().status.as_u16(), 200);
    n.stop().await;
}

fn admin_body_b64() -> String {
    // {"sub":"admin","role":"admin","exp":99999999999}
    "eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OTl9".to_string()
}
