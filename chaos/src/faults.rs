//! Applying and healing the nemesis's faults on a running cluster: the
//! proxies' fault table is rewritten from the faults in force, killed nodes
//! (plain `kill -9`, after a slow disk, or after a power cut) come back cut
//! off from their peers for the durability and frontier checks, and wipes
//! wait until the node's writes have reached every peer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::checkers::durability::Observation;
use crate::checkers::{bounded, frontier};
use crate::disks::Strace;
use crate::history::{History, Kind, Op, ops};
use crate::hostile::Slowloris;
use crate::nemesis::{Action, Cut, Fault};
use crate::procs::ProcessCluster;
use crate::proxy::LinkFault;

/// The nemesis at work: the cluster and the faults in force.
pub struct Nemesis {
    pub(crate) c: ProcessCluster,
    pub(crate) ids: Vec<String>,
    pub(crate) net: Option<LinkFault>,
    pub(crate) cuts: Vec<Cut>,
    pub(crate) killed: BTreeSet<usize>,
    pub(crate) paused: BTreeSet<usize>,
    pub(crate) skewed: BTreeSet<usize>,
    pub(crate) history: Arc<History>,
    pub(crate) durability: Vec<Observation>,
    pub(crate) frontier: Vec<frontier::Observation>,
    pub(crate) kill_times: BTreeMap<usize, f64>,
    /// `strace` slowing a node's syncs, by node.
    pub(crate) slow: BTreeMap<usize, Strace>,
    /// Slowloris attacks in progress, by node, with their start.
    pub(crate) hostile: BTreeMap<usize, (Slowloris, Instant)>,
    /// Each hostile window, as observed.
    pub(crate) hostile_windows: Vec<bounded::Observation>,
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

