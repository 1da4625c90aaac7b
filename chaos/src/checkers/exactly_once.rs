//! Exactly once under retries: every checkout the retrying shoppers sent —
//! however often, on whichever nodes, across partitions and `kill -9` — is
//! at most one order, exactly one when any attempt was answered 2xx, every
//! 2xx names the order derived from (customer, key), and its units are sold
//! once: on every node, a shopper's SKU holds `restocked − Σ units of its
//! live orders`, which a second sale of one checkout would break. Cart adds
//! retried on the node that had the first attempt apply once: the cart's
//! quantity lies between the adds answered 2xx and those plus the adds whose
//! every answer was lost — widened by one per add whose retry crossed to
//! another node (that one may apply twice, or lose to a concurrent write).
//! A node whose store the nemesis wiped loses what it had not replicated
//! yet, as any lost disk does: a cart with adds answered by a wiped node is
//! held to the upper bound only (a double application still shows).

use std::collections::BTreeMap;

use serde_json::json;

use super::{Validity, Verdict};
use crate::retrying::{RetryLog, RetryRead};

fn acked(attempts: &[crate::retrying::Attempt]) -> bool {
    attempts.iter().any(|a| a.status.is_some_and(|s| s < 300))
}

fn all_lost(attempts: &[crate::retrying::Attempt]) -> bool {
    attempts.iter().all(|a| a.status.is_none_or(|s| s >= 500))
}

