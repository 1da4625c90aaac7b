//! Observing the cluster: version vectors, catch-up after a heal, the final
//! reads of every node, and metric values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use concord_node::http_client::Client;
use serde_json::Value;

use crate::checkers::convergence::Heal;
use crate::checkers::{Inventory, NodeRead, OrderRead};
use crate::history::History;
use crate::procs::ProcessCluster;

/// Every node's version vector (None: unreachable).
pub async fn vvs(c: &ProcessCluster) -> Vec<Option<BTreeMap<String, u64>>> {
    c.statuses()
        .await
        .into_iter()
        .map(|s| {
            s.and_then(|s| {
                s["versionVector"].as_object().map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
            })
        })
        .collect()
}

/// After a heal: how long until every reachable node holds at least what
/// any node held at the heal.
pub async fn measure_heal(
    c: &ProcessCluster,
    history: &History,
    fault: String,
    limit: Duration,
) -> Heal {
    let heal_ms = history.now_ms();
    let start = vvs(c).await;
    let live: Vec<usize> = start
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_some())
        .map(|(i, _)| i)
        .collect();
    let mut target: BTreeMap<String, u64> = BTreeMap::new();
    for v in start.iter().flatten() {
        for (a, s) in v {
            let e = target.entry(a.clone()).or_insert(0);
            *e = (*e).max(*s);
        }
    }
    let t = Instant::now();
    let converged_ms = loop {
        let now = vvs(c).await;
        let done = live.iter().all(|i| {
            now[*i].as_ref().is_some_and(|v| {
                target
                    .iter()
                    .all(|(a, s)| v.get(a).copied().unwrap_or(0) >= *s)
            })
        });
        if done {
            break Some(history.now_ms());
        }
        if t.elapsed() > limit * 2 {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    Heal {
        heal_ms,
        converged_ms,
        fault,
    }
}

/// Everything one node holds, read through its API.
pub async fn read_node(c: &Client, skus: &BTreeSet<String>) -> anyhow::Result<NodeRead> {
    let mut r = NodeRead::default();
    let st: Value = c.get("/api/v1/cluster/status").await?.json()?;
    r.digest = st["digest"].as_str().unwrap_or_default().into();
    for (path, which) in [
        ("/api/v1/products", 0),
        ("/api/v1/carts", 1),
        ("/api/v1/orders", 2),
    ] {
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(cur) => format!("{path}?limit=100&cursor={cur}"),
                None => format!("{path}?limit=100"),
            };
            let page: Value = c.get(&url).await?.json()?;
            for it in page["items"].as_array().cloned().unwrap_or_default() {
                let id = it["id"].as_str().unwrap_or_default().to_string();
                match which {
                    0 => {
                        r.products
                            .insert(id, it["sku"].as_str().unwrap_or_default().into());
                    }
                    1 => {
                        let items = it["items"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|i| {
                                        (
                                            i["productId"].as_str().unwrap_or_default().to_string(),
                                            i["quantity"].as_u64().unwrap_or(0) as u32,
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        r.carts.insert(id, items);
                    }
                    _ => {
                        let mut units = BTreeMap::new();
                        for l in it["lineItems"].as_array().cloned().unwrap_or_default() {
                            *units
                                .entry(l["sku"].as_str().unwrap_or_default().to_string())
                                .or_insert(0) += l["quantity"].as_u64().unwrap_or(0);
                        }
                        r.orders.insert(
                            id,
                            OrderRead {
                                status: it["status"].as_str().unwrap_or_default().into(),
                                units,
                            },
                        );
                    }
                }
            }
            cursor = page["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
    }
    let mut all_skus: BTreeSet<String> = skus.clone();
    all_skus.extend(r.products.values().cloned());
    for sku in all_skus {
        let a = c.get(&format!("/api/v1/inventory/{sku}")).await?;
        if a.status.is_success() {
            let v: Value = a.json()?;
            let inv = Inventory::from_json(&v).ok_or_else(|| {
                anyhow::anyhow!("the inventory of {sku} lacks stock, restocked or liveSold: {v}")
            })?;
            r.inventory.insert(sku, inv);
        }
    }
    Ok(r)
}

/// Sum of a metric's samples in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
