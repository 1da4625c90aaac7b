//! The nemesis's schedule: seeded faults with their start and end times
//! (applied and healed on a running cluster by [`crate::faults`]).
//!
//! Faults: partitions (halves, isolate one, bridge, majorities-ring, random,
//! one-way) and packet faults (loss, duplication, delay with jitter, which
//! reorders) through the UDP proxies; `kill -9` and restart; SIGSTOP and
//! SIGCONT; clock skew through the node's test hook; wiping a stopped
//! node's store (it must resync); a slow disk (every sync of one node delayed
//! by 100–300 ms, then `kill -9` while writes wait on it); and a power cut
//! (the node on the power-cut filesystem loses everything it never synced);
//! and a hostile client (slowloris from a second address, see
//! [`crate::hostile`]). The schedule alternates fault windows with
//! quiet gaps, sometimes two faults at once (a network fault and a process
//! fault), and the same seed always gives the same schedule.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::proxy::LinkFault;

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Links cut.
    Partition,
    /// Datagrams dropped at random.
    Loss,
    /// Datagrams sent twice.
    Duplicate,
    /// Datagrams delayed (and so reordered).
    Delay,
    /// `kill -9`, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// A node's clock moved.
    Skew,
    /// A node stopped, its store removed, restarted.
    Wipe,
    /// A node's syncs slowed, then `kill -9` while they are slow.
    #[serde(rename = "slow-disk")]
    SlowDisk,
    /// The power-cut node loses what it never synced.
    #[serde(rename = "power-cut")]
    PowerCut,
    /// A slowloris client on another address holds what it can of a node.
    Hostile,
}

/// Which links a partition cuts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Cut {
    /// Both directions between every pair `(a, b)`.
    Both(Vec<(usize, usize)>),
    /// One direction: `from → to`.
    OneWay(Vec<(usize, usize)>),
}

/// What exactly a fault does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Action {
    /// Cut links.
    Partition(Cut),
    /// A fault on every link.
    Link(#[serde(skip)] LinkFault),
    /// Kill node i (restarted, isolated, checked, then reconnected at the end).
    Kill(usize),
    /// Pause node i.
    Pause(usize),
    /// Skew node i's clock by this many ms.
    Skew(usize, i64),
    /// Wipe node i.
    Wipe(usize),
    /// Slow node i's syncs by this many ms; `kill -9` it at the end.
    SlowDisk(usize, u64),
    /// Cut node i's power (it must be on the power-cut filesystem).
    PowerCut(usize),
    /// Attack node i's HTTP port with slowloris connections.
    Hostile(usize),
}

/// One fault window.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// When it starts, ms into the run.
    pub start_ms: u64,
    /// How long it lasts.
    pub dur_ms: u64,
    /// Its kind.
    pub kind: FaultKind,
    /// What it does.
    pub action: Action,
    /// Human-readable description.
    pub detail: String,
}

fn pairs_across(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| (*x, *y)))
        .collect()
}

