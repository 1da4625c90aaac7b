//! Accounts against an in-process node: every route's bad input (400 naming
//! the field), sign-up to checkout with a saved address, password change,
//! admin disable/enable and staff, refresh rotation with reuse detection,
//! logout, lockout and login limits, guest carts bound at sign-in.

use std::time::Duration;

use concord_node::http_client::{Answer, Client};
use concord_tests::{InProcessNode, create};
use serde_json::{Value, json};

/// Fast hashes and no per-address limits, for tests that are not about them.
pub const FAST: &str = "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[accounts]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nlogin_per_address = 0\nregister_per_address = 0\n";

fn status(a: &Answer) -> u16 {
    a.status.as_u16()
}

fn code(a: &Answer) -> String {
    a.json::<Value>()
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

pub async fn register(c: &Client, email: &str, password: &str) -> Answer {
    c.post(
        "/api/v1/auth/register",
        &json!({"email": email, "password": password, "name": "Ada"}),
    )
    .await
    .unwrap()
}

pub async fn login(c: &Client, email: &str, password: &str) -> Answer {
    c.post(
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
    .unwrap()
}

pub fn bearer(c: &Client, session: &Answer) -> Client {
    let v: Value = session.json().unwrap();
    c.clone()
        .with_token(v["accessToken"].as_str().unwrap().to_string())
}

async fn refresh(c: &Client, token: &str) -> Answer {
    c.post("/api/v1/auth/refresh", &json!({"refreshToken": token}))
        .await
        .unwrap()
}

const ADDRESS: &str = r#"{"name": "Ada", "line1": "1 Loop St", "city": "Cupertino", "postalCode": "95014", "country": "US"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let n = InProcessNode::start(FAST).await.unwrap();
    let c = n.anonymous();
    let ok = json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"});
    let mut cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/auth/register",
            json!({"password": "correct horse", "name": "Ada"}),
            "email",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada", "password": "correct horse", "name": "Ada"}),
            "email",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada@example.com", "password": "short", "name": "Ada"}),
            "password",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada@example.com", "password": "x".repeat(300), "name": "Ada"}),
            "password",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada@example.com", "password": "correct horse", "name": ""}),
            "name",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada", "role": "admin"}),
            "role",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada", "cartId": "cart-1"}),
            "cartId",
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "ada@example.com"}),
            "password",
        ),
        (
            "/api/v1/auth/login",
            json!({"email": 5, "password": "x"}),
            "email",
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "ada@example.com", "password": "y".repeat(300)}),
            "password",
        ),
        (
            "/api/v1/auth/refresh",
            json!({"refreshToken": "not-a-token"}),
            "refreshToken",
        ),
        ("/api/v1/auth/refresh", json!({}), "refreshToken"),
    ];
    for (path, body, field) in cases.drain(..) {
        let a = c.post(path, &body).await.unwrap();
        assert_eq!(status(&a), 400, "{path} {body}: {}", a.text());
        assert!(
            a.text().contains(field),
            "{path} {body} should name {field}: {}",
            a.text()
        );
    }
    // Nothing of the refused registrations was kept: the e-mail is free.
    let a = c.post("/api/v1/auth/register", &ok).await.unwrap();
    assert_eq!(status(&a), 201, "{}", a.text());
    let me = bearer(&c, &a);
    for (method, path, body, field) in [
        ("PATCH", "/api/v1/me", json!({"name": ""}), "name"),
        ("PATCH", "/api/v1/me", json!({"email": "x@y.z"}), "email"),
        (
            "POST",
            "/api/v1/me/addresses",
            json!({"line1": "1", "city": "X", "postalCode": "1", "country": "Narnia"}),
            "country",
        ),
        (
            "POST",
            "/api/v1/me/addresses",
            json!({"city": "X", "postalCode": "1", "country": "US"}),
            "line1",
        ),
        (
            "POST",
            "/api/v1/me/password",
            json!({"currentPassword": "correct horse", "newPassword": "short"}),
            "newPassword",
        ),
        (
            "POST",
            "/api/v1/me/password",
            json!({"newPassword": "long enough"}),
            "currentPassword",
        ),
    ] {
        let a = match method {
            "PATCH" => me.patch(path, &body).await.unwrap(),
            _ => me.post(path, &body).await.unwrap(),
        };
        assert_eq!(status(&a), 400, "{method} {path} {body}: {}", a.text());
        assert!(
            a.text().contains(field),
            "{method} {path} should name {field}: {}",
            a.text()
        );
    }
    let a = me
        .patch(
            "/api/v1/me/addresses/not-a-uuid",
            &serde_json::from_str(ADDRESS).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(status(&a), 400, "{}", a.text());
    assert!(a.text().contains("addressId"), "{}", a.text());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_signs_up_saves_an_address_and_checks_out() {
    let n = InProcessNode::start(FAST).await.unwrap();
    let anon = n.anonymous();
    let a = register(&anon, "  Ada@Example.com ", "correct horse").await;
    assert_eq!(status(&a), 201, "{}", a.text());
    let session: Value = a.json().unwrap();
    assert_eq!(session["account"]["email"], "ada@example.com");
    assert_eq!(session["account"]["role"], "customer");
    assert_eq!(session["tokenType"], "Bearer");
    assert!(
        !a.text().contains("argon2"),
        "no hash in answers: {}",
        a.text()
    );
    let id = session["account"]["id"].as_str().unwrap().to_string();
    // One e-mail, one account, whatever its case.
    let again = register(&anon, "ADA@example.com", "other password").await;
    assert_eq!(status(&again), 409, "{}", again.text());
    assert_eq!(code(&again), "email_taken");
    // A wrong password and an unknown e-mail look alike.
    let wrong = login(&anon, "ada@example.com", "wrong horse").await;
    let unknown = login(&anon, "bob@example.com", "wrong horse").await;
    assert_eq!(
        (status(&wrong), code(&wrong)),
        (401, "invalid_credentials".into())
    );
    assert_eq!(
        (status(&unknown), code(&unknown)),
        (401, "invalid_credentials".into())
    );
    assert_eq!(
        wrong.json::<Value>().unwrap()["error"]["message"],
        unknown.json::<Value>().unwrap()["error"]["message"]
    );
    let second = login(&anon, "ADA@example.com", "correct horse").await;
    assert_eq!(status(&second), 200, "{}", second.text());
    let me = bearer(&anon, &a);
    assert_eq!(status(&anon.get("/api/v1/me").await.unwrap()), 401);
    let v: Value = me.get("/api/v1/me").await.unwrap().json().unwrap();
    assert_eq!(v["id"], id.as_str());
    let p = me
        .patch("/api/v1/me", &json!({"name": "Ada L."}))
        .await
        .unwrap();
    assert_eq!(status(&p), 200, "{}", p.text());
    assert_eq!(p.json::<Value>().unwrap()["name"], "Ada L.");
    // The address book.
    let add = me
        .post(
            "/api/v1/me/addresses",
            &serde_json::from_str(ADDRESS).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(status(&add), 201, "{}", add.text());
    let aid = add.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let list: Value = me
        .get("/api/v1/me/addresses")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let mut moved: Value = serde_json::from_str(ADDRESS).unwrap();
    moved["city"] = json!("Palo Alto");
    let p = me
        .patch(&format!("/api/v1/me/addresses/{aid}"), &moved)
        .await
        .unwrap();
    assert_eq!(status(&p), 200, "{}", p.text());
    assert_eq!(p.json::<Value>().unwrap()["city"], "Palo Alto");
    // Checkout with the saved address; the order is the account's.
    let pid = create(&n.admin(), "ACC-1", 10).await;
    let order = me
        .post(
            "/api/v1/orders",
            &json!({"lineItems": [{"productId": pid, "quantity": 2}], "shippingAddressId": aid}),
        )
        .await
        .unwrap();
    assert_eq!(status(&order), 201, "{}", order.text());
    let o: Value = order.json().unwrap();
    assert_eq!(o["customerId"], id.as_str());
    assert_eq!(o["shippingAddress"]["city"], "Palo Alto");
    let bad = me
        .post("/api/v1/orders", &json!({"lineItems": [{"productId": pid, "quantity": 1}], "shippingAddressId": uuid::Uuid::new_v4()}))
        .await
        .unwrap();
    assert_eq!(status(&bad), 400, "{}", bad.text());
    assert!(bad.text().contains("shippingAddressId"));
    let mine: Value = me
        .get(&format!("/api/v1/orders?customerId={id}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let del = me
        .delete(&format!("/api/v1/me/addresses/{aid}"))
        .await
        .unwrap();
    assert_eq!(status(&del), 204);
    assert_eq!(
        status(
            &me.get(&format!("/api/v1/me/addresses/{aid}"))
                .await
                .unwrap()
        ),
        404
    );
    // Another customer cannot see the account.
    let other = register(&anon, "eve@example.com", "eve's password").await;
    let eve = bearer(&anon, &other);
    assert_eq!(
        status(&eve.get(&format!("/api/v1/customers/{id}")).await.unwrap()),
        403
    );
    assert_eq!(status(&eve.get("/api/v1/customers").await.unwrap()), 403);
    assert_eq!(status(&anon.get("/api/v1/customers").await.unwrap()), 401);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_signs_out_other_sessions() {
    let n = InProcessNode::start(FAST).await.unwrap();
    let anon = n.anonymous();
    let first = register(&anon, "ada@example.com", "correct horse").await;
    let second = login(&anon, "ada@example.com", "correct horse").await;
    let (me1, me2) = (bearer(&anon, &first), bearer(&anon, &second));
    let wrong = me1
        .post(
            "/api/v1/me/password",
            &json!({"currentPassword": "nope nope", "newPassword": "battery staple"}),
        )
        .await
        .unwrap();
    assert_eq!(status(&wrong), 401, "{}", wrong.text());
    let ok = me1
        .post(
            "/api/v1/me/password",
            &json!({"currentPassword": "correct horse", "newPassword": "battery staple"}),
        )
        .await
        .unwrap();
    assert_eq!(status(&ok), 204, "{}", ok.text());
    assert_eq!(
        status(&me1.get("/api/v1/me").await.unwrap()),
        200,
        "this session stays"
    );
    assert_eq!(
        status(&me2.get("/api/v1/me").await.unwrap()),
        401,
        "the other one ends"
    );
    let rt2 = second.json::<Value>().unwrap()["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&refresh(&anon, &rt2).await), 401);
    assert_eq!(
        status(&login(&anon, "ada@example.com", "correct horse").await),
        401
    );
    assert_eq!(
        status(&login(&anon, "ada@example.com", "battery staple").await),
        200
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_disable_enable_and_create_staff() {
    let n = InProcessNode::start(FAST).await.unwrap();
    let anon = n.anonymous();
    let admin = n.admin();
    let s = register(&anon, "ada@example.com", "correct horse").await;
    let id = s.json::<Value>().unwrap()["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let me = bearer(&anon, &s);
    let page: Value = admin
        .get("/api/v1/customers")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(!page.to_string().contains("argon2"));
    let one: Value = admin
        .get("/api/v1/customers?email=ADA@example.com")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["items"][0]["id"], id.as_str());
    let d = admin
        .post(&format!("/api/v1/customers/{id}/disable"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status(&d), 200, "{}", d.text());
    assert_eq!(d.json::<Value>().unwrap()["disabled"], true);
    let refused = me.get("/api/v1/me").await.unwrap();
    assert_eq!(
        (status(&refused), code(&refused)),
        (403, "account_disabled".into())
    );
    let l = login(&anon, "ada@example.com", "correct horse").await;
    assert_eq!((status(&l), code(&l)), (403, "account_disabled".into()));
    assert_eq!(
        status(
            &me.post(&format!("/api/v1/customers/{id}/enable"), &json!({}))
                .await
                .unwrap()
        ),
        403
    );
    let e = admin
        .post(&format!("/api/v1/customers/{id}/enable"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status(&e), 200);
    // Disabling ended the sessions: enabling needs a new sign-in.
    assert_eq!(status(&me.get("/api/v1/me").await.unwrap()), 401);
    assert_eq!(
        status(&login(&anon, "ada@example.com", "correct horse").await),
        200
    );
    assert_eq!(
        status(
            &admin
                .post(
                    &format!("/api/v1/customers/{}/disable", uuid::Uuid::new_v4()),
                    &json!({})
                )
                .await
                .unwrap()
        ),
        404
    );
    // Staff: created by an admin, signs in with the admin role.
    let bad = me
        .post(
            "/api/v1/staff",
            &json!({"email": "op@example.com", "password": "operator pw", "name": "Op"}),
        )
        .await
        .unwrap();
    assert!(matches!(status(&bad), 401 | 403), "{}", bad.text());
    let st = admin
        .post(
            "/api/v1/staff",
            &json!({"email": "op@example.com", "password": "operator pw", "name": "Op"}),
        )
        .await
        .unwrap();
    assert_eq!(status(&st), 201, "{}", st.text());
    assert_eq!(st.json::<Value>().unwrap()["role"], "admin");
    let op = bearer(&anon, &login(&anon, "op@example.com", "operator pw").await);
    let page = op.get("/api/v1/customers").await.unwrap();
    assert_eq!(status(&page), 200, "{}", page.text());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    let n = InProcessNode::start(&format!("{FAST}refresh_grace_secs = 2\n"))
        .await
        .unwrap();
    let anon = n.anonymous();
    let s: Value = register(&anon, "ada@example.com", "correct horse")
        .await
        .json()
        .unwrap();
    let rt0 = s["refreshToken"].as_str().unwrap().to_string();
    let a1 = refresh(&anon, &rt0).await;
    assert_eq!(status(&a1), 200, "{}", a1.text());
    let p1: Value = a1.json().unwrap();
    assert_ne!(p1["refreshToken"], rt0.as_str());
    // A retry of the same refresh within the grace window: the same pair.
    let again: Value = refresh(&anon, &rt0).await.json().unwrap();
    assert_eq!(again, p1);
    // The new access token works.
    let me = anon
        .clone()
        .with_token(p1["accessToken"].as_str().unwrap().to_string());
    assert_eq!(status(&me.get("/api/v1/me").await.unwrap()), 200);
    // After the grace window, the spent token is a theft signal.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let reuse = refresh(&anon, &rt0).await;
    assert_eq!(
        (status(&reuse), code(&reuse)),
        (401, "refresh_token_reused".into())
    );
    let rt1 = p1["refreshToken"].as_str().unwrap();
    assert_eq!(
        status(&refresh(&anon, rt1).await),
        401,
        "the whole family is revoked"
    );
    assert_eq!(
        status(&me.get("/api/v1/me").await.unwrap()),
        401,
        "and its access token"
    );
    // Logout ends a session at once.
    let s2 = login(&anon, "ada@example.com", "correct horse").await;
    let me2 = bearer(&anon, &s2);
    assert_eq!(
        status(&me2.post("/api/v1/auth/logout", &json!({})).await.unwrap()),
        204
    );
    assert_eq!(status(&me2.get("/api/v1/me").await.unwrap()), 401);
    let rt = s2.json::<Value>().unwrap()["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&refresh(&anon, &rt).await), 401);
    assert_eq!(
        status(&me2.post("/api/v1/auth/logout", &json!({})).await.unwrap()),
        401
    );
    // An operator token has no session to end.
    assert_eq!(
        status(
            &n.customer("pat")
                .post("/api/v1/auth/logout", &json!({}))
                .await
                .unwrap()
        ),
        400
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_an_account_and_limits_hold_per_address() {
    let n = InProcessNode::start(&format!(
        "{FAST}lockout_failures = 3\ndelay_after_failures = 2\n"
    ))
    .await
    .unwrap();
    let anon = n.anonymous();
    assert_eq!(
        status(&register(&anon, "ada@example.com", "correct horse").await),
        201
    );
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(
            status(&login(&anon, "ada@example.com", "wrong horse").await),
            401
        );
    }
    // The third failure waited (the delay starts at two).
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let locked = login(&anon, "ada@example.com", "correct horse").await;
    assert_eq!(
        (status(&locked), code(&locked)),
        (429, "account_locked".into()),
        "{}",
        locked.text()
    );
    assert!(locked.headers.get("retry-after").is_some());
    // Per address too: another account, same address, locked after twice
    // the account threshold (the address already has 3 failures).
    assert_eq!(
        status(&register(&anon, "bob@example.com", "bob's password").await),
        201
    );
    for _ in 0..3 {
        assert_eq!(
            status(&login(&anon, "bob@example.com", "wrong horse").await),
            401
        );
    }
    let by_address = login(&anon, "bob@example.com", "bob's password").await;
    assert_eq!(status(&by_address), 429, "{}", by_address.text());
    n.stop().await;
    // Login and registration limits per address (2 and 1 per window here).
    let n = InProcessNode::start("[accounts]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nlogin_per_address = 2\nregister_per_address = 1\n").await.unwrap();
    let anon = n.anonymous();
    assert_eq!(
        status(&register(&anon, "ada@example.com", "correct horse").await),
        201
    );
    let r = register(&anon, "bob@example.com", "correct horse").await;
    assert_eq!(
        (status(&r), code(&r)),
        (429, "too_many_registrations".into())
    );
    for _ in 0..2 {
        assert_eq!(
            status(&login(&anon, "ada@example.com", "correct horse").await),
            200
        );
    }
    let l = login(&anon, "ada@example.com", "correct horse").await;
    assert_eq!((status(&l), code(&l)), (429, "too_many_logins".into()));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cart_is_written_without_a_token_and_bound_at_sign_in() {
    let n = InProcessNode::start(FAST).await.unwrap();
    let anon = n.anonymous();
    let pid = create(&n.admin(), "GUEST-1", 10).await;
    let g: Value = anon
        .post("/api/v1/carts/guest", &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let cart = g["cartId"].as_str().unwrap().to_string();
    assert!(cart.len() >= 40, "{cart}");
    let add = anon
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 2}),
        )
        .await
        .unwrap();
    assert_eq!(status(&add), 200, "{}", add.text());
    // Only a minted guest id opens a cart without a token.
    for name in ["my-cart", "g-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let a = anon
            .post(
                &format!("/api/v1/carts/{name}/items"),
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .unwrap();
        assert_eq!(status(&a), 401, "{name}: {}", a.text());
    }
    let s = anon
        .post("/api/v1/auth/register", &json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada", "cartId": cart}))
        .await
        .unwrap();
    assert_eq!(status(&s), 201, "{}", s.text());
    assert_eq!(s.json::<Value>().unwrap()["cartId"], cart.as_str());
    let me = bearer(&anon, &s);
    let v: Value = me
        .get(&format!("/api/v1/carts/{cart}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["items"][0]["quantity"], 2, "{v}");
    // Bound now: no longer open to anyone holding the id.
    let a = anon
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 1}),
        )
        .await
        .unwrap();
    assert_eq!(status(&a), 403, "{}", a.text());
    assert_eq!(
        status(&anon.get(&format!("/api/v1/carts/{cart}")).await.unwrap()),
        403
    );
    let eve = bearer(
        &anon,
        &register(&anon, "eve@example.com", "eve's password").await,
    );
    assert_eq!(
        status(&eve.get(&format!("/api/v1/carts/{cart}")).await.unwrap()),
        403
    );
    // And the account checks it out.
    let o = me
        .post("/api/v1/orders", &json!({"cartId": cart, "shippingAddress": serde_json::from_str::<Value>(ADDRESS).unwrap()}))
        .await
        .unwrap();
    assert_eq!(status(&o), 201, "{}", o.text());
    n.stop().await;
}
