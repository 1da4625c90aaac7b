//! One chaos run: start the cluster behind fault proxies, drive the
//! workload, play the nemesis schedule, heal, read every node, check, report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use concord_node::http_client::Client;
use serde_json::{Value, json};

use crate::checkers::{self, FinalReads, Inventory, Sample, Validity, Verdict};
use crate::faults::Nemesis;
use crate::history::{History, Kind, ops};
use crate::nemesis::{self, FaultKind, Pace};
use crate::observe::{measure_heal, metric, read_node};
use crate::procs::{ProcessCluster, Spec};
use crate::report;
use crate::retrying::{self, RetryLog};
use crate::workload::{self, ClientProc, Shared};

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Nodes.
    pub nodes: usize,
    /// Length of the faulty part of the run.
    pub duration: Duration,
    /// Seed of the schedule and the workload.
    pub seed: u64,
    /// Fault kinds in play.
    pub kinds: Vec<FaultKind>,
    /// Client processes.
    pub clients: usize,
    /// Retrying shoppers ([`crate::retrying`]).
    pub retry_clients: usize,
    /// Operations per second per client.
    pub rate: f64,
    /// Fault and gap lengths.
    pub pace: Pace,
    /// Convergence limit after a heal.
    pub converge_limit: Duration,
    /// Where the report goes.
    pub out: PathBuf,
}

/// The outcome: the overall verdict and where the report is.
pub struct Outcome {
    /// Valid, invalid or unknown.
    pub valid: Validity,
    /// The report directory.
    pub dir: PathBuf,
    /// The human summary.
    pub summary: String,
}

/// The nodes' header timeout in a chaos run, ms.
/// How long an unpaid order lives in a chaos run: expiry runs under the
/// faults too.
const UNPAID_TTL_SECS: u64 = 60;
const HEADER_TIMEOUT_MS: u64 = 2_000;

/// Every node's digest, as `/api/v1/cluster/status` reports it.
async fn digests(c: &ProcessCluster, n: usize) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let d = match c.client(i).get("/api/v1/cluster/status").await {
            Ok(a) => a
                .json::<Value>()
                .ok()
                .and_then(|v| v["digest"].as_str().map(str::to_string)),
            Err(_) => None,
        };
        out.push(d);
    }
    out
}

/// Accounts in a chaos run: cheap hashes, and no limit or lockout, since
/// every client is 127.0.0.1 and the final reads try every password.
/// The test provider, answering within a deadline short enough that a
/// partition or a kill mid-call shows as a 503 the payer repeats.
const PAYMENTS_TOML: &str = "[payments]\nprovider = \"test\"\ncall_timeout_ms = 2000\n";
const ACCOUNTS_TOML: &str = "[accounts]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nlogin_per_address = 0\nregister_per_address = 0\nlockout_failures = 1000000\ndelay_after_failures = 1000000\n";

