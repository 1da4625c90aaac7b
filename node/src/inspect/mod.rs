//! `concord inspect`: are the nodes converged? Everything goes through the
//! nodes' HTTP APIs (sled allows one process per database), so it works on
//! a live cluster and across machines.
//!
//! - `digest`: per node — reachable, version vector, digest, delta-log size,
//!   and how far behind the most advanced node it is;
//! - `diff A B`: descends both nodes' digest trees only where they differ,
//!   then lists the differing key ranges, the keys, and both values;
//! - `converge --timeout T`: polls until every node agrees; exits 0 when
//!   converged (printing how long it took), 1 when diverged at the deadline,
//!   2 when a node is unreachable;
//! - `members`: each node's peers, their liveness and when last seen;
//! - `--watch` refreshes the view, `--json` prints machine-readable output.
//!
//! The chaos harness uses these same functions for its convergence checks,
//! so every chaos run also tests the inspector.

mod diff;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ClusterConfig;
use crate::http_client::Client;

pub use diff::{DiffReport, KeyDiff, RangeDiff, diff};

/// The text form of a key (one definition, shared with the events).
pub use crate::events::key_text;

/// One node as the inspector sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Its HTTP address.
    pub http: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Its `/api/v1/cluster/status`, when it answered.
    #[schema(value_type = Object)]
    pub status: Option<serde_json::Value>,
    /// Deltas it lacks compared with the most advanced node (Σ over actors).
    pub behind: u64,
}

/// Asks every node of the configuration for its status.
pub async fn gather(cfg: &ClusterConfig, timeout: Duration, token: Option<&str>) -> Vec<NodeView> {
    let mut hs = Vec::new();
    for n in &cfg.nodes {
        let mut c = Client::new(n.http).with_timeout(timeout);
        if let Some(t) = token {
            c = c.with_token(t.to_string());
        }
        let (id, http) = (n.id.to_string(), n.http.to_string());
        hs.push(tokio::spawn(async move {
            let status = match c.get("/api/v1/cluster/status").await {
                Ok(a) if a.status.is_success() => a.json::<serde_json::Value>().ok(),
                _ => None,
            };
            NodeView {
                id,
                http,
                reachable: status.is_some(),
                status,
                behind: 0,
            }
        }));
    }
    let mut out = Vec::new();
    for h in hs {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    // How far behind the element-wise maximum of all vectors each node is.
    let mut max: BTreeMap<String, u64> = BTreeMap::new();
    for v in &out {
        if let Some(vv) = v
            .status
            .as_ref()
            .and_then(|s| s["versionVector"].as_object())
        {
            for (a, s) in vv {
                let s = s.as_u64().unwrap_or(0);
                let e = max.entry(a.clone()).or_insert(0);
                *e = (*e).max(s);
            }
        }
    }
    for v in &mut out {
        if let Some(vv) = v
            .status
            .as_ref()
            .and_then(|s| s["versionVector"].as_object())
        {
            v.behind = max
                .iter()
                .map(|(a, m)| m.saturating_sub(vv.get(a).and_then(|x| x.as_u64()).unwrap_or(0)))
                .sum();
        }
    }
    out
}

/// Whether every node answered and all digests are equal.
pub fn converged(nodes: &[NodeView]) -> bool {
    let digests: Vec<Option<&str>> = nodes
        .iter()
        .map(|n| n.status.as_ref().and_then(|s| s["digest"].as_str()))
        .collect();
    digests.iter().all(|d| d.is_some()) && digests.windows(2).all(|w| w[0] == w[1])
}

/// How `converge` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convergence {
    /// All nodes agreed after this long.
    Converged(Duration),
    /// Still different at the deadline.
    Diverged,
    /// A node did not answer at the deadline.
    Unreachable,
}

