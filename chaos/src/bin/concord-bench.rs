//! `concord-bench`: the benchmarks of the README, against real node
//! processes (use a release build: `CONCORD_BIN=target/release/concord`).
//!
//! - `http`: durable cart adds and product GETs with 64 keep-alive clients,
//!   and bytes on disk per product and per cart after 100k of each;
//! - `replication`: replication lag, a frozen peer, convergence after a
//!   partition heals (1k/10k/100k ops), and bytes on the wire per cart add.
//!
//! Each prints a JSON report on stdout; `scripts/bench` runs them with
//! PostgreSQL's pgbench in the same run and writes the tables.

use std::sync::Arc;

/// The same allocator as the node: the load generator shares the machine's cores
/// with the nodes it measures, so it should spend as little as they do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use concord_chaos::loadgen::{self, LoadReport, percentile};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::{Client, Method};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Concord benchmarks against real node processes")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Durable cart adds/s and product GETs/s with 64 clients; bytes on disk.
    Http {
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds per load phase.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Entries for the bytes-on-disk measurement.
        #[arg(long, default_value_t = 100_000)]
        fill: u64,
    },
    /// Semantic search through HTTP on a node holding many products.
    Search {
        /// Products in the catalog.
        #[arg(long, default_value_t = 100_000)]
        products: u64,
        /// Concurrent search clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds of searching.
        #[arg(long, default_value_t = 15)]
        secs: u64,
    },
    /// Replication lag, frozen peer, convergence after a heal, wire bytes.
    Replication {
        /// Divergences to converge from after a partition.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        divergence: Vec<u64>,
        /// Seconds the third node stays frozen.
        #[arg(long, default_value_t = 20)]
        frozen_secs: u64,
    },
}

fn cart(i: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        (i >> 48) as u32,
        i & 0xffff_ffff_ffff
    )
}

async fn create_products(c: &Client, n: usize, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let a = c
            .post(
                "/api/v1/products",
                &json!({"name": format!("Bench product {i}"), "sku": format!("{prefix}-{i}"), "price": "9.99",
                        "currency": "USD", "initialQuantity": 1_000_000_000u64}),
            )
            .await?;
        anyhow::ensure!(a.status.as_u16() == 201, "create: {}", a.text());
        ids.push(
            a.json::<Value>()?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    Ok(ids)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let md = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if md.is_dir() {
                dir_size(&e.path())
            } else {
                md.len()
            };
        }
    }
    total
}

async fn single_node() -> anyhow::Result<ProcessCluster> {
    ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
}

async fn http(clients: usize, secs: u64, fill: u64) -> anyhow::Result<Value> {
    let c = single_node().await?;
    let admin = c.client(0);
    let products = Arc::new(create_products(&admin, 1_000, "B").await?);
    let addr = c.nodes[0].http;
    let token = Some(c.admin_token());
    // Durable cart adds: random carts among 100k (an upsert of one line).
    let p = products.clone();
    let adds = loadgen::run(
        "durable cart adds",
        addr,
        token.clone(),
        clients,
        Duration::from_secs(secs),
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
        }),
    )
    .await;
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
    let disk = bytes_on_disk(clients, fill).await?;
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

