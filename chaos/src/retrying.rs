//! The retrying workload: shoppers that send every write with an
//! `Idempotency-Key` and retry it — up to three times, as an app behind a
//! load balancer does — whenever the answer is lost (a timeout, a refused or
//! reset connection, a 5xx) or says "try again" (409), and sometimes even
//! after a success, to see the replay. Checkouts retry on a random node each
//! time; cart adds on the shopper's home node, moving to another only when
//! the home node cannot be reached (a "crossed" retry, which may apply
//! twice: DESIGN says so).
//!
//! Each shopper buys only its own SKU and adds only to its own cart, so the
//! `exactly-once` checker can account for every unit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_node::http_client::{Answer, Client, ClientError};
use crdt_core::OrderId;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::{History, Kind};

/// Retries after the first attempt.
pub const MAX_RETRIES: usize = 3;
/// Units of its SKU restocked on every node for each shopper.
pub const STOCK_PER_NODE: u64 = 500;

/// One attempt: the node and its answer (`None`: lost).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    /// The node asked.
    pub node: String,
    /// The status, or `None` when the answer was lost.
    pub status: Option<u16>,
    /// Whether the answer was a replay.
    pub replayed: bool,
    /// The order id the answer named (checkouts).
    pub order: Option<String>,
}

/// One checkout and its retries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckoutTry {
    /// The shopper.
    pub customer: String,
    /// Its SKU.
    pub sku: String,
    /// The key.
    pub key: String,
    /// The order every node derives from (customer, key).
    pub order: String,
    /// Units bought.
    pub qty: u32,
    /// The attempts.
    pub attempts: Vec<Attempt>,
}

/// One cart add and its retries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddTry {
    /// The shopper's cart.
    pub cart: String,
    /// The attempts.
    pub attempts: Vec<Attempt>,
    /// Whether a retry went to another node than the first attempt's.
    pub crossed: bool,
}

/// Everything the retrying shoppers did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RetryLog {
    /// Checkouts.
    pub checkouts: Vec<CheckoutTry>,
    /// Cart adds.
    pub adds: Vec<AddTry>,
    /// Each shopper: (name, SKU, product id, cart).
    pub shoppers: Vec<(String, String, String, String)>,
    /// Units restocked per SKU (every restock of setup succeeded).
    pub supply: std::collections::BTreeMap<String, u64>,
}

/// One retrying shopper.
pub struct Shopper {
    name: String,
    sku: String,
    product: String,
    cart: String,
    home: usize,
    nodes: Vec<(String, Client)>,
    rng: StdRng,
    seq: u64,
    log: Arc<Mutex<RetryLog>>,
}

fn lost(r: &Result<Answer, ClientError>) -> bool {
    match r {
        Ok(a) => a.status.is_server_error(),
        Err(_) => true,
    }
}

fn attempt(node: &str, r: &Result<Answer, ClientError>) -> Attempt {
    match r {
        Ok(a) => Attempt {
            node: node.to_string(),
            status: Some(a.status.as_u16()),
            replayed: a
                .headers
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true"),
            order: a
                .json::<Value>()
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string)),
        },
        Err(_) => Attempt {
            node: node.to_string(),
            status: None,
            replayed: false,
            order: None,
        },
    }
}

/// Creates the shoppers' SKUs and stock (before any fault, logged in the
/// history like any write) and returns the shoppers. `admin[i]` and
/// `customer(i, name)` reach node `i`.
pub async fn setup(
    ids: &[String],
    admin: &[Client],
    customer: impl Fn(usize, &str) -> Client,
    count: usize,
    seed: u64,
    log: Arc<Mutex<RetryLog>>,
    history: &History,
) -> anyhow::Result<Vec<Shopper>> {
    let mut out = Vec::new();
    for k in 0..count {
        let name = format!("r{k}");
        let sku = format!("RETRY-{k}");
        let body = json!({"name": format!("Retry {k}"), "sku": sku, "price": "3.00",
                          "currency": "USD", "category": "retry", "initialQuantity": 0});
        let p = history.invoke(
            "setup",
            &ids[0],
            "create_product",
            json!({"path": "/api/v1/products", "body": body}),
        );
        let a = admin[0].post("/api/v1/products", &body).await?;
        let answer: Value = a.json().unwrap_or(Value::Null);
        history.complete(
            p,
            Kind::Ok,
            json!({"status": a.status.as_u16(), "body": answer}),
        );
        anyhow::ensure!(a.status.as_u16() == 201, "creating {sku}: {}", a.text());
        let product = a.json::<Value>()?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for (i, c) in admin.iter().enumerate() {
            // Every node holds rights, so each side of a partition can sell.
            let mut ok = false;
            let path = format!("/api/v1/inventory/{sku}/restock");
            let body = json!({"quantity": STOCK_PER_NODE});
            for _ in 0..50 {
                let p = history.invoke(
                    "setup",
                    &ids[i],
                    "restock",
                    json!({"path": path, "body": body}),
                );
                let r = c.post(&path, &body).await;
                // Anything but a clear refusal may have happened: the
                // oversell checker counts it as supply.
                let kind = match &r {
                    Ok(a) if a.status.is_success() => Kind::Ok,
                    Ok(a) if a.status.is_client_error() => Kind::Fail,
                    _ => Kind::Info,
                };
                history.complete(p, kind, json!({}));
                if kind == Kind::Ok {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::ensure!(ok, "restocking {sku} on node {i}");
        }
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .supply
            .insert(sku.clone(), STOCK_PER_NODE * ids.len() as u64);
        let cart = format!("retry-cart-{name}");
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .shoppers
            .push((name.clone(), sku.clone(), product.clone(), cart.clone()));
        out.push(Shopper {
            nodes: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), customer(i, &name)))
                .collect(),
            home: k % ids.len(),
            name,
            sku,
            product,
            cart,
            rng: StdRng::seed_from_u64(seed ^ 0x5EED_0000 ^ k as u64),
            seq: 0,
            log: log.clone(),
        });
    }
    Ok(out)
}

