//! The replication benchmarks: lag, a frozen peer, convergence after a
//! heal, and bytes on the wire per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord_chaos::loadgen::{self, percentile};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::{Client, Method};
use serde_json::{Value, json};

use crate::{cart, create_products, metric};
use anyhow::Context;

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

/// Replication lag, a frozen peer, convergence after heals, wire bytes.
pub(crate) async fn replication(divergence: &[u64], frozen_secs: u64) -> anyhow::Result<Value> {
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