/// Polls every node until all digests agree or `timeout` passes.
pub async fn converge(cfg: &ClusterConfig, timeout: Duration) -> Convergence {
    let t = Instant::now();
    loop {
        let nodes = gather(cfg, Duration::from_millis(1_000), None).await;
        if converged(&nodes) {
            return Convergence::Converged(t.elapsed());
        }
        if t.elapsed() >= timeout {
            return if nodes.iter().all(|n| n.reachable) {
                Convergence::Diverged
            } else {
                Convergence::Unreachable
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Arguments of `concord inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// What to show.
    #[command(subcommand)]
    pub what: What,
    /// Refresh the view every second until Ctrl-C.
    #[arg(long, global = true)]
    pub watch: bool,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// An admin token for the nodes' inspection endpoints (default: one
    /// minted from the cluster secret under `data_dir/pki`, when readable).
    #[arg(long, global = true)]
    pub token: Option<String>,
}

/// The inspector's views.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Per node: reachable, version vector, digest, delta log, how far behind.
    Digest,
    /// Where two nodes differ: ranges, keys, and both values.
    Diff {
        /// One node id.
        a: String,
        /// The other node id.
        b: String,
    },
    /// Wait until all nodes agree: exit 0 converged, 1 diverged, 2 unreachable.
    Converge {
        /// How long to wait (e.g. `10s`, `500ms`, `2m`).
        #[arg(long, default_value = "10s")]
        timeout: String,
    },
    /// Each node's peers, their liveness, and when last seen.
    Members,
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| {
        anyhow::anyhow!("--timeout {s:?}: expected a duration such as 10s or 500ms")
    })?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => anyhow::bail!("--timeout {s:?}: unknown unit {unit:?} (use ms, s or m)"),
    };
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// Runs `concord inspect`; returns the exit code.
pub async fn run(config: &Path, args: InspectArgs) -> anyhow::Result<i32> {
    let cfg = ClusterConfig::load(config)?;
    let token = match args
        .token
        .clone()
        .or_else(|| std::env::var("CONCORD_TOKEN").ok())
    {
        Some(t) => Some(t),
        None => crate::pki::load_token_key(&crate::pki::PkiPaths::new(cfg.pki_dir()))
            .ok()
            .map(|k| k.internal_admin("inspect")),
    };
    loop {
        let code = once(&cfg, &args, token.as_deref()).await?;
        if !args.watch || matches!(args.what, What::Converge { .. }) {
            return Ok(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(code),
        }
    }
}

async fn once(cfg: &ClusterConfig, args: &InspectArgs, token: Option<&str>) -> anyhow::Result<i32> {
    if args.watch && !args.json {
        // Clear the terminal and go home, for a live view.
        print!("\x1b[2J\x1b[H");
    }
    match &args.what {
        What::Digest => {
            let nodes = gather(cfg, Duration::from_secs(2), token).await;
            let ok = converged(&nodes);
            if args.json {
                println!("{}", serde_json::json!({"converged": ok, "nodes": nodes}));
            } else {
                println!(
                    "{:<8} {:<10} {:<18} {:>9} {:>7} {:>8}  version vector",
                    "node", "reachable", "digest", "delta log", "behind", "repaired"
                );
                for n in &nodes {
                    let s = n.status.as_ref();
                    let d = s
                        .and_then(|s| s["digest"].as_str())
                        .map(|d| d[..16.min(d.len())].to_string())
                        .unwrap_or_else(|| "-".into());
                    let log = s
                        .and_then(|s| s["deltaLog"].as_u64())
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into());
                    let vv = s
                        .map(|s| s["versionVector"].to_string())
                        .unwrap_or_else(|| "-".into());
                    // Divergence repairs: equal vectors, different digests.
                    let repaired = s
                        .and_then(|s| s["divergence"]["repaired"].as_u64())
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<8} {:<10} {:<18} {:>9} {:>7} {:>8}  {vv}",
                        n.id,
                        if n.reachable { "yes" } else { "NO" },
                        d,
                        log,
                        n.behind,
                        repaired
                    );
                }
                for n in &nodes {
                    if let Some(last) = n.status.as_ref().map(|s| &s["divergence"]["last"])
                        && !last.is_null()
                    {
                        println!(
                            "{}: last divergence repair from {} changed {} keys: {}",
                            n.id,
                            last["peer"].as_str().unwrap_or("?"),
                            last["changed"],
                            last["keys"]
                        );
                    }
                }
                println!(
                    "\n{}",
                    if ok {
                        "converged: all digests are equal"
                    } else {
                        "NOT converged"
                    }
                );
            }
            Ok(if ok {
                0
            } else if nodes.iter().all(|n| n.reachable) {
                1
            } else {
                2
            })
        }
        What::Diff { a, b } => {
            let find = |id: &str| {
                cfg.nodes
                    .iter()
                    .find(|n| n.id.as_str() == id)
                    .ok_or_else(|| anyhow::anyhow!("no node {id} in the configuration"))
            };
            let token = token.ok_or_else(|| {
                anyhow::anyhow!(
                    "diff needs an admin token: give --token (or CONCORD_TOKEN), or run where data_dir/pki holds the cluster secret"
                )
            })?;
            let r = diff(find(a)?, find(b)?, token).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{} {}\n{} {}", r.a, r.digests.0, r.b, r.digests.1);
                println!(
                    "{} differing ranges ({} tree nodes compared)",
                    r.ranges.len(),
                    r.compared
                );
                for x in &r.ranges {
                    println!("  {}/{}", x.keyspace, x.bucket);
                }
                println!("{} differing keys", r.keys.len());
                for k in &r.keys {
                    println!("\n{} {}", k.keyspace, k.key);
                    let show = |v: &Option<serde_json::Value>| {
                        v.as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "(absent)".into())
                    };
                    println!("  {}: {}", r.a, show(&k.a));
                    println!("  {}: {}", r.b, show(&k.b));
                }
            }
            Ok(if r.keys.is_empty() && r.ranges.is_empty() {
                0
            } else {
                1
            })
        }
        What::Converge { timeout } => {
            let t = parse_duration(timeout)?;
            let r = converge(cfg, t).await;
            let (code, text) = match r {
                Convergence::Converged(d) => (0, format!("converged in {} ms", d.as_millis())),
                Convergence::Diverged => {
                    (1, format!("diverged: digests still differ after {timeout}"))
                }
                Convergence::Unreachable => (
                    2,
                    format!("unreachable: a node did not answer within {timeout}"),
                ),
            };
            if args.json {
                let ms = if let Convergence::Converged(d) = r {
                    Some(d.as_millis() as u64)
                } else {
                    None
                };
                println!(
                    "{}",
                    serde_json::json!({"exit": code, "convergedMs": ms, "message": text})
                );
            } else {
                println!("{text}");
            }
            Ok(code)
        }
        What::Members => {
            let nodes = gather(cfg, Duration::from_secs(2), token).await;
            if args.json {
                let m: Vec<_> = nodes
                    .iter()
                    .map(|n| serde_json::json!({"id": n.id, "reachable": n.reachable, "peers": n.status.as_ref().map(|s| s["peers"].clone())}))
                    .collect();
                println!("{}", serde_json::Value::Array(m));
            } else {
                for n in &nodes {
                    println!(
                        "{} ({}){}",
                        n.id,
                        n.http,
                        if n.reachable { "" } else { "  UNREACHABLE" }
                    );
                    if let Some(peers) = n.status.as_ref().and_then(|s| s["peers"].as_array()) {
                        for p in peers {
                            let seen = p["lastSeenMs"]
                                .as_u64()
                                .map(|v| format!("{v} ms ago"))
                                .unwrap_or_else(|| "never".into());
                            println!(
                                "  {:<8} {:<22} {:<5} last seen {seen}",
                                p["id"].as_str().unwrap_or("?"),
                                p["address"].as_str().unwrap_or("?"),
                                if p["alive"].as_bool() == Some(true) {
                                    "up"
                                } else {
                                    "DOWN"
                                }
                            );
                        }
                    }
                }
            }
            Ok(if nodes.iter().all(|n| n.reachable) {
                0
            } else {
                2
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
