//! The contended checkout: one SKU restocked on one node and sold one unit
//! at a time by clients on every node, on loopback and with a round-trip
//! delay between the nodes (the fault proxy's delay), reporting the
//! refusals while stock remained and the checkout latency.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_chaos::proxy::LinkFault;
use serde_json::{Value, json};

/// One run per RTT in `rtts_ms` (0 is plain loopback).
pub async fn checkout(units: u64, clients: usize, rtts_ms: &[u64]) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for &rtt in rtts_ms {
        // Each client is one customer placing orders it never pays: lift
        // the unpaid-order limit (20 per customer) that would stop it.
        let c = ProcessCluster::start(Spec {
            proxies: true,
            extra_toml: format!(
                "{}\n[limits]\nmax_open_orders_per_customer = 100000\n",
                Spec::default().extra_toml
            ),
            ..Default::default()
        })
        .await?;
        let sku = format!("HOT-{rtt}");
        let pid = concord_chaos::procs::create_product(&c.client(0), &sku, units).await?;
        c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
            .await?;
        c.wait_connected(Duration::from_secs(10)).await?;
        if rtt > 0 {
            // Half the round trip on each direction of every link.
            let ids = c.ids();
            for a in &ids {
                for b in &ids {
                    if a != b {
                        c.faults.set(
                            a,
                            b,
                            LinkFault {
                                delay_ms: rtt / 2,
                                ..Default::default()
                            },
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let r = concord_chaos::contended::run(&c, &pid, units, clients).await;
        eprintln!("rtt {rtt} ms: {r:?}");
        runs.push(json!({"rttMs": rtt, "units": units, "clients": clients, "result": r}));
    }
    Ok(json!({"contendedCheckout": runs}))
}
