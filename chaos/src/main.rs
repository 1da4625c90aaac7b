//! `concord-chaos`: a Jepsen-shaped test of a real Concord cluster in one
//! command — nodes behind fault proxies, a workload, a nemesis schedule,
//! checkers, and a report. Exit 0 valid, 1 invalid, 2 unknown.

use std::path::PathBuf;

/// The same allocator as the node: the harness shares the machine's cores
/// with the nodes it measures, so it should spend as little as they do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use clap::Parser;
use concord_chaos::checkers::Validity;
use concord_chaos::nemesis::{self, FaultKind, Pace};
use concord_chaos::run::{self, Options};

/// Break a real Concord cluster and check that it keeps its promises.
#[derive(Debug, Parser)]
#[command(name = "concord-chaos", version, about)]
struct Args {
    /// Nodes (3–7).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Length of the faulty part of the run (e.g. 600s, 10m).
    #[arg(long, default_value = "10m")]
    time: String,
    /// Seed: the same seed replays the same schedule and workload choices.
    #[arg(long)]
    seed: Option<u64>,
    /// A short run for CI: 3 nodes, every fault kind, under two minutes.
    #[arg(long, conflicts_with = "soak")]
    quick: bool,
    /// A long run: 30 minutes.
    #[arg(long)]
    soak: bool,
    /// Fault kinds (comma-separated): partition, loss, duplicate, delay, kill, pause, skew, wipe,
    /// slow-disk, power-cut, hostile, or all.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Client processes.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Operations per second per client.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Retrying shoppers (keyed writes retried up to three times on random
    /// nodes), beside the clients.
    #[arg(long, default_value_t = 3)]
    retry_clients: usize,
    /// Convergence limit after a heal (e.g. 10s).
    #[arg(long, default_value = "10s")]
    converge_limit: String,
    /// Where reports go (a directory per run is made inside).
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
}

fn kinds(s: &str) -> anyhow::Result<Vec<FaultKind>> {
    if s == "all" {
        return Ok(nemesis::ALL.to_vec());
    }
    s.split(',')
        .map(|k| {
            nemesis::ALL
                .into_iter()
                .find(|x| {
                    serde_json::to_value(x)
                        .ok()
                        .and_then(|v| v.as_str().map(|t| t == k.trim()))
                        .unwrap_or(false)
                })
                .ok_or_else(|| anyhow::anyhow!("--nemesis: unknown fault kind {k:?}"))
        })
        .collect()
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(main_async(args)) {
        Ok(v) => std::process::ExitCode::from(match v {
            Validity::Known(true) => 0,
            Validity::Known(false) => 1,
            Validity::Unknown(_) => 2,
        }),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn main_async(a: Args) -> anyhow::Result<Validity> {
    let seed = a.seed.unwrap_or_else(rand::random);
    let (nodes, duration, pace) = if a.quick {
        (
            3,
            Duration::from_secs(85),
            Pace {
                min_fault_ms: 3_000,
                max_fault_ms: 5_000,
                min_gap_ms: 1_500,
                max_gap_ms: 2_500,
            },
        )
    } else {
        let d = if a.soak {
            Duration::from_secs(1_800)
        } else {
            concord_node::inspect::parse_duration(&a.time)?
        };
        (
            a.nodes,
            d,
            Pace {
                min_fault_ms: 3_000,
                max_fault_ms: 10_000,
                min_gap_ms: 2_000,
                max_gap_ms: 5_000,
            },
        )
    };
    anyhow::ensure!((3..=7).contains(&nodes), "--nodes must be 3–7");
    let out = a
        .out
        .join(format!("{}-seed{seed}", concord_node::clock::now_secs()));
    eprintln!(
        "concord-chaos: seed {seed}, {nodes} nodes, {:?}; replay with --seed {seed}",
        duration
    );
    let outcome = run::run(Options {
        nodes,
        duration,
        seed,
        kinds: kinds(&a.nemesis)?,
        clients: a.clients,
        retry_clients: a.retry_clients,
        rate: a.rate,
        pace,
        converge_limit: concord_node::inspect::parse_duration(&a.converge_limit)?,
        out,
    })
    .await?;
    println!("{}", outcome.summary);
    println!(
        "report: {}/report.json (timeline.svg beside it)",
        outcome.dir.display()
    );
    Ok(outcome.valid)
}