impl Shopper {
    /// Whether an app would send the write again: its answer was lost, a
    /// 5xx or a 409 — and, a third of the time, after a success, to see the
    /// replay.
    fn retry_after(&mut self, r: &Result<Answer, ClientError>, a: &Attempt) -> bool {
        lost(r)
            || a.status == Some(409)
            || (a.status.is_some_and(|s| s < 300) && self.rng.random_bool(0.3))
    }

    fn client(&self, i: usize, key: &str) -> Client {
        self.nodes[i].1.clone().with_header("Idempotency-Key", key)
    }

    async fn checkout(&mut self) {
        self.seq += 1;
        let key = format!("{}-checkout-{}", self.name, self.seq);
        let qty = self.rng.random_range(1..3u32);
        let body = json!({"customerId": self.name,
            "lineItems": [{"productId": self.product, "quantity": qty}],
            "shippingAddress": {"street": "1 Retry Rd", "city": "Split", "zip": "21000", "country": "HRV"}});
        let mut t = CheckoutTry {
            customer: self.name.clone(),
            sku: self.sku.clone(),
            order: OrderId::for_checkout(&self.name, &key).to_string(),
            key,
            qty,
            attempts: Vec::new(),
        };
        for n in 0..=MAX_RETRIES {
            let i = self.rng.random_range(0..self.nodes.len());
            let r = self.client(i, &t.key).post("/api/v1/orders", &body).await;
            let a = attempt(&self.nodes[i].0, &r);
            let again = self.retry_after(&r, &a);
            t.attempts.push(a);
            if !again || n == MAX_RETRIES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(50..400))).await;
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkouts
            .push(t);
    }

    async fn add(&mut self) {
        self.seq += 1;
        let key = format!("{}-add-{}", self.name, self.seq);
        let body = json!({"productId": self.product, "quantity": 1});
        let path = format!("/api/v1/carts/{}/items", self.cart);
        let mut t = AddTry {
            cart: self.cart.clone(),
            attempts: Vec::new(),
            crossed: false,
        };
        let mut i = self.home;
        for n in 0..=MAX_RETRIES {
            let r = self.client(i, &key).post(&path, &body).await;
            let unreachable = r.is_err();
            let a = attempt(&self.nodes[i].0, &r);
            let again = self.retry_after(&r, &a);
            t.attempts.push(a);
            if !again || n == MAX_RETRIES {
                break;
            }
            if unreachable && self.nodes.len() > 1 {
                // The home node cannot be reached: the app's balancer sends
                // the retry elsewhere.
                let j = (i + 1 + self.rng.random_range(0..self.nodes.len() - 1)) % self.nodes.len();
                t.crossed |= j != self.home;
                i = j;
            }
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(50..400))).await;
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .adds
            .push(t);
    }
}

/// Runs a shopper until `stop`, at about `rate` logical writes per second.
pub async fn run(mut s: Shopper, rate: f64, stop: tokio::sync::watch::Receiver<bool>) {
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    while !*stop.borrow() {
        if s.rng.random_bool(0.5) {
            s.checkout().await;
        } else {
            s.add().await;
        }
        let jitter = s.rng.random_range(0.5..1.5);
        tokio::time::sleep(gap.mul_f64(jitter)).await;
    }
}

/// What one node holds at the end for the retrying shoppers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RetryRead {
    /// Per SKU: its stock.
    pub stock: std::collections::BTreeMap<String, u64>,
    /// Per checkout order id: its status, if the node holds it.
    pub orders: std::collections::BTreeMap<String, String>,
    /// Per cart: the quantity of its one line.
    pub carts: std::collections::BTreeMap<String, u32>,
}

/// Reads what the checker needs from one node (admin client).
pub async fn read(c: &Client, log: &RetryLog) -> anyhow::Result<RetryRead> {
    let mut out = RetryRead::default();
    for (_, sku, _, cart) in &log.shoppers {
        let v: Value = c.get(&format!("/api/v1/inventory/{sku}")).await?.json()?;
        out.stock
            .insert(sku.clone(), v["stock"].as_u64().unwrap_or(0));
        let v: Value = c.get(&format!("/api/v1/carts/{cart}")).await?.json()?;
        let q = v["items"][0]["quantity"].as_u64().unwrap_or(0) as u32;
        out.carts.insert(cart.clone(), q);
    }
    for t in &log.checkouts {
        let a = c.get(&format!("/api/v1/orders/{}", t.order)).await?;
        if a.status.is_success() {
            let v: Value = a.json()?;
            out.orders.insert(
                t.order.clone(),
                v["status"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    Ok(out)
}
