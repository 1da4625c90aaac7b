//! The contended checkout: one SKU, restocked on one node, sold one unit at a
//! time by many clients spread over every node until it is gone — the test
//! of stock-rights transfers under load. Used by the integration test (which
//! asserts no refusal while units remain) and by `concord-bench checkout`
//! (which reports refusals and latency on loopback and behind a delay).
//!
//! A refusal (409 `insufficient_stock`) counts as *while stock remained*
//! when, at the moment it arrived, the units sold so far plus the checkouts
//! still in flight elsewhere were fewer than the stock: some unit was then
//! neither sold nor about to be, so the cluster held it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concord_node::auth::Role;
use concord_node::http_client::Client;
use serde::Serialize;
use serde_json::json;

use crate::loadgen::percentile;
use crate::procs::ProcessCluster;

/// What a contended-checkout run measured.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Units sold (201s).
    pub sold: u64,
    /// 409s while the cluster still held unsold units.
    pub refused_while_stock_remained: u64,
    /// 409s once everything was sold or spoken for (correct answers).
    pub refused_after_sellout: u64,
    /// Other answers and transport errors.
    pub errors: u64,
    /// Checkout latency quantiles, ms (every answer).
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// How long the sale took.
    pub seconds: f64,
}

/// Sells `units` units of `product` with `clients` clients spread over the
/// cluster's nodes (client k on node k mod n), one unit per checkout, until
/// the stock is gone (or 120 s pass).
pub async fn run(c: &ProcessCluster, product: &str, units: u64, clients: usize) -> Report {
    let sold = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut hs = Vec::new();
    for k in 0..clients {
        let node = k % c.nodes.len();
        let customer = format!("buyer{k}");
        let client = Client::new(c.nodes[node].http)
            .with_token(c.token(Role::Customer, &customer))
            .with_timeout(Duration::from_secs(10));
        let (sold, in_flight, product) = (sold.clone(), in_flight.clone(), product.to_string());
        hs.push(tokio::spawn(async move {
            let mut mine = Report::default();
            let mut lat = Vec::new();
            while sold.load(Ordering::SeqCst) < units && started.elapsed() < Duration::from_secs(120)
            {
                let body = json!({"customerId": customer, "lineItems": [{"productId": product, "quantity": 1}],
                    "shippingAddress": {"name": "B", "line1": "1 St", "city": "X", "postalCode": "1", "country": "US"}});
                in_flight.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                let answer = client.post("/api/v1/orders", &body).await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                let others = in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
                match answer {
                    Ok(a) if a.status.as_u16() == 201 => {
                        sold.fetch_add(1, Ordering::SeqCst);
                        mine.sold += 1;
                    }
                    Ok(a) if a.status.as_u16() == 409 && a.text().contains("insufficient_stock") => {
                        if sold.load(Ordering::SeqCst) + (others as u64) < units {
                            mine.refused_while_stock_remained += 1;
                            if std::env::var_os("CONCORD_BENCH_VERBOSE").is_some() {
                                eprintln!(
                                    "refused while stock remained: node {node}, sold {}, in flight {others}: {}",
                                    sold.load(Ordering::SeqCst),
                                    a.text()
                                );
                            }
                        } else {
                            mine.refused_after_sellout += 1;
                        }
                    }
                    _ => mine.errors += 1,
                }
            }
            (mine, lat)
        }));
    }
    let mut total = Report::default();
    let mut lat = Vec::new();
    for h in hs {
        if let Ok((r, l)) = h.await {
            total.sold += r.sold;
            total.refused_while_stock_remained += r.refused_while_stock_remained;
            total.refused_after_sellout += r.refused_after_sellout;
            total.errors += r.errors;
            lat.extend(l);
        }
    }
    lat.sort_by(f64::total_cmp);
    total.p50_ms = percentile(&lat, 50.0);
    total.p99_ms = percentile(&lat, 99.0);
    total.seconds = started.elapsed().as_secs_f64();
    total
}