fn names(ids: &[String], v: &[usize]) -> String {
    v.iter()
        .map(|i| ids[*i].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn shuffled(n: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

/// A random partition of `n` nodes, with its description.
pub fn partition(ids: &[String], rng: &mut StdRng) -> (Cut, String) {
    let n = ids.len();
    let order = shuffled(n, rng);
    let shapes = if n >= 5 { 6 } else { 5 };
    match rng.random_range(0..shapes) {
        0 => {
            let (l, r) = order.split_at(n / 2);
            (
                Cut::Both(pairs_across(l, r)),
                format!("halves {} | {}", names(ids, l), names(ids, r)),
            )
        }
        1 => {
            let (l, r) = order.split_at(1);
            (
                Cut::Both(pairs_across(l, r)),
                format!("isolate {}", names(ids, l)),
            )
        }
        2 => {
            // A bridge node keeps talking to both halves.
            let bridge = order[0];
            let rest = &order[1..];
            let (l, r) = rest.split_at(rest.len() / 2);
            (
                Cut::Both(pairs_across(l, r)),
                format!(
                    "bridge {} between {} | {}",
                    ids[bridge],
                    names(ids, l),
                    names(ids, r)
                ),
            )
        }
        3 => {
            let mut cut = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    if rng.random_bool(0.5) {
                        cut.push((a, b));
                    }
                }
            }
            let d = cut
                .iter()
                .map(|(a, b)| format!("{}-{}", ids[*a], ids[*b]))
                .collect::<Vec<_>>()
                .join(" ");
            (Cut::Both(cut), format!("random links cut: {d}"))
        }
        4 => {
            // One node hears nobody, but everyone hears it.
            let x = order[0];
            let others: Vec<usize> = order[1..].to_vec();
            let cut = others.iter().map(|o| (*o, x)).collect();
            (
                Cut::OneWay(cut),
                format!("one-way: nobody reaches {}", ids[x]),
            )
        }
        _ => {
            // Majorities ring: node i talks to its ring neighbours only, so
            // every node sees a majority, and no two see the same one.
            let mut cut = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    let (pa, pb) = (
                        order.iter().position(|x| *x == a).unwrap_or(0),
                        order.iter().position(|x| *x == b).unwrap_or(0),
                    );
                    let d = pa.abs_diff(pb);
                    if d.min(n - d) > 1 {
                        cut.push((a, b));
                    }
                }
            }
            (
                Cut::Both(cut),
                format!("majorities ring {}", names(ids, &order)),
            )
        }
    }
}

/// How long and how often faults come.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Shortest fault, ms.
    pub min_fault_ms: u64,
    /// Longest fault, ms.
    pub max_fault_ms: u64,
    /// Shortest quiet gap, ms.
    pub min_gap_ms: u64,
    /// Longest quiet gap, ms.
    pub max_gap_ms: u64,
}

/// The seeded schedule for a run of `duration_ms` over `ids`, using only the
/// fault kinds in `kinds`. The first window starts after `warmup_ms`; a quick
/// run covers every kind at least once by cycling through them first.
pub fn schedule(
    seed: u64,
    ids: &[String],
    duration_ms: u64,
    warmup_ms: u64,
    kinds: &[FaultKind],
    pace: Pace,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = ids.len();
    let mut out = Vec::new();
    let mut t = warmup_ms;
    let mut round = 0usize;
    while !kinds.is_empty() {
        let dur = rng.random_range(pace.min_fault_ms..=pace.max_fault_ms);
        if t + dur + 1_000 > duration_ms {
            break;
        }
        let kind = if round < kinds.len() {
            kinds[round]
        } else {
            kinds[rng.random_range(0..kinds.len())]
        };
        round += 1;
        out.push(make(kind, t, dur, ids, &mut rng));
        // Now and then a process fault rides along with a network fault.
        let net = matches!(
            kind,
            FaultKind::Partition | FaultKind::Loss | FaultKind::Duplicate | FaultKind::Delay
        );
        let procs: Vec<FaultKind> = kinds
            .iter()
            .copied()
            .filter(|k| matches!(k, FaultKind::Kill | FaultKind::Pause | FaultKind::Skew))
            .collect();
        if net && round > kinds.len() && !procs.is_empty() && rng.random_bool(0.3) {
            let k = procs[rng.random_range(0..procs.len())];
            out.push(make(k, t + dur / 4, dur / 2, ids, &mut rng));
        }
        t += dur + rng.random_range(pace.min_gap_ms..=pace.max_gap_ms);
    }
    let _ = n;
    out
}

