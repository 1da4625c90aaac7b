//! The registration workload: the same e-mail registered on two nodes at
//! once, with different passwords, while the nemesis cuts and heals the
//! network — and, at the end, every acknowledged password tried on every
//! node. The `unique-email` checker judges what came back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_node::http_client::Client;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One acknowledged registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The node that answered 201.
    pub node: String,
    /// The password it was given.
    pub password: String,
    /// The account id it answered.
    pub account: String,
}

/// Per e-mail, the registrations answered 201.
pub type RegLog = BTreeMap<String, Vec<Registered>>;

/// Registers e-mail after e-mail, each on two random nodes at once, until
/// `stop`; about `rate` e-mails a second.
pub async fn run(
    nodes: Vec<(String, Client)>,
    seed: u64,
    rate: f64,
    log: Arc<Mutex<RegLog>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = crate::workload::rng(seed, 7_777);
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut k = 0u64;
    while !*stop.borrow() && nodes.len() >= 2 {
        let email = format!("shopper{k}@chaos.example");
        k += 1;
        let a = rng.random_range(0..nodes.len());
        let b = (a + rng.random_range(1..nodes.len())) % nodes.len();
        let attempt = |i: usize| {
            let (node, c) = nodes[i].clone();
            let email = email.clone();
            async move {
                let password = format!("password of {email} at {node}");
                let ans = c
                    .post(
                        "/api/v1/auth/register",
                        &json!({"email": email, "password": password, "name": "Chaos"}),
                    )
                    .await
                    .ok()?;
                if ans.status.as_u16() != 201 {
                    return None;
                }
                let v: Value = ans.json().ok()?;
                Some(Registered {
                    node,
                    password,
                    account: v["account"]["id"].as_str()?.to_string(),
                })
            }
        };
        let (ra, rb) = tokio::join!(attempt(a), attempt(b));
        let acked: Vec<Registered> = [ra, rb].into_iter().flatten().collect();
        if !acked.is_empty() {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(email, acked);
        }
        tokio::time::sleep(gap.mul_f64(rng.random_range(0.5..1.5))).await;
    }
}

/// What one node answers to one password: the HTTP status and, on 200, the
/// account it opened.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginRead {
    /// Status (0: no answer).
    pub status: u16,
    /// The account signed into.
    pub account: Option<String>,
}

/// Per e-mail, per password: what this node answers.
pub type NodeLogins = BTreeMap<String, BTreeMap<String, LoginRead>>;

/// Tries every acknowledged password on one node.
pub async fn read(c: &Client, log: &RegLog) -> NodeLogins {
    let mut out = NodeLogins::new();
    for (email, regs) in log {
        for r in regs {
            let a = c
                .post(
                    "/api/v1/auth/login",
                    &json!({"email": email, "password": r.password}),
                )
                .await;
            let read = match a {
                Ok(a) => LoginRead {
                    status: a.status.as_u16(),
                    account: a
                        .json::<Value>()
                        .ok()
                        .and_then(|v| v["account"]["id"].as_str().map(str::to_string)),
                },
                Err(_) => LoginRead {
                    status: 0,
                    account: None,
                },
            };
            out.entry(email.clone())
                .or_default()
                .insert(r.password.clone(), read);
        }
    }
    out
}
