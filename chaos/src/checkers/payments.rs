//! Money moves once: no order is charged twice at the provider, no node's
//! refunds exceed its capture, the refunds acknowledged never add up to
//! more than was captured, and a payment acknowledged by a node that was
//! not wiped is in the provider's ledger and in every node's final view.
//! A wiped node takes its provider ledger with it (the test provider lives
//! beside the node's store), so its orders are judged on what survives.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Validity, Verdict};
use crate::payer::{PayLog, PayReads};

/// Runs the checker over the workload's log and every node's final reads.
pub fn check(
    log: &PayLog,
    reads: &BTreeMap<String, PayReads>,
    wiped: &BTreeSet<String>,
) -> Verdict {
    let mut problems = Vec::new();
    // Ledger entries per order, over every node that answered.
    let mut intents: BTreeMap<String, Vec<(String, &Value)>> = BTreeMap::new();
    let mut unread = Vec::new();
    for (node, r) in reads {
        match &r.ledger {
            Some(l) => {
                for e in l {
                    let order = e["order"].as_str().unwrap_or_default().to_string();
                    intents.entry(order).or_default().push((node.clone(), e));
                    let (cap, refd) = (num(e, "capturedMinor"), num(e, "refundedMinor"));
                    if refd > cap {
                        problems.push(format!(
                            "{node}: intent {} refunded {refd} of {cap} captured",
                            e["id"]
                        ));
                    }
                }
            }
            None => unread.push(node.clone()),
        }
    }
    let (mut paid, mut refunded_orders, mut cancelled) = (0, 0, 0);
    for (order, rec) in log {
        let entries = intents.get(order).map(Vec::as_slice).unwrap_or_default();
        let charges: u64 = entries.iter().map(|(_, e)| num(e, "charges")).sum();
        if charges > 1 {
            problems.push(format!(
                "order {order} charged {charges} times: {entries:?}"
            ));
        }
        let captured: u64 = entries.iter().map(|(_, e)| num(e, "capturedMinor")).sum();
        let acked: u64 = rec.refunds.iter().map(|(_, m)| m).sum();
        if acked > 0 {
            refunded_orders += 1;
        }
        if rec.cancelled {
            cancelled += 1;
        }
        if acked > captured
            && !rec.refunds.iter().any(|(n, _)| wiped.contains(n))
            && unread.is_empty()
        {
            problems.push(format!(
                "order {order}: {acked} refunded (acknowledged) of {captured} captured"
            ));
        }
        if rec.paid_on.is_empty() {
            continue;
        }
        paid += 1;
        let seller_lost =
            wiped.contains(&rec.placed_on) || rec.paid_on.iter().all(|n| wiped.contains(n));
        if seller_lost {
            continue;
        }
        if unread.is_empty() && charges == 0 {
            problems.push(format!(
                "order {order}: paid on {:?}, but no provider ledger holds a charge",
                rec.paid_on
            ));
        }
        for (node, r) in reads {
            match r.orders.get(order) {
                Some((cap, refd)) => {
                    if *cap == 0 {
                        problems.push(format!(
                            "{node}: order {order} was acknowledged paid but shows nothing captured"
                        ));
                    }
                    if refd > cap {
                        problems.push(format!("{node}: order {order} refunded {refd} of {cap}"));
                    }
                }
                None => problems.push(format!(
                    "{node}: acknowledged paid order {order} is missing"
                )),
            }
        }
    }
    let valid = if log.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::Known(problems.is_empty())
    };
    Verdict {
        valid,
        summary: format!(
            "{} orders, {paid} acknowledged paid, {refunded_orders} with acknowledged refunds, {cancelled} cancelled after payment; {} problems",
            log.len(),
            problems.len()
        ),
        details: json!({"problems": problems, "unreadLedgers": unread}),
    }
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payer::PayRecord;

    fn intent(order: &str, captured: u64, refunded: u64, charges: u64) -> Value {
        json!({"id": "pi_1", "order": order, "capturedMinor": captured, "refundedMinor": refunded, "charges": charges})
    }

    fn run(entries: Vec<Value>, rec: PayRecord) -> Verdict {
        let mut log = PayLog::new();
        log.insert("o1".into(), rec);
        let mut reads = BTreeMap::new();
        reads.insert(
            "n1".to_string(),
            PayReads {
                ledger: Some(entries),
                orders: [("o1".to_string(), (1000, 0))].into_iter().collect(),
            },
        );
        check(&log, &reads, &BTreeSet::new())
    }

    fn paid() -> PayRecord {
        PayRecord {
            placed_on: "n1".into(),
            total_minor: 1000,
            paid_on: vec!["n2".into()],
            ..PayRecord::default()
        }
    }

    #[test]
    fn a_clean_payment_is_valid() {
        let v = run(vec![intent("o1", 1000, 0, 1)], paid());
        assert_eq!(v.valid, Validity::VALID, "{}", v.details);
    }

    #[test]
    fn a_double_charge_is_caught() {
        let v = run(
            vec![intent("o1", 1000, 0, 1), intent("o1", 1000, 0, 1)],
            paid(),
        );
        assert_eq!(v.valid, Validity::INVALID);
    }

    #[test]
    fn refunds_above_the_capture_are_caught() {
        let mut rec = paid();
        rec.refunds = vec![("n1".into(), 700), ("n2".into(), 700)];
        assert_eq!(
            run(vec![intent("o1", 1000, 0, 1)], rec).valid,
            Validity::INVALID
        );
        assert_eq!(
            run(vec![intent("o1", 1000, 1400, 1)], paid()).valid,
            Validity::INVALID
        );
    }

    #[test]
    fn an_acknowledged_payment_missing_from_the_ledger_is_caught() {
        assert_eq!(run(vec![], paid()).valid, Validity::INVALID);
    }
}
