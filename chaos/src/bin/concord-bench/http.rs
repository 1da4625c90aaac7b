//! The HTTP benchmark: durable cart adds, product GETs, bytes on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord_chaos::loadgen::{self, LoadReport};
use concord_node::http_client::Method;
use serde_json::{Value, json};

use crate::{cart, create_products, dir_size, single_node};

/// Durable cart adds and product GETs with 64 clients; bytes on disk.
pub(crate) async fn http(
    clients: usize,
    secs: u64,
    fill: u64,
    rounds: usize,
) -> anyhow::Result<Value> {
    let c = single_node().await?;
    let admin = c.client(0);
    let products = Arc::new(create_products(&admin, 1_000, "B").await?);
    let addr = c.nodes[0].http;
    let token = Some(c.admin_token());
    // Durable cart adds: random carts among 100k (an upsert of one line),
    // then the same with an Idempotency-Key on every add, alternating so
    // that both see the same machine: the record's cost per write.
    let add = |p: Arc<Vec<String>>| -> Arc<loadgen::RequestFn> {
        Arc::new(move |w, i| {
            let n = (w as u64)
                .wrapping_mul(0x9E37_79B9)
                .wrapping_add(i.wrapping_mul(7919))
                % 100_000;
            let body = format!(
                r#"{{"productId":"{}","quantity":1}}"#,
                p[(n % 1000) as usize]
            );
            Some((
                Method::POST,
                format!("/api/v1/carts/{}/items", cart(n)),
                Some(body.into_bytes()),
            ))
        })
    };
    let mut plain = Vec::new();
    let mut keyed = Vec::new();
    // The node's CPU time per add, beside the rate: the two processes share
    // the machine's cores, so the rate alone mixes in the load generator.
    let pid = c.nodes[0].pid();
    let (mut plain_cpu, mut keyed_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        // ABBA: the store grows as the run goes on (carts gain lines), so
        // every other round runs keyed first, and neither kind always
        // meets the larger store.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_key in order {
            let cpu_before = pid.and_then(cpu_secs);
            let label = if with_key {
                format!("durable cart adds with Idempotency-Key, round {round}")
            } else {
                format!("durable cart adds, round {round}")
            };
            let r = loadgen::run_with(
                &label,
                addr,
                token.clone(),
                clients,
                Duration::from_secs(secs),
                add(products.clone()),
                with_key,
            )
            .await;
            let cpu = match (cpu_before, pid.and_then(cpu_secs)) {
                (Some(a), Some(b)) => (b - a) * 1e6 / r.ok.max(1) as f64,
                _ => f64::NAN,
            };
            if with_key {
                keyed.push(r);
                keyed_cpu.push(cpu);
            } else {
                plain.push(r);
                plain_cpu.push(cpu);
            }
        }
    }
    let ratio: Vec<f64> = plain
        .iter()
        .zip(&keyed)
        .map(|(a, b)| b.rps / a.rps.max(1e-9))
        .collect();
    let cpu_ratio: Vec<f64> = plain_cpu
        .iter()
        .zip(&keyed_cpu)
        .map(|(a, b)| b / a)
        .collect();
    let adds = json!({"plain": plain, "keyed": keyed, "keyed_over_plain": ratio,
        "node_cpu_us_per_add": {"plain": plain_cpu, "keyed": keyed_cpu, "keyed_over_plain": cpu_ratio}});
    let p = products.clone();
    let gets = loadgen::run(
        "product GETs",
        addr,
        None,
        clients,
        Duration::from_secs(secs.min(10)),
        Arc::new(move |w, i| {
            let id = &p[((w as u64 * 31 + i) % 1000) as usize];
            Some((Method::GET, format!("/api/v1/products/{id}"), None))
        }),
    )
    .await;
    drop(c);
    let disk = if fill == 0 {
        Value::Null
    } else {
        bytes_on_disk(clients, fill).await?
    };
    Ok(json!({"cart_adds": adds, "product_gets": gets, "disk": disk}))
}

/// Fills fresh nodes with `n` products, then `n` one-line carts, and measures
/// the store's size per entry.
async fn bytes_on_disk(clients: usize, n: u64) -> anyhow::Result<Value> {
    let mut out = json!({});
    for kind in ["products", "carts"] {
        let c = single_node().await?;
        let product = create_products(&c.client(0), 1, "D").await?.remove(0);
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let r: LoadReport = loadgen::run(
            kind,
            c.nodes[0].http,
            Some(c.admin_token()),
            clients,
            Duration::from_secs(3_600),
            Arc::new(move |_, _| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return None;
                }
                Some(if kind == "products" {
                    let body = format!(
                        r#"{{"name":"Filler product {i}","sku":"F-{i}","price":"12.50","currency":"USD","description":"A product used to measure bytes on disk.","category":"bench","tags":["filler"],"initialQuantity":10}}"#
                    );
                    (Method::POST, "/api/v1/products".into(), Some(body.into_bytes()))
                } else {
                    let body = format!(r#"{{"productId":"{product}","quantity":1}}"#);
                    (Method::POST, format!("/api/v1/carts/{}/items", cart(i)), Some(body.into_bytes()))
                })
            }),
        )
        .await;
        let store = c.node_dir(0).join("store");
        let bytes = dir_size(&store);
        out[kind] = json!({"entries": r.ok, "errors": r.errors, "store_bytes": bytes,
            "bytes_per_entry": bytes as f64 / r.ok.max(1) as f64, "fill_secs": started.elapsed().as_secs_f64(), "fill_rps": r.rps});
    }
    Ok(out)
}

/// A process's CPU time (user and system, all threads) in seconds, from
/// `/proc` (Linux; clock ticks of 1/100 s, the kernel's `USER_HZ`).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
