//! The workload: client processes that drive random nodes through the real
//! HTTP API with a mix of catalog edits, cart adds/sets/removes, restocks,
//! checkouts and cancels, logging each operation in the history. A request
//! that times out or loses its connection is `info` — it may have happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_node::http_client::{Answer, Client};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::history::{History, Kind};

/// What the clients share: ids they can act on.
#[derive(Default)]
pub struct Shared {
    /// Products created (id, sku).
    pub products: Vec<(String, String)>,
    /// Orders placed (id).
    pub orders: Vec<String>,
}

/// One client process.
pub struct ClientProc {
    /// Its name in the history (`c3`).
    pub name: String,
    /// One client per node (admin token), and node ids.
    pub nodes: Vec<(String, Client)>,
    /// Seeded randomness.
    pub rng: StdRng,
    /// Ids shared between clients.
    pub shared: Arc<Mutex<Shared>>,
    /// The history.
    pub history: Arc<History>,
    /// Number of carts to spread adds over.
    pub carts: u64,
}

fn cart_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn address() -> Value {
    json!({"name": "Chaos Client", "line1": "1 Fault Lane", "city": "Split", "postalCode": "21000", "country": "HR"})
}

/// The outcome of an answer: ok on 2xx, fail on 4xx (it did not happen), info
/// otherwise (5xx: unknown).
fn classify(a: &Answer) -> Kind {
    let s = a.status.as_u16();
    if (200..300).contains(&s) {
        Kind::Ok
    } else if (400..500).contains(&s) {
        Kind::Fail
    } else {
        Kind::Info
    }
}

impl ClientProc {
    fn pick_node(&mut self) -> (String, Client) {
        let i = self.rng.random_range(0..self.nodes.len());
        self.nodes[i].clone()
    }

    fn pick_product(&mut self) -> Option<(String, String)> {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if s.products.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..s.products.len());
        Some(s.products[i].clone())
    }

    /// Runs one random operation.
    pub async fn step(&mut self) {
        let (node, client) = self.pick_node();
        let roll = self.rng.random_range(0..100);
        let product = self.pick_product();
        let cart = cart_id(self.rng.random_range(0..self.carts));
        let (f, method, path, body): (&str, &str, String, Option<Value>) = match (roll, product) {
            (0..4, _) | (_, None) => {
                let sku = format!(
                    "CH-{}-{}",
                    self.name,
                    self.rng.random_range(0..1_000_000u32)
                );
                let body = json!({"name": format!("Chaos {sku}"), "sku": sku, "price": "5.00", "currency": "USD",
                    "category": "chaos", "initialQuantity": self.rng.random_range(0..10u32)});
                (
                    "create_product",
                    "POST",
                    "/api/v1/products".into(),
                    Some(body),
                )
            }
            (4..8, Some((id, _))) => {
                let cents = self.rng.random_range(100..10_000u32);
                let body = json!({"price": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"});
                (
                    "update_price",
                    "PUT",
                    format!("/api/v1/products/{id}/price"),
                    Some(body),
                )
            }
            (8..9, Some((id, _))) => (
                "delete_product",
                "DELETE",
                format!("/api/v1/products/{id}"),
                None,
            ),
            (9..45, Some((id, _))) => (
                "cart_add",
                "POST",
                format!("/api/v1/carts/{cart}/items"),
                Some(json!({"productId": id, "quantity": self.rng.random_range(1..3u32)})),
            ),
            (45..52, Some((id, _))) => (
                "cart_set",
                "PUT",
                format!("/api/v1/carts/{cart}/items/{id}"),
                Some(json!({"quantity": self.rng.random_range(0..4u32)})),
            ),
            (52..58, Some((id, _))) => (
                "cart_remove",
                "DELETE",
                format!("/api/v1/carts/{cart}/items/{id}"),
                None,
            ),
            (58..66, Some((_, sku))) => (
                "restock",
                "POST",
                format!("/api/v1/inventory/{sku}/restock"),
                Some(json!({"quantity": self.rng.random_range(1..5u32)})),
            ),
            (66..82, Some((id, _))) => {
                let body = if self.rng.random_bool(0.5) {
                    json!({"cartId": cart, "customerId": self.name, "shippingAddress": address()})
                } else {
                    json!({"lineItems": [{"productId": id, "quantity": self.rng.random_range(1..3u32)}],
                           "customerId": self.name, "shippingAddress": address()})
                };
                ("checkout", "POST", "/api/v1/orders".into(), Some(body))
            }
            (82..88, _) => {
                let order = {
                    let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                    if s.orders.is_empty() {
                        None
                    } else {
                        Some(s.orders[self.rng.random_range(0..s.orders.len())].clone())
                    }
                };
                match order {
                    Some(o) => (
                        "cancel",
                        "POST",
                        format!("/api/v1/orders/{o}/cancel"),
                        Some(json!({})),
                    ),
                    None => ("read_cart", "GET", format!("/api/v1/carts/{cart}"), None),
                }
            }
            _ => ("read_cart", "GET", format!("/api/v1/carts/{cart}"), None),
        };
        let mut value = json!({"path": path});
        if let Some(b) = &body {
            value["body"] = b.clone();
        }
        if f.starts_with("cart_") || f == "read_cart" {
            value["cart"] = json!(cart);
        }
        let pending = self.history.invoke(&self.name, &node, f, value);
        let method = concord_node::http_client::Method::from_bytes(method.as_bytes())
            .unwrap_or(concord_node::http_client::Method::GET);
        let answer = client.send(method, &path, body.as_ref()).await;
        match answer {
            Ok(a) => {
                let kind = classify(&a);
                let v: Value = a.json().unwrap_or(Value::Null);
                if kind == Kind::Ok {
                    let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                    match f {
                        "create_product" => {
                            if let (Some(id), Some(sku)) = (v["id"].as_str(), v["sku"].as_str()) {
                                s.products.push((id.into(), sku.into()));
                            }
                        }
                        "checkout" => {
                            if let Some(id) = v["id"].as_str() {
                                s.orders.push(id.into());
                            }
                        }
                        _ => {}
                    }
                }
                let result = json!({"status": a.status.as_u16(), "body": trim(v)});
                self.history.complete(pending, kind, result);
            }
            // A refused connection definitely did not deliver the request.
            Err(e @ concord_node::http_client::ClientError::Connect { .. }) => self
                .history
                .complete(pending, Kind::Fail, json!({"error": e.to_string()})),
            Err(e) => self
                .history
                .complete(pending, Kind::Info, json!({"error": e.to_string()})),
        }
    }
}

/// Keeps what checkers need of a response body, drops the rest.
fn trim(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            for k in [
                "description",
                "attributes",
                "tags",
                "shippingAddress",
                "updatedAt",
            ] {
                m.remove(k);
            }
            Value::Object(m)
        }
        other => other,
    }
}

/// Runs a client until `stop`, at about `rate` operations per second.
pub async fn run_client(mut c: ClientProc, rate: f64, stop: tokio::sync::watch::Receiver<bool>) {
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    while !*stop.borrow() {
        c.step().await;
        let jitter = c.rng.random_range(0.5..1.5);
        tokio::time::sleep(gap.mul_f64(jitter)).await;
    }
}

/// Seeded randomness for client `i` of a run.
pub fn rng(seed: u64, i: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}
