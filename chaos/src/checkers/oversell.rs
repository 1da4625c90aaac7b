//! No oversell: at every node, at every sample, the units in live orders do
//! not exceed the units restocked (stock never goes below zero); at the end,
//! the units of all live orders do not exceed every restock the clients
//! attempted; and after the heal every node shows the same stock.

use std::collections::BTreeMap;

use serde_json::json;

use super::{FinalReads, Sample, Validity, Verdict};
use crate::history::{Kind, Op};

/// Runs the checker.
pub fn check(ops: &[Op], samples: &[Sample], finals: &FinalReads) -> Verdict {
    let mut problems = Vec::new();
    for s in samples {
        if s.inv.live_sold > s.inv.restocked as i64 {
            problems.push(
                json!({"kind": "sample", "node": s.node, "sku": s.sku, "timeMs": s.time_ms,
                "liveSold": s.inv.live_sold, "restocked": s.inv.restocked}),
            );
        }
    }
    // Every unit that may have entered stock: initial quantities and
    // restocks, acknowledged or unknown.
    let mut supply: BTreeMap<String, u64> = BTreeMap::new();
    for op in ops {
        if op.outcome() == Kind::Fail {
            continue;
        }
        let v = &op.invoke.value;
        match op.invoke.f.as_str() {
            "create_product" => {
                if let Some(sku) = v["body"]["sku"].as_str() {
                    *supply.entry(sku.into()).or_default() +=
                        v["body"]["initialQuantity"].as_u64().unwrap_or(0);
                }
            }
            "restock" => {
                if let Some(sku) = v["path"].as_str().and_then(|p| p.split('/').nth(4)) {
                    *supply.entry(sku.into()).or_default() +=
                        v["body"]["quantity"].as_u64().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    // Live units per SKU across every order any node holds (highest status wins).
    let rank = |s: &str| {
        ["placed", "paid", "cancelled", "shipped", "delivered"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(0)
    };
    let mut orders: BTreeMap<&String, &super::OrderRead> = BTreeMap::new();
    for r in finals.values() {
        for (id, o) in &r.orders {
            let e = orders.entry(id).or_insert(o);
            if rank(&o.status) > rank(&e.status) {
                *e = o;
            }
        }
    }
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    for o in orders.values().filter(|o| o.status != "cancelled") {
        for (sku, u) in &o.units {
            *live.entry(sku.clone()).or_default() += u;
        }
    }
    for (sku, units) in &live {
        let s = supply.get(sku).copied().unwrap_or(0);
        // Products made before the run (the harness's seed catalog) are not
        // in the history; their supply shows in the nodes' restock totals.
        let seen = finals
            .values()
            .filter_map(|r| r.inventory.get(sku))
            .map(|i| i.restocked)
            .max()
            .unwrap_or(0);
        if *units > s.max(seen) {
            problems.push(json!({"kind": "final", "sku": sku, "liveUnits": units, "supplyAttempted": s, "restockedOnNodes": seen}));
        }
    }
    let mut stock: BTreeMap<&String, Vec<u64>> = BTreeMap::new();
    for r in finals.values() {
        for (sku, i) in &r.inventory {
            stock.entry(sku).or_default().push(i.stock);
        }
    }
    for (sku, v) in &stock {
        if v.len() != finals.len() || v.windows(2).any(|w| w[0] != w[1]) {
            problems.push(json!({"kind": "unequal_stock", "sku": sku, "stock": v}));
        }
    }
    let sold: u64 = live.values().sum();
    let valid = if !problems.is_empty() {
        Validity::INVALID
    } else if samples.is_empty() {
        // Without samples the check during the run made no claim.
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    Verdict {
        valid,
        summary: format!(
            "{} samples, {} SKUs, {} units in live orders; {} violations",
            samples.len(),
            stock.len(),
            sold,
            problems.len()
        ),
        details: json!({"violations": problems.iter().take(50).collect::<Vec<_>>(), "violationCount": problems.len(), "liveUnits": sold}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::{Inventory, NodeRead, OrderRead};

    fn finals(units: u64, stock: [u64; 2], restocked: u64) -> FinalReads {
        let mut f = FinalReads::new();
        for (i, n) in ["n1", "n2"].iter().enumerate() {
            let mut r = NodeRead::default();
            r.orders.insert(
                "o1".into(),
                OrderRead {
                    status: "paid".into(),
                    units: [("S".to_string(), units)].into(),
                },
            );
            r.inventory.insert(
                "S".into(),
                Inventory {
                    stock: stock[i],
                    restocked,
                    live_sold: units as i64,
                },
            );
            f.insert(n.to_string(), r);
        }
        f
    }

    fn good_sample() -> Sample {
        Sample {
            time_ms: 1.0,
            node: "n1".into(),
            sku: "S".into(),
            inv: Inventory {
                stock: 2,
                restocked: 10,
                live_sold: 8,
            },
        }
    }

    #[test]
    fn overselling_is_caught_three_ways() {
        assert_eq!(
            check(&[], &[good_sample()], &finals(10, [0, 0], 10)).valid,
            Validity::VALID
        );
        // No sample taken: the check during the run claimed nothing.
        assert_eq!(
            check(&[], &[], &finals(10, [0, 0], 10)).valid,
            Validity::UNKNOWN
        );
        // More units in live orders than were ever restocked.
        assert_eq!(
            check(&[], &[], &finals(11, [0, 0], 10)).valid,
            Validity::INVALID
        );
        // A node whose stock went below zero at a sample.
        let bad = Sample {
            time_ms: 5.0,
            node: "n1".into(),
            sku: "S".into(),
            inv: Inventory {
                stock: 0,
                restocked: 3,
                live_sold: 4,
            },
        };
        assert_eq!(
            check(&[], &[bad], &finals(1, [9, 9], 10)).valid,
            Validity::INVALID
        );
        // Nodes that disagree on stock after the heal.
        assert_eq!(
            check(&[], &[], &finals(1, [9, 8], 10)).valid,
            Validity::INVALID
        );
    }
}
