//! Search latency through HTTP on a node holding many products.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord_chaos::loadgen::{self};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Method;
use serde_json::{Value, json};

use crate::metric;

const ADJ: &[&str] = &[
    "Compact",
    "Wireless",
    "Organic",
    "Stainless",
    "Vintage",
    "Ergonomic",
    "Waterproof",
    "Portable",
    "Handmade",
    "Smart",
    "Ceramic",
    "Bamboo",
    "Leather",
    "Cotton",
    "Carbon",
    "Insulated",
    "Foldable",
    "Rechargeable",
    "Classic",
    "Modular",
];
const NOUN: &[&str] = &[
    "headphones",
    "kettle",
    "backpack",
    "lamp",
    "blender",
    "tent",
    "sneakers",
    "desk",
    "keyboard",
    "mug",
    "jacket",
    "speaker",
    "skillet",
    "notebook",
    "drone",
    "camera",
    "bottle",
    "chair",
    "watch",
    "blanket",
    "scarf",
    "grinder",
    "router",
    "monitor",
    "yoga mat",
    "bike light",
    "espresso machine",
    "sunglasses",
    "planter",
    "puzzle",
];
const CAT: &[&str] = &[
    "electronics",
    "kitchen",
    "outdoor",
    "home",
    "apparel",
    "sports",
    "toys",
    "beauty",
    "books",
    "garden",
];

fn product_text(i: u64) -> (String, String, String) {
    let a = ADJ[(i % ADJ.len() as u64) as usize];
    let b = ADJ[((i / 7) % ADJ.len() as u64) as usize];
    let n = NOUN[((i / 3) % NOUN.len() as u64) as usize];
    let c = CAT[((i / 11) % CAT.len() as u64) as usize];
    (
        format!("{a} {b} {n} {i}"),
        format!("A {} {n} in {c}, model {i}.", a.to_lowercase()),
        c.to_string(),
    )
}

/// Search latency on a node holding `n` products, embedding dimension 256.
pub(crate) async fn search(n: u64, clients: usize, secs: u64) -> anyhow::Result<Value> {
    let c = ProcessCluster::start(Spec {
        nodes: 1,
        embedding_dim: 256,
        ..Default::default()
    })
    .await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let fill = loadgen::run(
        "catalog fill",
        c.nodes[0].http,
        Some(c.admin_token()),
        32,
        Duration::from_secs(3_600),
        Arc::new(move |_, _| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (i < n).then(|| {
                let (name, desc, cat) = product_text(i);
                let body = json!({"name": name, "sku": format!("S-{i}"), "price": "19.99", "currency": "USD",
                    "description": desc, "category": cat});
                (Method::POST, "/api/v1/products".to_string(), Some(body.to_string().into_bytes()))
            })
        }),
    )
    .await;
    // Wait until the search replica has indexed everything.
    let metrics = c.anonymous(0);
    loop {
        let t = metrics.get("/metrics").await?.text();
        if metric(&t, "concord_search_documents") as u64 >= fill.ok {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1_800),
            "indexing did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let indexed_after = started.elapsed().as_secs_f64();
    let queries = [
        "wireless headphones",
        "stainless kettle",
        "waterproof tent",
        "espresso machine",
        "yoga mat",
        "leather backpack",
        "rechargeable bike light",
        "ceramic mug",
        "S-4242",
        "portable speaker",
    ];
    let mut out =
        json!({"products": fill.ok, "fill_rps": fill.rps, "indexed_after_s": indexed_after});
    for (label, k_clients) in [("one client", 1usize), ("concurrent", clients)] {
        let r = loadgen::run(
            label,
            c.nodes[0].http,
            None,
            k_clients,
            Duration::from_secs(secs),
            Arc::new(move |w, i| {
                let q =
                    queries[((w as u64 + i) % queries.len() as u64) as usize].replace(' ', "%20");
                Some((
                    Method::GET,
                    format!("/api/v1/search/products?q={q}&k=10"),
                    None,
                ))
            }),
        )
        .await;
        out[label.replace(' ', "_")] = serde_json::to_value(&r)?;
    }
    Ok(out)
}
