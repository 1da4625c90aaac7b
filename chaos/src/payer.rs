//! The payments workload: orders placed on one node and paid through
//! another (so most payments are forwarded to the seller), refunds of
//! random amounts asked of random nodes — two at once, to race — and
//! cancels after the capture, while the nemesis cuts, kills and heals. The
//! `payments` checker judges the provider's ledgers and the final orders.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_node::http_client::Client;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the workload was told about one order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PayRecord {
    /// The node that took the checkout.
    pub placed_on: String,
    /// The order's total, minor units.
    pub total_minor: u64,
    /// Nodes that answered the payment 200 with the order paid.
    pub paid_on: Vec<String>,
    /// Refunds answered 200: (node, minor units).
    pub refunds: Vec<(String, u64)>,
    /// Whether a cancel was answered 200.
    pub cancelled: bool,
}

/// Per order id, what was acknowledged.
pub type PayLog = BTreeMap<String, PayRecord>;

fn address() -> Value {
    json!({"name": "Chaos", "line1": "1 Fault Rd", "city": "Partition", "postalCode": "503", "country": "US"})
}

fn card() -> Value {
    json!({"card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"}})
}

/// Places and pays orders until `stop`, about `rate` a second, on `nodes`
/// (admin clients), buying `product` (10.00 a unit).
pub async fn run(
    nodes: Vec<(String, Client)>,
    product: String,
    seed: u64,
    rate: f64,
    log: Arc<Mutex<PayLog>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = crate::workload::rng(seed, 31_337);
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    while !*stop.borrow() && !nodes.is_empty() {
        tokio::time::sleep(gap.mul_f64(rng.random_range(0.5..1.5))).await;
        let (placed_on, c) = &nodes[rng.random_range(0..nodes.len())];
        let qty = rng.random_range(1..=3u32);
        let Ok(a) = c
            .post(
                "/api/v1/orders",
                &json!({"customerId": "payer", "lineItems": [{"productId": product, "quantity": qty}], "shippingAddress": address()}),
            )
            .await
        else {
            continue;
        };
        if a.status.as_u16() != 201 {
            continue;
        }
        let Some(order) = a
            .json::<Value>()
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string))
        else {
            continue;
        };
        let record = PayRecord {
            placed_on: placed_on.clone(),
            total_minor: u64::from(qty) * 1000,
            ..PayRecord::default()
        };
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(order.clone(), record);
        let note = |f: &dyn Fn(&mut PayRecord)| {
            if let Some(r) = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&order)
            {
                f(r);
            }
        };
        // Pay through random nodes, repeating a 503 a few times (each
        // repetition is safe: it resumes the same attempt).
        let mut paid = false;
        for _ in 0..4 {
            let (node, c) = &nodes[rng.random_range(0..nodes.len())];
            if let Ok(a) = c
                .post(&format!("/api/v1/orders/{order}/payments"), &card())
                .await
            {
                if a.status.as_u16() == 200
                    && a.json::<Value>()
                        .ok()
                        .is_some_and(|v| v["status"] == "paid")
                {
                    note(&|r| r.paid_on.push(node.clone()));
                    paid = true;
                    break;
                }
                if a.status.as_u16() != 503 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if !paid {
            continue;
        }
        let total = u64::from(qty) * 1000;
        if rng.random_bool(0.5) {
            // Two refunds asked of two nodes at once, each up to 70 %.
            let asks: Vec<(String, Client, u64)> = (0..2)
                .map(|_| {
                    let (node, c) = nodes[rng.random_range(0..nodes.len())].clone();
                    (node, c, rng.random_range(1..=total * 7 / 10))
                })
                .collect();
            let tasks: Vec<_> = asks
                .into_iter()
                .map(|(node, c, minor)| {
                    let order = order.clone();
                    tokio::spawn(async move {
                        let body = json!({"amount": format!("{}.{:02}", minor / 100, minor % 100), "reason": "chaos"});
                        let ok = c
                            .post(&format!("/api/v1/orders/{order}/refunds"), &body)
                            .await
                            .is_ok_and(|a| a.status.as_u16() == 200);
                        (node, minor, ok)
                    })
                })
                .collect();
            for t in tasks {
                if let Ok((node, minor, true)) = t.await {
                    note(&|r| r.refunds.push((node.clone(), minor)));
                }
            }
        } else if rng.random_bool(0.3) {
            let (_, c) = &nodes[rng.random_range(0..nodes.len())];
            if c.post(&format!("/api/v1/orders/{order}/cancel"), &json!({}))
                .await
                .is_ok_and(|a| a.status.as_u16() == 200)
            {
                note(&|r| r.cancelled = true);
            }
        }
    }
}

/// One node's view at the end: its provider ledger and the orders the log
/// names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PayReads {
    /// The test provider's ledger on the node (`None`: no answer).
    pub ledger: Option<Vec<Value>>,
    /// Per order: (captured, refunded) in minor units, from the order view.
    pub orders: BTreeMap<String, (u64, u64)>,
}

/// Reads one node's ledger and its views of the logged orders.
pub async fn read(c: &Client, log: &PayLog) -> PayReads {
    let ledger = match c.get("/api/v1/payments/test/ledger").await {
        Ok(a) if a.status.is_success() => a.json::<Vec<Value>>().ok(),
        _ => None,
    };
    let mut orders = BTreeMap::new();
    let minor = |v: &Value| (v.as_f64().unwrap_or(0.0) * 100.0).round() as u64;
    for id in log.keys() {
        if let Ok(a) = c.get(&format!("/api/v1/orders/{id}")).await
            && let Ok(v) = a.json::<Value>()
            && v["id"].is_string()
        {
            orders.insert(id.clone(), (minor(&v["captured"]), minor(&v["refunded"])));
        }
    }
    PayReads { ledger, orders }
}