/// Runs a chaos test.
pub async fn run(o: Options) -> anyhow::Result<Outcome> {
    let started_at = concord_node::clock::rfc3339(concord_node::clock::now_ms());
    let mut o = o;
    let mut skipped = Vec::new();
    if o.kinds.contains(&FaultKind::SlowDisk) && !crate::disks::have_strace() {
        o.kinds.retain(|k| *k != FaultKind::SlowDisk);
        skipped.push("slow-disk (strace is not installed)".to_string());
    }
    let power_cut = o.kinds.contains(&FaultKind::PowerCut);
    if power_cut && let Err(why) = crate::disks::can_mount_lazyfs() {
        o.kinds.retain(|k| *k != FaultKind::PowerCut);
        skipped.push(format!("power-cut ({why})"));
    }
    for s in &skipped {
        tracing::warn!("nemesis skipped: {s}");
    }
    let spec = Spec {
        nodes: o.nodes,
        proxies: true,
        env: vec![("CONCORD_TEST_HOOKS".into(), "1".into())],
        // A short header timeout, so a hostile window outlasts it and the
        // `bounded` checker can see attacker connections reaped. Eight
        // clients share 50 carts and never pay, so the fair-use limits would
        // refuse most of their adds and checkouts: lift them, but let unpaid
        // orders expire after a minute so expiry runs under the faults too.
        extra_toml: format!(
            "{}header_read_timeout_ms = {HEADER_TIMEOUT_MS}\n\n[limits]\nmax_cart_lines = 10000\nmax_open_orders_per_customer = 100000\nunpaid_order_ttl_secs = {UNPAID_TTL_SECS}\n\n{ACCOUNTS_TOML}\n{PAYMENTS_TOML}",
            Spec::default().extra_toml
        ),
        lazyfs: if o.kinds.contains(&FaultKind::PowerCut) {
            vec![o.nodes - 1]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let c = ProcessCluster::start(spec)
        .await
        .context("starting the cluster")?;
    let ids = c.ids();
    let history = Arc::new(History::new());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let schedule = nemesis::schedule(
        o.seed,
        &ids,
        o.duration.as_millis() as u64,
        4_000,
        &o.kinds,
        o.pace,
    );
    tracing::info!(faults = schedule.len(), seed = o.seed, "schedule ready");

    // A small catalog to start with, in the history like any other writes.
    let mut setup = ClientProc {
        name: "setup".into(),
        nodes: ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), c.client(i).with_timeout(Duration::from_secs(5))))
            .collect(),
        rng: workload::rng(o.seed, 999),
        shared: shared.clone(),
        history: history.clone(),
        carts: 50,
    };
    for _ in 0..8 {
        while {
            let n = shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .products
                .len();
            setup.step().await;
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .products
                .len()
                == n
        } {}
    }

    // The retrying shoppers' SKUs, stocked on every node before any fault.
    let retry_log = Arc::new(Mutex::new(RetryLog::default()));
    let admins: Vec<Client> = (0..ids.len())
        .map(|i| c.client(i).with_timeout(Duration::from_secs(5)))
        .collect();
    let shoppers = retrying::setup(
        &ids,
        &admins,
        |i, name| {
            Client::new(c.nodes[i].http)
                .with_token(c.token(concord_node::auth::Role::Customer, name))
                .with_timeout(Duration::from_secs(2))
        },
        o.retry_clients,
        o.seed,
        retry_log.clone(),
        &history,
    )
    .await
    .context("setting up the retrying shoppers")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for s in shoppers {
        clients.push(tokio::spawn(retrying::run(s, o.rate, stop_rx.clone())));
    }
    for k in 0..o.clients {
        let proc_ = ClientProc {
            name: format!("c{k}"),
            nodes: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), c.client(i).with_timeout(Duration::from_secs(2))))
                .collect(),
            rng: workload::rng(o.seed, k as u64),
            shared: shared.clone(),
            history: history.clone(),
            carts: 50,
        };
        clients.push(tokio::spawn(workload::run_client(
            proc_,
            o.rate,
            stop_rx.clone(),
        )));
    }
    // The same e-mail on two nodes at once, about one a second.
    let reg_log = Arc::new(Mutex::new(crate::registrar::RegLog::new()));
    let reg_nodes: Vec<(String, Client)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                c.anonymous(i).with_timeout(Duration::from_secs(2)),
            )
        })
        .collect();
    clients.push(tokio::spawn(crate::registrar::run(
        reg_nodes,
        o.seed,
        1.0,
        reg_log.clone(),
        stop_rx.clone(),
    )));
    // Orders paid through other nodes, refunds racing, cancels after the
    // capture: about one order every two seconds.
    let pay_log = Arc::new(Mutex::new(crate::payer::PayLog::new()));
    let pay_product = crate::procs::create_product(&admins[0], "PAY-1", 1_000_000)
        .await
        .context("creating the payer's product")?;
    let pay_nodes: Vec<(String, Client)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                c.client(i).with_timeout(Duration::from_secs(10)),
            )
        })
        .collect();
    clients.push(tokio::spawn(crate::payer::run(
        pay_nodes,
        pay_product,
        o.seed,
        0.5,
        pay_log.clone(),
        stop_rx.clone(),
    )));
    // Stock samples from every node, twice a second.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (samples, shared, history, stop) = (
            samples.clone(),
            shared.clone(),
            history.clone(),
            stop_rx.clone(),
        );
        let nodes: Vec<(String, Client)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    id.clone(),
                    c.anonymous(i).with_timeout(Duration::from_millis(500)),
                )
            })
            .collect();
        tokio::spawn(async move {
            while !*stop.borrow() {
                let skus: Vec<String> = shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .products
                    .iter()
                    .map(|p| p.1.clone())
                    .take(30)
                    .collect();
                for (node, cl) in &nodes {
                    for sku in &skus {
                        if let Ok(a) = cl.get(&format!("/api/v1/inventory/{sku}")).await
                            && a.status.is_success()
                            && let Ok(v) = a.json::<Value>()
                            && let Some(inv) = Inventory::from_json(&v)
                        {
                            samples
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Sample {
                                    time_ms: history.now_ms(),
                                    node: node.clone(),
                                    sku: sku.clone(),
                                    inv,
                                });
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // Play the schedule.
    let mut nem = Nemesis {
        c,
        ids: ids.clone(),
        net: None,
        cuts: Vec::new(),
        killed: BTreeSet::new(),
        paused: BTreeSet::new(),
        skewed: BTreeSet::new(),
        history: history.clone(),
        durability: Vec::new(),
        frontier: Vec::new(),
        kill_times: BTreeMap::new(),
        slow: BTreeMap::new(),
        hostile: BTreeMap::new(),
        hostile_windows: Vec::new(),
    };
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, f) in schedule.iter().enumerate() {
        events.push((f.start_ms, true, i));
        events.push((f.start_ms + f.dur_ms, false, i));
    }
    events.sort_by_key(|(t, start, _)| (*t, *start));
    let mut fault_times = vec![(0.0, 0.0); schedule.len()];
    let mut details: Vec<String> = schedule.iter().map(|f| f.detail.clone()).collect();
    let mut heals = Vec::new();
    let t0 = Instant::now();
    for (at, is_start, i) in events {
        let wait = Duration::from_millis(at).saturating_sub(t0.elapsed());
        tokio::time::sleep(wait).await;
        let f = &schedule[i];
        if is_start {
            fault_times[i].0 = history.now_ms();
            let p = history.invoke(
                "nemesis",
                "",
                "fault_start",
                json!({"kind": f.kind, "detail": f.detail}),
            );
            let note = nem.start(f).await;
            details[i].push_str(&note);
            history.complete(p, Kind::Info, json!({"note": note}));
            tracing::info!("fault: {}", details[i]);
        } else {
            let p = history.invoke(
                "nemesis",
                "",
                "fault_end",
                json!({"kind": f.kind, "detail": f.detail}),
            );
            nem.end(f).await;
            fault_times[i].1 = history.now_ms();
            history.complete(p, Kind::Info, json!({}));
            // Measure catch-up unless another fault is still in force.
            let active = schedule.iter().enumerate().any(|(j, g)| {
                j != i && fault_times[j].0 > 0.0 && fault_times[j].1 == 0.0 && g.start_ms <= at
            });
            if !active {
                heals.push(
                    measure_heal(&nem.c, &history, details[i].clone(), o.converge_limit).await,
                );
            }
        }
    }
    let remaining = o.duration.saturating_sub(t0.elapsed());
    tokio::time::sleep(remaining).await;

    // Stop the workload, heal everything, wait for convergence.
    stop_tx.send_replace(true);
    for h in clients {
        let _ = h.await;
    }
    let _ = sampler.await;
    let heal_at = Instant::now();
    nem.heal_all().await;
    for i in 0..ids.len() {
        let _ = nem.c.wait_ready(i, Duration::from_secs(30)).await;
    }
    let cfg = concord_node::config::ClusterConfig::load(nem.c.config_path())?;
    let final_ms = match concord_node::inspect::converge(&cfg, o.converge_limit).await {
        concord_node::inspect::Convergence::Converged(_) => {
            Some(heal_at.elapsed().as_secs_f64() * 1000.0)
        }
        _ => None,
    };
    let duration_ms = history.now_ms();

    // Final reads from every node.
    let skus: BTreeSet<String> = shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .products
        .iter()
        .map(|p| p.1.clone())
        .collect();
    // Nodes keep writing after the heal on their own (unpaid orders expire
    // at their sellers, losing sales are returned), so one round of reads
    // can straddle such a write: read until every node reports the same
    // digest before and after the round.
    let retry_log = retry_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut finals = FinalReads::new();
    let mut retry_reads = BTreeMap::new();
    // The last unpaid orders expire up to a TTL (and an expiry tick) after
    // the clients stopped: keep reading until the nodes are still, or until
    // that wave has surely passed.
    let still_by = Instant::now()
        + Duration::from_secs(UNPAID_TTL_SECS)
        + concord_node::expiry::TICK
        + Duration::from_secs(10);
    for round in 0.. {
        let _ = concord_node::inspect::converge(&cfg, o.converge_limit).await;
        let before = digests(&nem.c, ids.len()).await;
        finals.clear();
        retry_reads.clear();
        for (i, id) in ids.iter().enumerate() {
            let cl = nem.c.client(i).with_timeout(Duration::from_secs(10));
            match read_node(&cl, &skus).await {
                Ok(r) => {
                    finals.insert(id.clone(), r);
                }
                Err(e) => tracing::error!(node = %id, error = %e, "final read failed"),
            }
            match retrying::read(&cl, &retry_log).await {
                Ok(r) => {
                    retry_reads.insert(id.clone(), r);
                }
                Err(e) => tracing::error!(node = %id, error = %e, "retry read failed"),
            }
        }
        let after = digests(&nem.c, ids.len()).await;
        let one = before.first().cloned().flatten();
        if one.is_some() && before.iter().chain(&after).all(|d| *d == one) {
            break;
        }
        if Instant::now() > still_by {
            tracing::warn!(round, "the nodes never stood still for the final reads");
            break;
        }
        tracing::info!(round, "a node wrote during the final reads: reading again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut wire = json!({"messages": 0.0, "bytes": 0.0, "udpBytes": 0.0});
    for i in 0..ids.len() {
        if let Ok(a) = nem.c.anonymous(i).get("/metrics").await {
            let t = a.text();
            wire["messages"] = json!(
                wire["messages"].as_f64().unwrap_or(0.0)
                    + metric(&t, "concord_wire_messages_sent_total")
            );
            wire["bytes"] = json!(
                wire["bytes"].as_f64().unwrap_or(0.0) + metric(&t, "concord_wire_bytes_sent_total")
            );
            wire["udpBytes"] = json!(
                wire["udpBytes"].as_f64().unwrap_or(0.0) + metric(&t, "concord_peer_udp_tx_bytes")
            );
        }
    }
    // Every acknowledged password on every node (after the final reads:
    // a sign-in writes a session).
    let reg_log = reg_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut logins = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let cl = nem.c.anonymous(i).with_timeout(Duration::from_secs(10));
        logins.insert(id.clone(), crate::registrar::read(&cl, &reg_log).await);
    }
    let wiped: BTreeSet<String> = schedule
        .iter()
        .filter_map(|f| match f.action {
            nemesis::Action::Wipe(i) => ids.get(i).cloned(),
            _ => None,
        })
        .collect();
    let pay_log = pay_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut pay_reads = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let cl = nem.c.client(i).with_timeout(Duration::from_secs(10));
        pay_reads.insert(id.clone(), crate::payer::read(&cl, &pay_log).await);
    }
    let audience_probes = crate::audience::probe(&nem.c, &finals).await;
    let entries = history.entries();
    let all_ops: Vec<_> = ops(&entries)
        .into_iter()
        .filter(|o| o.invoke.process != "nemesis")
        .collect();
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let limit_ms = o.converge_limit.as_secs_f64() * 1000.0;
    let verdicts: Vec<(&'static str, Verdict)> = vec![
        ("set-full", checkers::set_full::check(&all_ops, &finals)),
        (
            "convergence",
            checkers::convergence::check(&heals, final_ms, limit_ms),
        ),
        (
            "no-oversell",
            checkers::oversell::check(&all_ops, &samples, &finals),
        ),
        ("durability", checkers::durability::check(&nem.durability)),
        ("frontier", checkers::frontier::check(&nem.frontier)),
        (
            "bounded",
            checkers::bounded::check(&nem.hostile_windows, HEADER_TIMEOUT_MS),
        ),
        ("audience", checkers::audience::check(&audience_probes)),
        (
            "exactly-once",
            checkers::exactly_once::check(&retry_log, &retry_reads, &wiped),
        ),
        (
            "unique-email",
            checkers::unique_email::check(&reg_log, &logins, &wiped),
        ),
        (
            "payments",
            checkers::payments::check(&pay_log, &pay_reads, &wiped),
        ),
    ];
    let stats = checkers::stats::compute(&all_ops, &heals, &wire);
    let mut faults = schedule.clone();
    for (f, d) in faults.iter_mut().zip(details) {
        f.detail = d;
    }
    let inputs = report::Inputs {
        seed: o.seed,
        nodes: &ids,
        started_at,
        duration_ms,
        faults: &faults,
        fault_times: &fault_times,
        history: &entries,
        ops: &all_ops,
        heals: &heals,
        verdicts: &verdicts,
        stats,
    };
    let dir = o.out.clone();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&report::json(&inputs))?,
    )?;
    std::fs::write(dir.join("timeline.svg"), report::svg(&inputs))?;
    let mut summary = report::summary(&inputs);
    if !skipped.is_empty() {
        summary.push_str(&format!("\nnemeses skipped: {}\n", skipped.join("; ")));
    }
    std::fs::write(dir.join("summary.txt"), &summary)?;
    for (i, id) in ids.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("{id}.log")), nem.c.log(i));
    }
    Ok(Outcome {
        valid: report::overall(&verdicts),
        dir,
        summary,
    })
}
