//! The login benchmark: what a sign-in costs on one node (argon2id at the
//! configured cost, the session's durable write), and what a login flood
//! does to cart adds on the same node.

use std::sync::Arc;
use std::time::Duration;

use concord_chaos::loadgen::{self, LoadReport};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Method;
use serde_json::{Value, json};

use crate::{cart, create_products};

const PASSWORD: &str = "bench password 1";

/// Logins/s alone, cart adds alone, then both at once.
pub(crate) async fn logins(
    accounts: usize,
    login_clients: usize,
    cart_clients: usize,
    secs: u64,
) -> anyhow::Result<Value> {
    // Per-address limits off (every client is 127.0.0.1); the hash at its
    // default cost.
    let c = ProcessCluster::start(Spec {
        nodes: 1,
        extra_toml: "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[accounts]\nlogin_per_address = 0\nregister_per_address = 0\n".into(),
        ..Default::default()
    })
    .await?;
    let admin = c.client(0);
    let products = Arc::new(create_products(&admin, 100, "L").await?);
    let anon = c.anonymous(0);
    for i in 0..accounts {
        let a = anon
            .post(
                "/api/v1/auth/register",
                &json!({"email": format!("bench{i}@example.com"), "password": PASSWORD, "name": "Bench"}),
            )
            .await?;
        anyhow::ensure!(a.status.as_u16() == 201, "register: {}", a.text());
    }
    let addr = c.nodes[0].http;
    let n = accounts.max(1) as u64;
    let login: Arc<loadgen::RequestFn> = Arc::new(move |w, i| {
        let who = (w as u64 * 7 + i) % n;
        let body = format!(r#"{{"email":"bench{who}@example.com","password":"{PASSWORD}"}}"#);
        Some((
            Method::POST,
            "/api/v1/auth/login".into(),
            Some(body.into_bytes()),
        ))
    });
    let add = {
        let p = products.clone();
        Arc::new(move |w: usize, i: u64| {
            let k = (w as u64).wrapping_mul(0x9E37_79B9).wrapping_add(i * 7919) % 10_000;
            let body = format!(
                r#"{{"productId":"{}","quantity":1}}"#,
                p[(k % 100) as usize]
            );
            Some((
                Method::POST,
                format!("/api/v1/carts/{}/items", cart(k)),
                Some(body.into_bytes()),
            ))
        }) as Arc<loadgen::RequestFn>
    };
    let d = Duration::from_secs(secs);
    let token = Some(c.admin_token());
    let one = loadgen::run("logins, 1 client", addr, None, 1, d, login.clone()).await;
    let alone = loadgen::run("logins alone", addr, None, login_clients, d, login.clone()).await;
    let carts_alone = loadgen::run(
        "cart adds alone",
        addr,
        token.clone(),
        cart_clients,
        d,
        add.clone(),
    )
    .await;
    let (flood, carts_flooded) = tokio::join!(
        loadgen::run(
            "logins (flood)",
            addr,
            None,
            login_clients,
            d,
            login.clone()
        ),
        loadgen::run(
            "cart adds during the flood",
            addr,
            token.clone(),
            cart_clients,
            d,
            add.clone()
        ),
    );
    let ratio = |a: &LoadReport, b: &LoadReport, f: fn(&LoadReport) -> f64| f(a) / f(b).max(1e-9);
    Ok(json!({
        "settings": {"argon2": "argon2id m=19456 KiB t=2 p=1 (the default)", "max_concurrent_hashes": "half the cores (the default)", "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
                     "fsync": "real fdatasync", "rate_limits": "off", "accounts": accounts},
        "runs": [one, alone, carts_alone, flood, carts_flooded],
        "logins_per_sec": alone.rps,
        "login_p50_ms_one_client": one.p50_ms,
        "cart_add_p99_ms_alone": carts_alone.p99_ms,
        "cart_add_p99_ms_during_flood": carts_flooded.p99_ms,
        "cart_add_p99_ratio_flood_over_alone": ratio(&carts_flooded, &carts_alone, |r| r.p99_ms),
        "cart_add_rate_ratio_flood_over_alone": ratio(&carts_flooded, &carts_alone, |r| r.rps),
    }))
}
