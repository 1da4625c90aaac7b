//! `concord-bench`: the benchmarks of the README, against real node
//! processes (use a release build: `CONCORD_BIN=target/release/concord`).
//!
//! - `http`: durable cart adds and product GETs with 64 keep-alive clients,
//!   and bytes on disk per product and per cart after 100k of each;
//! - `replication`: replication lag, a frozen peer, convergence after a
//!   partition heals (1k/10k/100k ops), and bytes on the wire per cart add;
//! - `search`: search latency through HTTP on a node holding 100k products;
//! - `checkout`: one SKU restocked on one node, sold by clients on all
//!   three, on loopback and at a 50 ms round trip: refusals while stock
//!   remained, and the checkout latency;
//! - `logins`: sign-ins/s on one node, and the p99 of cart adds while
//!   logins flood it.
//!
//! Each prints a JSON report on stdout; `scripts/bench` runs them with
//! PostgreSQL's pgbench in the same run and writes the tables.

use clap::{Parser, Subcommand};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Client;
use serde_json::{Value, json};

mod checkout;
mod http;
mod logins;
mod replication;
mod search;

use checkout::checkout;
use http::http;
use logins::logins;
use replication::replication;
use search::search;

/// The same allocator as the node: the load generator shares the machine's
/// cores with the nodes it measures, so it should spend as little as they do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Entries for the bytes-on-disk measurement (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        fill: u64,
        /// Rounds of cart adds without and with an Idempotency-Key.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
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
    /// One SKU sold out by clients on every node: refusals while stock remained.
    Checkout {
        /// Units restocked on the first node.
        #[arg(long, default_value_t = 600)]
        units: u64,
        /// Clients, spread over the nodes.
        #[arg(long, default_value_t = 12)]
        clients: usize,
        /// Round trips between the nodes to run at, ms (0: loopback).
        #[arg(long, value_delimiter = ',', default_value = "0,50")]
        rtt_ms: Vec<u64>,
    },
    /// Logins/s on one node, and cart adds during a login flood.
    Logins {
        /// Accounts to sign in to.
        #[arg(long, default_value_t = 64)]
        accounts: usize,
        /// Concurrent login clients.
        #[arg(long, default_value_t = 16)]
        login_clients: usize,
        /// Concurrent cart clients.
        #[arg(long, default_value_t = 16)]
        cart_clients: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
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

pub(crate) fn cart(i: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        (i >> 48) as u32,
        i & 0xffff_ffff_ffff
    )
}

pub(crate) async fn create_products(
    c: &Client,
    n: usize,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
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

pub(crate) fn dir_size(p: &std::path::Path) -> u64 {
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

pub(crate) async fn single_node() -> anyhow::Result<ProcessCluster> {
    ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
}

pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
            rounds,
        } => http(clients, secs, fill, rounds).await?,
        What::Replication {
            divergence,
            frozen_secs,
        } => replication(&divergence, frozen_secs).await?,
        What::Search {
            products,
            clients,
            secs,
        } => search(products, clients, secs).await?,
        What::Checkout {
            units,
            clients,
            rtt_ms,
        } => checkout(units, clients, &rtt_ms).await?,
        What::Logins {
            accounts,
            login_clients,
            cart_clients,
            secs,
        } => logins(accounts, login_clients, cart_clients, secs).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
