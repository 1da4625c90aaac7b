//! One chaos run: start the cluster behind fault proxies, drive the
//! workload, play the nemesis schedule, heal, read every node, check, report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use concord_node::http_client::Client;
use serde_json::{Value, json};

use crate::checkers::convergence::Heal;
use crate::checkers::durability::Observation;
use crate::checkers::{
    self, FinalReads, Inventory, NodeRead, OrderRead, Sample, Validity, Verdict,
};
use crate::history::{History, Kind, ops};
use crate::nemesis::{self, Action, Cut, Fault, FaultKind, Pace};
use crate::procs::{ProcessCluster, Spec};
use crate::proxy::LinkFault;
use crate::report;
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

struct Nemesis {
    c: ProcessCluster,
    ids: Vec<String>,
    net: Option<LinkFault>,
    cuts: Vec<Cut>,
    killed: BTreeSet<usize>,
    paused: BTreeSet<usize>,
    skewed: BTreeSet<usize>,
    history: Arc<History>,
    durability: Vec<Observation>,
    kill_times: BTreeMap<usize, f64>,
}

impl Nemesis {
    /// Rewrites the proxies' fault table from the faults in force.
    fn apply_net(&self) {
        let f = &self.c.faults;
        f.heal();
        if let Some(l) = self.net {
            for a in &self.ids {
                for b in &self.ids {
                    if a != b {
                        f.set(a, b, l);
                    }
                }
            }
        }
        let cut = LinkFault {
            cut: true,
            ..Default::default()
        };
        for c in &self.cuts {
            match c {
                Cut::Both(pairs) => pairs
                    .iter()
                    .for_each(|(a, b)| f.set_both(&self.ids[*a], &self.ids[*b], cut)),
                Cut::OneWay(pairs) => pairs
                    .iter()
                    .for_each(|(a, b)| f.set(&self.ids[*a], &self.ids[*b], cut)),
            }
        }
    }

    async fn skew(&self, i: usize, ms: i64) {
        let _ = self
            .c
            .client(i)
            .post("/api/v1/test/clock", &json!({"offsetMs": ms}))
            .await;
    }

    async fn start(&mut self, f: &Fault) -> String {
        match &f.action {
            Action::Partition(cut) => {
                self.cuts.push(cut.clone());
                self.apply_net();
            }
            Action::Link(l) => {
                self.net = Some(*l);
                self.apply_net();
            }
            Action::Kill(i) => {
                let _ = self.c.kill9(*i);
                self.killed.insert(*i);
                self.kill_times.insert(*i, self.history.now_ms());
            }
            Action::Pause(i) => {
                if self.c.pause(*i).is_ok() {
                    self.paused.insert(*i);
                }
            }
            Action::Skew(i, ms) => {
                self.skew(*i, *ms).await;
                self.skewed.insert(*i);
            }
            Action::Wipe(i) => return self.wipe(*i).await,
        }
        String::new()
    }

    async fn end(&mut self, f: &Fault) {
        match &f.action {
            Action::Partition(cut) => {
                if let Some(pos) = self.cuts.iter().position(|c| c == cut) {
                    self.cuts.remove(pos);
                }
                self.apply_net();
            }
            Action::Link(_) => {
                self.net = None;
                self.apply_net();
            }
            Action::Kill(i) => self.restart_isolated(*i).await,
            Action::Pause(i) => {
                if self.paused.remove(i) {
                    let _ = self.c.resume(*i);
                }
            }
            Action::Skew(i, _) => {
                self.skew(*i, 0).await;
                self.skewed.remove(i);
            }
            Action::Wipe(_) => {}
        }
    }

    /// Restarts a killed node cut off from its peers, checks that it still
    /// holds what it acknowledged before the kill, then reconnects it.
    async fn restart_isolated(&mut self, i: usize) {
        if !self.killed.remove(&i) {
            return;
        }
        let others: Vec<String> = self
            .ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.clone())
            .collect();
        self.c
            .faults
            .partition(std::slice::from_ref(&self.ids[i]), &others);
        if let Err(e) = self.c.restart(i).await {
            tracing::error!(error = %e, "restarting a killed node failed");
            self.apply_net();
            return;
        }
        let killed_ms = self.kill_times.remove(&i).unwrap_or(0.0);
        let obs = durability_check(&self.c, i, &self.ids[i], killed_ms, &self.history).await;
        self.durability.push(obs);
        self.apply_net();
    }

    /// Wipes a node's store — only once its writes have reached every peer,
    /// as after a disk replacement with the data safely replicated.
    async fn wipe(&mut self, i: usize) -> String {
        if self.killed.contains(&i) || self.paused.contains(&i) || !self.cuts.is_empty() {
            return " (skipped: the node is down or partitioned)".into();
        }
        let t = Instant::now();
        let caught_up = loop {
            let st = self.c.statuses().await;
            let own = st[i]
                .as_ref()
                .map(|s| (s["actor"].clone(), s["versionVector"].clone()));
            let ok = own.is_some_and(|(actor, vv)| {
                let a = actor.as_str().unwrap_or_default().to_string();
                let mine = vv[&a].as_u64().unwrap_or(0);
                st.iter()
                    .flatten()
                    .all(|s| s["versionVector"][&a].as_u64().unwrap_or(0) >= mine)
            });
            if ok {
                break true;
            }
            if t.elapsed() > Duration::from_secs(5) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !caught_up {
            return " (skipped: its writes had not replicated yet)".into();
        }
        if self.c.stop(i).await.is_err() || self.c.wipe(i).is_err() {
            return " (skipped: could not stop the node)".into();
        }
        match self.c.restart(i).await {
            Ok(()) => String::new(),
            Err(e) => format!(" (restart failed: {e})"),
        }
    }

    /// Ends every fault: heal the network, resume, restart, reset clocks.
    async fn heal_all(&mut self) {
        self.cuts.clear();
        self.net = None;
        self.apply_net();
        for i in std::mem::take(&mut self.paused) {
            let _ = self.c.resume(i);
        }
        for i in self.killed.clone() {
            self.restart_isolated(i).await;
        }
        for i in std::mem::take(&mut self.skewed) {
            self.skew(i, 0).await;
        }
    }
}