async fn wait_cart(c: &Client, cart: &str, deadline: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < deadline {
        if let Ok(a) = c.get(&format!("/api/v1/carts/{cart}")).await
            && a.text().contains("productId")
        {
            return Some(t.elapsed());
        }
    }
    None
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn replication(divergence: &[u64], frozen_secs: u64) -> anyhow::Result<Value> {
    let mut report = json!({});
    // --- Lag: 200 single adds at 20/s on n1; after each ack, poll n3.
    {
        let c = ProcessCluster::start(Spec::default()).await?;
        let p = create_products(&c.client(0), 1, "L").await?.remove(0);
        c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
            .await?;
        let (n1, n3) = (c.client(0), c.client(2));
        let metrics0 = c.anonymous(0).get("/metrics").await?.text();
        let (tx0, rx_all0) = wire_totals(&c).await;
        let mut lags = Vec::new();
        for i in 0..200u64 {
            let t = Instant::now();
            let id = cart(1_000_000 + i);
            let a = n1
                .post(
                    &format!("/api/v1/carts/{id}/items"),
                    &json!({"productId": p, "quantity": 1}),
                )
                .await?;
            anyhow::ensure!(a.status.is_success(), "{}", a.text());
            let lag = wait_cart(&n3, &id, Duration::from_secs(10))
                .await
                .context("not replicated in 10 s")?;
            lags.push(lag.as_secs_f64() * 1000.0);
            if let Some(rest) = Duration::from_millis(50).checked_sub(t.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let metrics1 = c.anonymous(0).get("/metrics").await?.text();
        let (tx1, rx_all1) = wire_totals(&c).await;
        lags.sort_by(|a, b| a.total_cmp(b));
        let pushed = metric(&metrics1, "concord_wire_bytes_sent_total{kind=\"push\"}")
            - metric(&metrics0, "concord_wire_bytes_sent_total{kind=\"push\"}");
        report["lag"] = json!({"writes": 200, "p50_ms": percentile(&lags, 50.0), "p90_ms": percentile(&lags, 90.0),
            "p99_ms": percentile(&lags, 99.0), "max_ms": lags.last()});
        report["wire"] = json!({
            "writes": 200, "peers": 2,
            "n1_udp_tx_bytes_per_write_per_peer": (tx1 - tx0) / 400.0,
            "cluster_udp_bytes_per_write_per_peer": (rx_all1 - rx_all0) / 400.0,
            "push_frame_bytes_per_write_per_peer": pushed / 400.0,
        });
    }
    // --- Frozen peer: SIGSTOP n3, 10k adds on n1 with 16 clients, SIGCONT after `frozen_secs`.
    {
        let c = ProcessCluster::start(Spec::default()).await?;
        let p = Arc::new(create_products(&c.client(0), 1, "F").await?.remove(0));
        c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
            .await?;
        c.pause(2)?;
        let frozen_at = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let n2 = c.anonymous(1);
        let n1 = c.anonymous(0);
        let watch = tokio::spawn(async move {
            // How far n2 trails n1 while n3 is frozen: deltas behind, and for how long.
            let mut max_behind = 0u64;
            let mut behind_since: Option<Instant> = None;
            let mut longest = Duration::ZERO;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(25) {
                let (a, b) = tokio::join!(
                    n1.get("/api/v1/cluster/status"),
                    n2.get("/api/v1/cluster/status")
                );
                if let (Ok(a), Ok(b)) = (a, b)
                    && let (Ok(a), Ok(b)) = (a.json::<Value>(), b.json::<Value>())
                {
                    let x = a["versionVector"]["n1"].as_u64().unwrap_or(0);
                    let y = b["versionVector"]["n1"].as_u64().unwrap_or(0);
                    let behind = x.saturating_sub(y);
                    max_behind = max_behind.max(behind);
                    if behind > 50 {
                        let s = *behind_since.get_or_insert_with(Instant::now);
                        longest = longest.max(s.elapsed());
                    } else {
                        behind_since = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (max_behind, longest)
        });
        let pp = p.clone();
        let w = loadgen::run(
            "frozen-peer writes",
            c.nodes[0].http,
            Some(c.admin_token()),
            16,
            Duration::from_secs(120),
            Arc::new(move |_, _| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < 10_000).then(|| {
                    let body = format!(r#"{{"productId":"{pp}","quantity":1}}"#);
                    (
                        Method::POST,
                        format!("/api/v1/carts/{}/items", cart(2_000_000 + i)),
                        Some(body.into_bytes()),
                    )
                })
            }),
        )
        .await;
        if let Some(rest) = Duration::from_secs(frozen_secs).checked_sub(frozen_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        c.resume(2)?;
        let resumed = Instant::now();
        let target = c
            .anonymous(0)
            .get("/api/v1/cluster/status")
            .await?
            .json::<Value>()?["versionVector"]["n1"]
            .as_u64()
            .unwrap_or(0);
        let caught_up = loop {
            if let Ok(a) = c
                .anonymous(2)
                .with_timeout(Duration::from_millis(500))
                .get("/api/v1/cluster/status")
                .await
                && let Ok(v) = a.json::<Value>()
                && v["versionVector"]["n1"].as_u64().unwrap_or(0) >= target
            {
                break resumed.elapsed();
            }
            anyhow::ensure!(
                resumed.elapsed() < Duration::from_secs(60),
                "n3 did not catch up in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (max_behind, longest) = watch.await?;
        report["frozen"] = json!({"writes": w.ok, "write_rps": w.rps, "write_p99_ms": w.p99_ms, "frozen_secs": frozen_secs,
            "catch_up_after_sigcont_ms": caught_up.as_secs_f64() * 1000.0,
            "healthy_peer_max_behind_deltas": max_behind, "healthy_peer_longest_behind_ms": longest.as_secs_f64() * 1000.0});
    }
    // --- Convergence after a partition heals.
    let mut conv = Vec::new();
    for &k in divergence {
        let c = ProcessCluster::start(Spec {
            proxies: true,
            ..Default::default()
        })
        .await?;
        let p = Arc::new(create_products(&c.client(0), 1, "C").await?.remove(0));
        c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
            .await?;
        let ids = c.ids();
        c.faults.partition(&ids[2..], &ids[..2]);
        let next = Arc::new(AtomicU64::new(0));
        let pp = p.clone();
        let w = loadgen::run(
            "partitioned writes",
            c.nodes[0].http,
            Some(c.admin_token()),
            32,
            Duration::from_secs(3_600),
            Arc::new(move |_, _| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < k).then(|| {
                    let body = format!(r#"{{"productId":"{pp}","quantity":1}}"#);
                    (
                        Method::POST,
                        format!("/api/v1/carts/{}/items", cart(3_000_000 + i)),
                        Some(body.into_bytes()),
                    )
                })
            }),
        )
        .await;
        c.wait_converged(&[0, 1], Duration::from_secs(120)).await?;
        c.faults.heal();
        let took = c
            .wait_converged(&[0, 1, 2], Duration::from_secs(180))
            .await?;
        conv.push(
            json!({"divergent_ops": w.ok, "converge_ms_after_heal": took.as_secs_f64() * 1000.0}),
        );
    }
    report["convergence"] = Value::Array(conv);
    Ok(report)
}

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
async fn search(n: u64, clients: usize, secs: u64) -> anyhow::Result<Value> {
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

/// n1's UDP bytes sent, and every node's UDP bytes received, so far.
async fn wire_totals(c: &ProcessCluster) -> (f64, f64) {
    let mut tx = 0.0;
    let mut rx = 0.0;
    for i in 0..c.nodes.len() {
        if let Ok(a) = c.anonymous(i).get("/metrics").await {
            let t = a.text();
            if i == 0 {
                tx = metric(&t, "concord_peer_udp_tx_bytes");
            }
            rx += metric(&t, "concord_peer_udp_rx_bytes");
        }
    }
    (tx, rx)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let out = match args.what {
        What::Http {
            clients,
            secs,
            fill,
        } => http(clients, secs, fill).await?,
        What::Replication {
            divergence,
            frozen_secs,
        } => replication(&divergence, frozen_secs).await?,
        What::Search {
            products,
            clients,
            secs,
        } => search(products, clients, secs).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
