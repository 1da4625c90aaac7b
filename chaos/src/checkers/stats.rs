//! Stats: operations by kind and outcome, latency quantiles, messages and
//! bytes on the cluster link per write, and times to converge.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::convergence::Heal;
use crate::history::{Kind, Op};

fn q(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Computes the stats. `wire` holds the cluster's message and byte counters
/// accumulated over the run.
pub fn compute(ops: &[Op], heals: &[Heal], wire: &Value) -> Value {
    let mut by_f: BTreeMap<&str, (u64, u64, u64, Vec<f64>)> = BTreeMap::new();
    for op in ops {
        let e = by_f.entry(op.invoke.f.as_str()).or_default();
        match op.outcome() {
            Kind::Ok => e.0 += 1,
            Kind::Fail => e.1 += 1,
            _ => e.2 += 1,
        }
        if let Some(l) = op.latency_ms() {
            e.3.push(l);
        }
    }
    let mut per_op = serde_json::Map::new();
    let mut all = Vec::new();
    for (f, (ok, fail, info, mut lat)) in by_f {
        lat.sort_by(|a, b| a.total_cmp(b));
        all.extend(lat.iter().copied());
        per_op.insert(
            f.into(),
            json!({"ok": ok, "fail": fail, "info": info, "p50Ms": q(&lat, 0.5), "p99Ms": q(&lat, 0.99), "maxMs": q(&lat, 1.0)}),
        );
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let writes = ops
        .iter()
        .filter(|o| o.outcome() == Kind::Ok && o.invoke.f != "read_cart")
        .count()
        .max(1) as f64;
    let mut took: Vec<f64> = heals
        .iter()
        .filter_map(|h| h.converged_ms.map(|c| c - h.heal_ms))
        .collect();
    took.sort_by(|a, b| a.total_cmp(b));
    json!({
        "ops": ops.len(),
        "perOp": per_op,
        "latencyMs": {"p50": q(&all, 0.5), "p90": q(&all, 0.9), "p99": q(&all, 0.99), "max": q(&all, 1.0)},
        "messagesPerWrite": wire["messages"].as_f64().unwrap_or(0.0) / writes,
        "bytesPerWrite": wire["bytes"].as_f64().unwrap_or(0.0) / writes,
        "udpBytesPerWrite": wire["udpBytes"].as_f64().unwrap_or(0.0) / writes,
        "wire": wire,
        "convergeAfterHealMs": {"p50": q(&took, 0.5), "p99": q(&took, 0.99), "max": q(&took, 1.0), "count": took.len()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Entry, ops};

    #[test]
    fn counts_and_quantiles() {
        let e = |i, kind, t, inv| Entry {
            index: i,
            process: "c".into(),
            node: "n1".into(),
            f: "cart_add".into(),
            kind,
            time_ms: t,
            value: json!({}),
            invoke: inv,
        };
        let h = vec![
            e(0, Kind::Invoke, 0.0, None),
            e(1, Kind::Ok, 4.0, Some(0)),
            e(2, Kind::Invoke, 5.0, None),
            e(3, Kind::Info, 9.0, Some(2)),
        ];
        let s = compute(
            &ops(&h),
            &[],
            &json!({"messages": 10, "bytes": 1000, "udpBytes": 2000}),
        );
        assert_eq!(s["perOp"]["cart_add"]["ok"], 1);
        assert_eq!(s["perOp"]["cart_add"]["info"], 1);
        assert_eq!(s["bytesPerWrite"], 1000.0);
    }
}