/// Reads, from a restarted node still cut off from its peers, every write it
/// acknowledged before it was killed (and that nothing could have removed).
async fn durability_check(
    c: &ProcessCluster,
    i: usize,
    node: &str,
    killed_ms: f64,
    history: &History,
) -> Observation {
    let all = ops(&history.entries());
    let before: Vec<_> = all
        .iter()
        .filter(|o| o.invoke.time_ms < killed_ms)
        .collect();
    let mut carts: BTreeSet<(String, String)> = BTreeSet::new();
    let mut products = BTreeSet::new();
    for o in &before {
        let done_before = o
            .done
            .as_ref()
            .is_some_and(|d| d.time_ms < killed_ms && d.kind == Kind::Ok);
        if !done_before || o.invoke.node != node {
            continue;
        }
        let v = &o.invoke.value;
        match o.invoke.f.as_str() {
            "cart_add" => {
                carts.insert((
                    v["cart"].as_str().unwrap_or_default().into(),
                    v["body"]["productId"].as_str().unwrap_or_default().into(),
                ));
            }
            "create_product" => {
                if let Some(id) = o.done.as_ref().and_then(|d| d.value["body"]["id"].as_str()) {
                    products.insert(id.to_string());
                }
            }
            _ => {}
        }
    }
    // Anything a later (pre-kill) remove could have touched is not checked.
    for o in &before {
        if o.outcome() == Kind::Fail {
            continue;
        }
        let v = &o.invoke.value;
        let path = v["path"].as_str().unwrap_or_default();
        match o.invoke.f.as_str() {
            "cart_remove" | "cart_set" => {
                let p = path.rsplit('/').next().unwrap_or_default();
                carts.retain(|(c, q)| !(c == v["cart"].as_str().unwrap_or_default() && q == p));
            }
            "checkout" => {
                if let Some(cart) = v["body"]["cartId"].as_str() {
                    carts.retain(|(c, _)| c != cart);
                }
            }
            "delete_product" => {
                products.remove(path.rsplit('/').next().unwrap_or_default());
            }
            _ => {}
        }
    }
    let client = c.client(i);
    let mut missing = Vec::new();
    for (cart, product) in &carts {
        let ok = match client.get(&format!("/api/v1/carts/{cart}")).await {
            Ok(a) => a.text().contains(product.as_str()),
            Err(_) => false,
        };
        if !ok {
            missing.push(format!("cart {cart} / product {product}"));
        }
    }
    for p in &products {
        let ok = matches!(client.get(&format!("/api/v1/products/{p}")).await, Ok(a) if a.status.is_success());
        if !ok {
            missing.push(format!("product {p}"));
        }
    }
    Observation {
        node: node.into(),
        killed_ms,
        checked: carts.len() + products.len(),
        missing,
    }
}

async fn vvs(c: &ProcessCluster) -> Vec<Option<BTreeMap<String, u64>>> {
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
async fn measure_heal(
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

async fn read_node(c: &Client, skus: &BTreeSet<String>) -> anyhow::Result<NodeRead> {
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
            r.inventory.insert(
                sku,
                Inventory {
                    stock: v["stock"].as_u64().unwrap_or(0),
                    restocked: v["restocked"].as_u64().unwrap_or(0),
                    live_sold: v["liveSold"].as_i64().unwrap_or(0),
                },
            );
        }
    }
    Ok(r)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs a chaos test.
pub async fn run(o: Options) -> anyhow::Result<Outcome> {
    let started_at = concord_node::clock::rfc3339(concord_node::clock::now_ms());
    let spec = Spec {
        nodes: o.nodes,
        proxies: true,
        env: vec![("CONCORD_TEST_HOOKS".into(), "1".into())],
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
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
                            && let Ok(v) = a.json::<Value>()
                            && a.status.is_success()
                        {
                            samples
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Sample {
                                    time_ms: history.now_ms(),
                                    node: node.clone(),
                                    sku: sku.clone(),
                                    inv: Inventory {
                                        stock: v["stock"].as_u64().unwrap_or(0),
                                        restocked: v["restocked"].as_u64().unwrap_or(0),
                                        live_sold: v["liveSold"].as_i64().unwrap_or(0),
                                    },
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
        kill_times: BTreeMap::new(),
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
    let mut finals = FinalReads::new();
    let mut wire = json!({"messages": 0.0, "bytes": 0.0, "udpBytes": 0.0});
    for (i, id) in ids.iter().enumerate() {
        let cl = nem.c.client(i).with_timeout(Duration::from_secs(10));
        match read_node(&cl, &skus).await {
            Ok(r) => {
                finals.insert(id.clone(), r);
            }
            Err(e) => tracing::error!(node = %id, error = %e, "final read failed"),
        }
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
    let summary = report::summary(&inputs);
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