    /// Starts a fault; returns a note when it was skipped.
    pub async fn start(&mut self, f: &Fault) -> String {
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
            Action::SlowDisk(i, ms) => {
                if self.killed.contains(i) || self.paused.contains(i) {
                    return " (skipped: the node is down or paused)".into();
                }
                let Some(pid) = self.c.nodes[*i].pid() else {
                    return " (skipped: the node is not running)".into();
                };
                let out = self
                    .c
                    .dir()
                    .join(format!("strace-{}-{pid}.txt", self.ids[*i]));
                match Strace::slow_syncs(pid, Duration::from_millis(*ms), &out) {
                    Ok(s) => {
                        self.slow.insert(*i, s);
                    }
                    Err(e) => return format!(" (skipped: {e:#})"),
                }
            }
            Action::Hostile(i) => {
                if self.killed.contains(i) || self.paused.contains(i) {
                    return " (skipped: the node is down or paused)".into();
                }
                let attack = Slowloris::start(self.c.nodes[*i].http);
                self.hostile.insert(*i, (attack, Instant::now()));
            }
            Action::PowerCut(i) => {
                if self.killed.contains(i) || !self.c.on_lazyfs(*i) {
                    return " (skipped: the node is down or not on the power-cut filesystem)"
                        .into();
                }
                if self.paused.remove(i) {
                    let _ = self.c.resume(*i);
                }
                if let Err(e) = self.c.power_cut(*i) {
                    tracing::error!(error = %e, "the power cut failed");
                    return format!(" (failed: {e:#})");
                }
                self.killed.insert(*i);
                self.kill_times.insert(*i, self.history.now_ms());
            }
        }
        String::new()
    }

    /// Ends a fault.
    pub async fn end(&mut self, f: &Fault) {
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
            Action::SlowDisk(i, _) => {
                let Some(strace) = self.slow.remove(i) else {
                    return;
                };
                // Killed while its syncs are slow and writes wait on them.
                if self.paused.remove(i) {
                    let _ = self.c.resume(*i);
                }
                let _ = self.c.kill9(*i);
                let _ = strace.stop();
                self.killed.insert(*i);
                self.kill_times.insert(*i, self.history.now_ms());
                self.restart_isolated(*i).await;
            }
            Action::PowerCut(i) => self.restart_isolated(*i).await,
            Action::Hostile(i) => self.end_hostile(*i).await,
        }
    }

    /// Probes the attacked node from the workload's address while the
    /// attack still holds its connections, then stops the attack.
    async fn end_hostile(&mut self, i: usize) {
        let Some((attack, since)) = self.hostile.remove(&i) else {
            return;
        };
        let skipped = if self.killed.contains(&i) {
            Some("the node was killed during the window".to_string())
        } else if self.paused.contains(&i) {
            Some("the node was paused during the window".to_string())
        } else {
            None
        };
        let (probe_ok, probe_ms) = crate::hostile::probe(&self.c.anonymous(i)).await;
        let window_ms = since.elapsed().as_millis() as u64;
        let stats = attack.stop().await;
        self.hostile_windows.push(bounded::Observation {
            node: self.ids[i].clone(),
            window_ms,
            attack: stats,
            probe_ok,
            probe_ms,
            skipped,
        });
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
        self.frontier.push(frontier_check(&self.c, i).await);
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

    /// Ends every fault: heal the network, resume, restart, reset clocks,
    /// give slow disks their speed back.
    pub async fn heal_all(&mut self) {
        for (_, s) in std::mem::take(&mut self.slow) {
            let _ = s.stop();
        }
        for (_, (attack, _)) in std::mem::take(&mut self.hostile) {
            let _ = attack.stop().await;
        }
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

/// Compares a restarted node's own sequence with what every peer holds of
/// it, before the node reconnects.
async fn frontier_check(c: &ProcessCluster, i: usize) -> frontier::Observation {
    let st = c.statuses().await;
    let (actor, own) = st[i]
        .as_ref()
        .map(|s| {
            let a = s["actor"].as_str().unwrap_or_default().to_string();
            let own = s["versionVector"][&a].as_u64().unwrap_or(0);
            (a, own)
        })
        .unwrap_or_default();
    let mut ahead = Vec::new();
    let mut read = 0;
    for (j, s) in st.iter().enumerate() {
        if j == i {
            continue;
        }
        if let Some(s) = s {
            read += 1;
            let theirs = s["versionVector"][&actor].as_u64().unwrap_or(0);
            if theirs > own {
                ahead.push((c.nodes[j].id.clone(), theirs));
            }
        }
    }
    frontier::Observation {
        node: c.nodes[i].id.clone(),
        actor,
        own,
        ahead,
        peers_read: read,
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
    let mut expected = acknowledged_before(&ops(&history.entries()), node, killed_ms);
    let client = c.client(i);
    let mut missing = Vec::new();
    for (cart, product) in &expected.carts {
        let ok = match client.get(&format!("/api/v1/carts/{cart}")).await {
            Ok(a) => a.text().contains(product.as_str()),
            Err(_) => false,
        };
        if !ok {
            missing.push(Written::Cart(cart.clone(), product.clone()));
        }
    }
    for p in &expected.products {
        let ok = matches!(client.get(&format!("/api/v1/products/{p}")).await, Ok(a) if a.status.is_success());
        if !ok {
            missing.push(Written::Product(p.clone()));
        }
    }
    // Clients keep writing to the restarted node while it is read, so a
    // remove sent to it since the kill may explain an absence; those
    // elements are not evidence either way. (Removes sent elsewhere since
    // the kill cannot reach it: it is cut off.)
    let since: Vec<Op> = ops(&history.entries())
        .into_iter()
        .filter(|o| o.invoke.time_ms >= killed_ms && o.invoke.node == node)
        .collect();
    expected.drop_removed(&since);
    missing.retain(|w| expected.contains(w));
    Observation {
        node: node.into(),
        killed_ms,
        checked: expected.carts.len() + expected.products.len(),
        missing: missing.iter().map(Written::to_string).collect(),
    }
}

/// One acknowledged write the durability check looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Written {
    /// A line (cart, product) added to a cart.
    Cart(String, String),
    /// A product created.
    Product(String),
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Written::Cart(c, p) => write!(f, "cart {c} / product {p}"),
            Written::Product(p) => write!(f, "product {p}"),
        }
    }
}

/// The writes a node acknowledged before it was killed.
#[derive(Debug, Default)]
struct Expected {
    carts: BTreeSet<(String, String)>,
    products: BTreeSet<String>,
}

impl Expected {
    fn contains(&self, w: &Written) -> bool {
        match w {
            Written::Cart(c, p) => self.carts.contains(&(c.clone(), p.clone())),
            Written::Product(p) => self.products.contains(p),
        }
    }

