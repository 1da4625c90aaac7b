//! A seeded simulation of 3–7 replicas under random operations, on a network
//! that drops, duplicates and reorders deltas, with periodic anti-entropy
//! (delta log, or digest-tree repair when the log was truncated) and
//! restarts from persisted state. At the end, after healing, every replica
//! must hold the same digest and answer every read the same way.

use crdt_core::delta::Delta;
use crdt_core::{Actor, KeyspaceId, MergeOutcome, Replica, ReplicaConfig};

use crate::laws::clone_replica;
use crate::support::{Rng, Universe, actor, check_stock_invariants, random_op};

struct Msg {
    to: usize,
    bytes: Vec<u8>,
}

/// Anti-entropy from `from` to `to`: the deltas `to` lacks, or a repair of the
/// differing buckets when the log no longer holds them.
fn anti_entropy(reps: &mut [Replica], from: usize, to: usize, wall: u64) -> bool {
    if from == to {
        return false;
    }
    let peer_vv = reps[to].version_vector().clone();
    match reps[from].missing_for(&peer_vv, 4096) {
        Ok(batch) => {
            let moved = !batch.is_empty();
            for l in batch {
                reps[to]
                    .merge_bytes(&l.bytes, wall)
                    .expect("own bytes decode");
            }
            moved
        }
        Err(_) => {
            let mut buckets = Vec::new();
            for ks in KeyspaceId::ALL {
                for b in reps[from].state().tree(ks).diff(reps[to].state().tree(ks)) {
                    buckets.push((ks, b));
                }
            }
            let snap = reps[from].repair_for(&buckets);
            reps[to].merge_repair(&snap, wall);
            true
        }
    }
}

fn run(seed: u64, steps: u64) {
    let mut rng = Rng::new(seed);
    let n = 3 + rng.below(5) as usize;
    let actors: Vec<Actor> = (0..n).map(|i| actor(&format!("s{i}"))).collect();
    // Some runs keep a tiny log, so anti-entropy must fall back to repair.
    let log_max = if rng.chance(30) { 3_000 } else { 1 << 20 };
    let cfg = |a: Actor| {
        let mut c = ReplicaConfig::new(a);
        c.log_max_bytes = log_max;
        c
    };
    let mut reps: Vec<Replica> = actors.iter().map(|a| Replica::new(cfg(*a))).collect();
    let u = Universe::new(6, 4);
    let mut net: Vec<Msg> = Vec::new();
    let mut order_seq = u128::from(seed) << 32;
    let (drop_p, dup_p) = (rng.below(30), rng.below(20));
    for step in 0..steps {
        let wall = 1_000 + step * 3 + rng.below(5);
        match rng.below(100) {
            0..=54 => {
                let r = rng.below(n as u64) as usize;
                let op = random_op(&reps[r], &u, &actors, &mut rng, &mut order_seq);
                if let Ok(applied) = reps[r].apply_local(op, wall) {
                    for to in (0..n).filter(|&t| t != r) {
                        if rng.chance(drop_p) {
                            continue;
                        }
                        net.push(Msg {
                            to,
                            bytes: applied.logged.bytes.to_vec(),
                        });
                        if rng.chance(dup_p) {
                            net.push(Msg {
                                to,
                                bytes: applied.logged.bytes.to_vec(),
                            });
                        }
                    }
                }
            }
            55..=84 => {
                // Deliver a random in-flight message: the network reorders.
                if !net.is_empty() {
                    let i = rng.below(net.len() as u64) as usize;
                    let m = net.swap_remove(i);
                    let d: Delta = crdt_core::codec::decode(&m.bytes).expect("decodes");
                    let out = reps[m.to].merge(d, m.bytes.into(), wall);
                    if let MergeOutcome::Applied(v) = out {
                        assert!(!v.is_empty());
                    }
                }
            }
            85..=94 => {
                let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
                anti_entropy(&mut reps, a, b, wall);
            }
            95..=97 => {
                // The seller returns units of orders cancelled elsewhere.
                let r = rng.below(n as u64) as usize;
                for order in reps[r].returns_due() {
                    reps[r]
                        .apply_local(crdt_core::Op::ReturnUnits { order }, wall)
                        .expect("due return applies");
                }
            }
            _ => {
                // Restart a replica from its persisted form.
                let r = rng.below(n as u64) as usize;
                let digest = reps[r].digest();
                reps[r] = clone_replica(&reps[r]);
                assert_eq!(reps[r].digest(), digest, "restart preserves the state");
            }
        }
        for r in &reps {
            if let Err(e) = check_stock_invariants(r) {
                panic!("seed {seed} step {step}: {e}");
            }
        }
    }
    // Heal: drain the network, then anti-entropy until nothing moves.
    for m in net.drain(..) {
        reps[m.to]
            .merge_bytes(&m.bytes, 10_000_000)
            .expect("decodes");
    }
    let mut rounds = 0;
    loop {
        let mut moved = false;
        for a in 0..n {
            for b in 0..n {
                moved |= anti_entropy(&mut reps, a, b, 10_000_000);
            }
        }
        rounds += 1;
        assert!(rounds < 50, "seed {seed}: anti-entropy does not settle");
        if !moved {
            break;
        }
    }
    let d0 = reps[0].digest();
    for (i, r) in reps.iter().enumerate() {
        assert_eq!(r.digest(), d0, "seed {seed}: replica {i} diverged");
        assert_eq!(
            r.version_vector(),
            reps[0].version_vector(),
            "seed {seed}: vectors differ"
        );
        // Same reads everywhere.
        let keys = r.state().all_keys();
        assert_eq!(
            keys,
            reps[0].state().all_keys(),
            "seed {seed}: key sets differ"
        );
        for k in &keys {
            assert_eq!(
                r.state().encode_entry(k),
                reps[0].state().encode_entry(k),
                "seed {seed}: {k:?} differs"
            );
        }
        check_stock_invariants(r).unwrap_or_else(|e| panic!("seed {seed} after heal: {e}"));
    }
}

#[test]
fn a_thousand_seeds_converge() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in 0..seeds {
        run(seed, 150);
    }
}

#[test]
fn long_runs_converge() {
    for seed in 10_000..10_010 {
        run(seed, 2_000);
    }
}