/// Runs the checker over the log and every node's final read.
pub fn check(
    log: &RetryLog,
    reads: &BTreeMap<String, RetryRead>,
    wiped: &std::collections::BTreeSet<String>,
) -> Verdict {
    let mut problems: Vec<String> = Vec::new();
    let retried = log
        .checkouts
        .iter()
        .filter(|t| t.attempts.len() > 1)
        .count()
        + log.adds.iter().filter(|t| t.attempts.len() > 1).count();
    let replays = log
        .checkouts
        .iter()
        .flat_map(|t| &t.attempts)
        .chain(log.adds.iter().flat_map(|t| &t.attempts))
        .filter(|a| a.replayed)
        .count();
    let multi_node = log
        .checkouts
        .iter()
        .filter(|t| {
            let first = t.attempts.first().map(|a| &a.node);
            t.attempts.iter().any(|a| Some(&a.node) != first)
        })
        .count();
    for t in &log.checkouts {
        for a in &t.attempts {
            if a.status.is_some_and(|s| s < 300) && a.order.as_deref() != Some(t.order.as_str()) {
                problems.push(format!(
                    "checkout {} answered {:?} from {}, not its derived order {}",
                    t.key, a.order, a.node, t.order
                ));
            }
        }
    }
    for (node, r) in reads {
        for t in &log.checkouts {
            if acked(&t.attempts) && !r.orders.contains_key(&t.order) {
                problems.push(format!(
                    "{node}: checkout {} was answered 2xx but order {} is missing",
                    t.key, t.order
                ));
            }
        }
        for (name, sku, _, cart) in &log.shoppers {
            let live: u64 = log
                .checkouts
                .iter()
                .filter(|t| &t.customer == name)
                .filter(|t| r.orders.get(&t.order).is_some_and(|s| s != "cancelled"))
                .map(|t| u64::from(t.qty))
                .sum();
            let restocked = log.supply.get(sku).copied().unwrap_or(0);
            if let Some(stock) = r.stock.get(sku)
                && restocked.checked_sub(live) != Some(*stock)
            {
                problems.push(format!(
                    "{node}: {sku} holds {stock} of {restocked} restocked, but its live orders took {live}: a checkout was sold more than once (or lost its units)"
                ));
            }
            let adds: Vec<_> = log.adds.iter().filter(|a| &a.cart == cart).collect();
            let done = adds.iter().filter(|a| acked(&a.attempts)).count() as u64;
            let unknown = adds.iter().filter(|a| all_lost(&a.attempts)).count() as u64;
            let crossed = adds.iter().filter(|a| a.crossed).count() as u64;
            let on_wiped = adds.iter().any(|a| {
                a.attempts
                    .iter()
                    .any(|t| t.status.is_some_and(|s| s < 300) && wiped.contains(&t.node))
            });
            if let Some(q) = r.carts.get(cart) {
                let q = u64::from(*q);
                if q > done + unknown + crossed || (!on_wiped && q + crossed < done) {
                    problems.push(format!(
                        "{node}: cart {cart} holds {q}, but {done} adds were answered, {unknown} lost and {crossed} crossed nodes"
                    ));
                }
            }
        }
    }
    let valid = if !problems.is_empty() {
        Validity::INVALID
    } else if reads.is_empty() || log.checkouts.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    Verdict {
        valid,
        summary: format!(
            "{} checkouts ({} on more than one node) and {} cart adds; {retried} retried, {replays} answers replayed; {} problems",
            log.checkouts.len(),
            multi_node,
            log.adds.len(),
            problems.len()
        ),
        details: json!({"problems": problems.iter().take(50).collect::<Vec<_>>()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrying::{AddTry, Attempt, CheckoutTry};

    fn ok(node: &str, order: &str) -> Attempt {
        Attempt {
            node: node.into(),
            status: Some(201),
            replayed: false,
            order: Some(order.into()),
        }
    }

    fn log() -> RetryLog {
        RetryLog {
            checkouts: vec![CheckoutTry {
                customer: "r0".into(),
                sku: "RETRY-0".into(),
                key: "k".into(),
                order: "o1".into(),
                qty: 2,
                attempts: vec![ok("n1", "o1"), ok("n2", "o1")],
            }],
            adds: vec![AddTry {
                cart: "c0".into(),
                attempts: vec![ok("n1", ""), ok("n1", "")],
                crossed: false,
            }],
            shoppers: vec![("r0".into(), "RETRY-0".into(), "p".into(), "c0".into())],
            supply: [("RETRY-0".to_string(), 10)].into(),
        }
    }

    fn read(stock: u64, cart: u32) -> RetryRead {
        RetryRead {
            stock: [("RETRY-0".to_string(), stock)].into(),
            orders: [("o1".to_string(), "placed".to_string())].into(),
            carts: [("c0".to_string(), cart)].into(),
        }
    }

    #[test]
    fn sold_once_and_added_once_is_valid() {
        let reads = [("n1".to_string(), read(8, 1))].into();
        assert_eq!(
            check(&log(), &reads, &Default::default()).valid,
            Validity::VALID
        );
    }

    #[test]
    fn a_checkout_sold_twice_is_caught() {
        let reads = [("n1".to_string(), read(6, 1))].into();
        let v = check(&log(), &reads, &Default::default());
        assert_eq!(v.valid, Validity::INVALID, "{}", v.summary);
    }

    #[test]
    fn an_add_applied_twice_on_its_node_is_caught() {
        let reads = [("n1".to_string(), read(8, 2))].into();
        assert_eq!(
            check(&log(), &reads, &Default::default()).valid,
            Validity::INVALID
        );
    }

    #[test]
    fn adds_lost_with_a_wiped_disk_are_allowed_but_doubles_are_not() {
        let reads = [("n1".to_string(), read(8, 0))].into();
        assert_eq!(
            check(&log(), &reads, &Default::default()).valid,
            Validity::INVALID
        );
        let wiped = ["n1".to_string()].into();
        assert_eq!(check(&log(), &reads, &wiped).valid, Validity::VALID);
        let reads = [("n1".to_string(), read(8, 2))].into();
        assert_eq!(check(&log(), &reads, &wiped).valid, Validity::INVALID);
    }

    #[test]
    fn a_missing_order_or_another_id_is_caught() {
        let mut r = read(10, 1);
        r.orders.clear();
        let reads = [("n1".to_string(), r)].into();
        assert_eq!(
            check(&log(), &reads, &Default::default()).valid,
            Validity::INVALID
        );
        let mut l = log();
        l.checkouts[0].attempts[1].order = Some("o2".into());
        let reads = [("n1".to_string(), read(8, 1))].into();
        assert_eq!(
            check(&l, &reads, &Default::default()).valid,
            Validity::INVALID
        );
    }
}