fn make(kind: FaultKind, start_ms: u64, dur_ms: u64, ids: &[String], rng: &mut StdRng) -> Fault {
    let n = ids.len();
    let node = rng.random_range(0..n);
    let (action, detail) = match kind {
        FaultKind::Partition => {
            let (cut, d) = partition(ids, rng);
            (Action::Partition(cut), d)
        }
        FaultKind::Loss => {
            let p = rng.random_range(0.1..0.4);
            (
                Action::Link(LinkFault {
                    loss: p,
                    ..Default::default()
                }),
                format!("{:.0}% loss on every link", p * 100.0),
            )
        }
        FaultKind::Duplicate => {
            let p = rng.random_range(0.1..0.5);
            (
                Action::Link(LinkFault {
                    duplicate: p,
                    ..Default::default()
                }),
                format!("{:.0}% duplication on every link", p * 100.0),
            )
        }
        FaultKind::Delay => {
            let d = rng.random_range(20..120);
            let j = rng.random_range(5..60);
            (
                Action::Link(LinkFault {
                    delay_ms: d,
                    jitter_ms: j,
                    ..Default::default()
                }),
                format!("{d} ms delay ± {j} ms (reordering) on every link"),
            )
        }
        FaultKind::Kill => (Action::Kill(node), format!("kill -9 {}", ids[node])),
        FaultKind::Pause => (Action::Pause(node), format!("SIGSTOP {}", ids[node])),
        FaultKind::Skew => {
            let sign = if rng.random_bool(0.5) { 1 } else { -1 };
            let ms = sign * rng.random_range(1_000..300_000i64);
            (
                Action::Skew(node, ms),
                format!("{}'s clock {ms:+} ms", ids[node]),
            )
        }
        FaultKind::Wipe => (Action::Wipe(node), format!("wipe {}'s store", ids[node])),
        FaultKind::SlowDisk => {
            let ms = rng.random_range(100..=300);
            (
                Action::SlowDisk(node, ms),
                format!("{}'s syncs take {ms} ms, then kill -9", ids[node]),
            )
        }
        FaultKind::PowerCut => {
            // Only the last node sits on the power-cut filesystem.
            let victim = n - 1;
            (
                Action::PowerCut(victim),
                format!("power cut on {} (unsynced writes lost)", ids[victim]),
            )
        }
        FaultKind::Hostile => (
            Action::Hostile(node),
            format!("slowloris from 127.0.0.2 on {}", ids[node]),
        ),
    };
    Fault {
        start_ms,
        dur_ms,
        kind,
        action,
        detail,
    }
}

/// Every fault kind.
pub const ALL: [FaultKind; 11] = [
    FaultKind::Partition,
    FaultKind::Kill,
    FaultKind::PowerCut,
    FaultKind::Loss,
    FaultKind::Pause,
    FaultKind::SlowDisk,
    FaultKind::Duplicate,
    FaultKind::Skew,
    FaultKind::Delay,
    FaultKind::Wipe,
    FaultKind::Hostile,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let pace = Pace {
            min_fault_ms: 2_000,
            max_fault_ms: 5_000,
            min_gap_ms: 1_000,
            max_gap_ms: 2_000,
        };
        let a = schedule(7, &ids(5), 120_000, 5_000, &ALL, pace);
        let b = schedule(7, &ids(5), 120_000, 5_000, &ALL, pace);
        let c = schedule(8, &ids(5), 120_000, 5_000, &ALL, pace);
        let d = |v: &[Fault]| v.iter().map(|f| f.detail.clone()).collect::<Vec<_>>();
        assert_eq!(d(&a), d(&b));
        assert_ne!(d(&a), d(&c));
        // Every kind appears.
        for k in ALL {
            assert!(a.iter().any(|f| f.kind == k), "{k:?} missing");
        }
    }

    #[test]
    fn a_majorities_ring_leaves_every_node_a_majority() {
        let ids = ids(5);
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (cut, d) = partition(&ids, &mut rng);
            if !d.starts_with("majorities") {
                continue;
            }
            let Cut::Both(cut) = cut else {
                panic!("ring cuts both ways")
            };
            for x in 0..5 {
                let reach = 1
                    + (0..5)
                        .filter(|y| *y != x && !cut.contains(&(x.min(*y), x.max(*y))))
                        .count();
                assert!(reach >= 3, "{d}: node {x} sees {reach}");
            }
        }
    }
}