    /// Forgets every element a remove in `ops` (not known to have failed)
    /// could have touched, whenever and wherever it was invoked.
    fn drop_removed(&mut self, ops: &[Op]) {
        for o in ops.iter().filter(|o| o.may_remove()) {
            let v = &o.invoke.value;
            match o.invoke.f.as_str() {
                "cart_remove" | "cart_set" => {
                    let cart = v["cart"].as_str().unwrap_or_default();
                    self.carts
                        .retain(|(c, p)| !(c == cart && p == o.path_tail()));
                }
                "checkout" => {
                    if let Some(cart) = v["body"]["cartId"].as_str() {
                        self.carts.retain(|(c, _)| c != cart);
                    }
                }
                "delete_product" => {
                    self.products.remove(o.path_tail());
                }
                _ => {}
            }
        }
    }
}

/// What `node` acknowledged before `killed_ms`, less what a remove invoked
/// before then could have taken away.
fn acknowledged_before(all: &[Op], node: &str, killed_ms: f64) -> Expected {
    let mut e = Expected::default();
    for o in all {
        let acked = o
            .done
            .as_ref()
            .is_some_and(|d| d.time_ms < killed_ms && d.kind == Kind::Ok);
        if !acked || o.invoke.node != node {
            continue;
        }
        let v = &o.invoke.value;
        match o.invoke.f.as_str() {
            "cart_add" => {
                e.carts.insert((
                    v["cart"].as_str().unwrap_or_default().into(),
                    v["body"]["productId"].as_str().unwrap_or_default().into(),
                ));
            }
            "create_product" => {
                if let Some(id) = o.done.as_ref().and_then(|d| d.value["body"]["id"].as_str()) {
                    e.products.insert(id.to_string());
                }
            }
            _ => {}
        }
    }
    let before: Vec<Op> = all
        .iter()
        .filter(|o| o.invoke.time_ms < killed_ms)
        .cloned()
        .collect();
    e.drop_removed(&before);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn op(f: &str, node: &str, at: f64, done: Option<(f64, Kind)>, value: Value, out: Value) -> Op {
        let entry = |kind, time_ms, value| crate::history::Entry {
            index: 0,
            process: "p0".into(),
            node: node.into(),
            f: f.into(),
            kind,
            time_ms,
            value,
            invoke: None,
        };
        Op {
            invoke: entry(Kind::Invoke, at, value),
            done: done.map(|(t, k)| entry(k, t, out)),
        }
    }

    fn created(node: &str, at: f64, id: &str) -> Op {
        op(
            "create_product",
            node,
            at,
            Some((at + 1.0, Kind::Ok)),
            json!({}),
            json!({"body": {"id": id}}),
        )
    }

    fn deleted(node: &str, at: f64, id: &str, outcome: Kind) -> Op {
        op(
            "delete_product",
            node,
            at,
            Some((at + 1.0, outcome)),
            json!({"path": format!("/api/v1/products/{id}")}),
            json!({}),
        )
    }

    #[test]
    fn only_the_nodes_acknowledged_writes_before_the_kill_are_expected() {
        let all = vec![
            created("n1", 10.0, "a"),
            created("n2", 10.0, "elsewhere"),
            created("n1", 99.5, "acked-too-late"),
            op(
                "cart_add",
                "n1",
                20.0,
                Some((21.0, Kind::Ok)),
                json!({"cart": "c", "body": {"productId": "a"}}),
                json!({}),
            ),
            op(
                "cart_add",
                "n1",
                20.0,
                Some((21.0, Kind::Info)),
                json!({"cart": "c", "body": {"productId": "maybe"}}),
                json!({}),
            ),
        ];
        let e = acknowledged_before(&all, "n1", 100.0);
        assert_eq!(e.products, BTreeSet::from(["a".to_string()]));
        assert_eq!(
            e.carts,
            BTreeSet::from([("c".to_string(), "a".to_string())])
        );
    }

    #[test]
    fn a_remove_invoked_after_the_kill_still_excuses_an_absence() {
        let mut all = vec![created("n1", 10.0, "a"), created("n1", 11.0, "b")];
        let mut e = acknowledged_before(&all, "n1", 100.0);
        assert_eq!(e.products.len(), 2);
        // During the check, a client deletes "a" on the restarted node; a
        // delete that failed proves nothing was removed.
        all.push(deleted("n1", 150.0, "a", Kind::Info));
        all.push(deleted("n1", 151.0, "b", Kind::Fail));
        e.drop_removed(&all);
        assert!(!e.contains(&Written::Product("a".into())));
        assert!(e.contains(&Written::Product("b".into())));
    }
}
