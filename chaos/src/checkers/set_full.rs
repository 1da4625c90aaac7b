//! set-full (Jepsen's `set-full`, with Concord's observed-remove extension):
//! every acknowledged cart add and product create must be present on every
//! node after the heal, unless a remove that could have observed it was
//! attempted. Reports lost, stale and never-read elements and the latency to
//! stability from the reads taken during the run.
//!
//! "Could have observed": a remove (or a set to 0, or a checkout of the cart,
//! or a product delete) that had not completed when the add was invoked —
//! whether it was acknowledged or timed out, and even if it was invoked
//! first: a checkout that waits for stock rights reads the cart only when
//! the rights arrive, and may carry a line added meanwhile into its order.
//! Absence is then legal, and so is presence (the remove may not have seen
//! the add: add wins). This never flags a correct run, at the cost of
//! missing a loss that hides behind such a remove.

use std::collections::BTreeMap;

use serde_json::json;

use super::{FinalReads, Validity, Verdict};
use crate::history::{Kind, Op};

/// One element: an acknowledged add.
#[derive(Clone, Debug)]
struct Element {
    key: (String, String),
    invoked: f64,
    known: f64,
    writer: String,
}

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Runs the checker.
pub fn check(ops: &[Op], finals: &FinalReads) -> Verdict {
    let mut cart_adds = Vec::new();
    let mut creates = Vec::new();
    // Removers by cart (when they completed — infinity when unknown — and
    // the product, or None for the whole cart).
    let mut cart_removers: BTreeMap<String, Vec<(f64, Option<String>)>> = BTreeMap::new();
    let mut product_removers: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // Reads of carts during the run: cart → (time, products seen).
    let mut reads: BTreeMap<String, Vec<(f64, Vec<String>)>> = BTreeMap::new();
    for op in ops {
        let v = &op.invoke.value;
        let out = op.outcome();
        let t = op.invoke.time_ms;
        // When a remove's effect was last possible.
        let until = match (&op.done, out) {
            (Some(d), Kind::Ok) => d.time_ms,
            _ => f64::INFINITY,
        };
        match op.invoke.f.as_str() {
            "cart_add" if out == Kind::Ok => cart_adds.push(Element {
                key: (s(&v["cart"]), s(&v["body"]["productId"])),
                invoked: t,
                known: op.done.as_ref().map(|d| d.time_ms).unwrap_or(t),
                writer: op.invoke.node.clone(),
            }),
            "create_product" if out == Kind::Ok => {
                if let Some(d) = &op.done {
                    creates.push(Element {
                        key: (s(&d.value["body"]["id"]), String::new()),
                        invoked: t,
                        known: d.time_ms,
                        writer: op.invoke.node.clone(),
                    });
                }
            }
            "cart_remove" | "cart_set" if op.may_remove() => {
                cart_removers
                    .entry(s(&v["cart"]))
                    .or_default()
                    .push((until, Some(op.path_tail().to_string())));
            }
            "checkout" if op.may_remove() && v["body"]["cartId"].is_string() => {
                cart_removers
                    .entry(s(&v["body"]["cartId"]))
                    .or_default()
                    .push((until, None));
            }
            "delete_product" if op.may_remove() => {
                product_removers
                    .entry(op.path_tail().to_string())
                    .or_default()
                    .push(until);
            }
            "read_cart" if out == Kind::Ok => {
                if let Some(d) = &op.done {
                    let items = d.value["body"]["items"]
                        .as_array()
                        .map(|a| a.iter().map(|i| s(&i["productId"])).collect())
                        .unwrap_or_default();
                    reads.entry(s(&v["cart"])).or_default().push((t, items));
                }
            }
            _ => {}
        }
    }
    let removed = |e: &Element| {
        cart_removers.get(&e.key.0).is_some_and(|rs| {
            rs.iter()
                .any(|(until, p)| *until > e.invoked && p.as_ref().is_none_or(|p| *p == e.key.1))
        })
    };
    let mut lost = Vec::new();
    let mut stale = 0usize;
    let mut never_read = 0usize;
    let mut latencies = Vec::new();
    for e in &cart_adds {
        let may_be_gone = removed(e);
        for (node, r) in finals {
            let present = r
                .carts
                .get(&e.key.0)
                .is_some_and(|c| c.contains_key(&e.key.1));
            if !present && !may_be_gone {
                lost.push(json!({"kind": "cart_line", "cart": e.key.0, "product": e.key.1, "node": node, "writer": e.writer, "ackedMs": e.known}));
            }
        }
        if may_be_gone {
            continue;
        }
        let later: Vec<&(f64, Vec<String>)> = reads
            .get(&e.key.0)
            .map(|v| v.iter().filter(|(t, _)| *t > e.known).collect())
            .unwrap_or_default();
        if later.is_empty() {
            never_read += 1;
            continue;
        }
        let last_miss = later
            .iter()
            .filter(|(_, items)| !items.contains(&e.key.1))
            .map(|(t, _)| *t)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        if last_miss.is_some() {
            stale += 1;
        }
        let stable = later
            .iter()
            .filter(|(t, items)| items.contains(&e.key.1) && last_miss.is_none_or(|m| *t > m))
            .map(|(t, _)| *t)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
        if let Some(st) = stable {
            latencies.push((st - e.known).max(0.0));
        }
    }
    for e in &creates {
        let may_be_gone = product_removers
            .get(&e.key.0)
            .is_some_and(|ts| ts.iter().any(|until| *until > e.invoked));
        for (node, r) in finals {
            if !r.products.contains_key(&e.key.0) && !may_be_gone {
                lost.push(json!({"kind": "product", "id": e.key.0, "node": node, "writer": e.writer, "ackedMs": e.known}));
            }
        }
    }
    let attempts = cart_adds.len() + creates.len();
    let valid = if !lost.is_empty() {
        Validity::INVALID
    } else if attempts == 0 || finals.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    let summary = format!(
        "{} acknowledged adds ({} cart lines, {} products): {} lost, {} stale, {} never read during the run; stable after p50 {:.0} ms / p99 {:.0} ms",
        attempts,
        cart_adds.len(),
        creates.len(),
        lost.len(),
        stale,
        never_read,
        quantile(latencies.clone(), 0.5),
        quantile(latencies.clone(), 0.99)
    );
    Verdict {
        valid,
        summary,
        details: json!({
            "attemptCount": attempts, "lostCount": lost.len(), "lost": lost.iter().take(50).collect::<Vec<_>>(),
            "staleCount": stale, "neverRead": never_read,
            "stableLatencyMs": {"0": quantile(latencies.clone(), 0.0), "0.5": quantile(latencies.clone(), 0.5),
                "0.95": quantile(latencies.clone(), 0.95), "0.99": quantile(latencies.clone(), 0.99), "1": quantile(latencies, 1.0)},
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::NodeRead;
    use crate::history::{Entry, ops};
    use serde_json::Value;

    pub(crate) fn entry(
        index: u64,
        f: &str,
        kind: Kind,
        t: f64,
        value: Value,
        invoke: Option<u64>,
    ) -> Entry {
        Entry {
            index,
            process: "c1".into(),
            node: "n1".into(),
            f: f.into(),
            kind,
            time_ms: t,
            value,
            invoke,
        }
    }

    fn add(i: u64, t: f64, cart: &str, product: &str) -> Vec<Entry> {
        vec![
            entry(
                i,
                "cart_add",
                Kind::Invoke,
                t,
                json!({"cart": cart, "body": {"productId": product}}),
                None,
            ),
            entry(
                i + 1,
                "cart_add",
                Kind::Ok,
                t + 1.0,
                json!({"status": 200}),
                Some(i),
            ),
        ]
    }

    fn finals(carts: &[(&str, &[&str])]) -> FinalReads {
        let mut r = NodeRead::default();
        for (c, ps) in carts {
            r.carts.insert(
                c.to_string(),
                ps.iter().map(|p| (p.to_string(), 1)).collect(),
            );
        }
        let mut f = FinalReads::new();
        f.insert("n1".into(), r.clone());
        f.insert("n2".into(), r);
        f
    }

    #[test]
    fn a_lost_acknowledged_add_is_caught() {
        let mut h = add(0, 0.0, "c", "p1");
        h.extend(add(2, 5.0, "c", "p2"));
        // The final reads lack p2, and nothing removed it.
        let v = check(&ops(&h), &finals(&[("c", &["p1"])]));
        assert_eq!(v.valid, Validity::INVALID, "{}", v.summary);
        assert_eq!(v.details["lostCount"], 2);
    }

    #[test]
    fn absence_after_a_remove_that_could_observe_it_is_legal() {
        let mut h = add(0, 0.0, "c", "p1");
        h.push(entry(
            2,
            "cart_remove",
            Kind::Invoke,
            3.0,
            json!({"cart": "c", "path": "/api/v1/carts/c/items/p1"}),
            None,
        ));
        h.push(entry(3, "cart_remove", Kind::Info, 4.0, json!({}), Some(2)));
        let v = check(&ops(&h), &finals(&[("c", &[])]));
        assert_eq!(v.valid, Validity::VALID, "{}", v.summary);
    }

    #[test]
    fn a_checkout_still_running_when_the_add_began_may_take_the_line() {
        // The checkout is invoked first, waits (for stock rights, say), and
        // completes after the add: its order may hold the line.
        let mut h = vec![entry(
            0,
            "checkout",
            Kind::Invoke,
            0.0,
            json!({"body": {"cartId": "c"}}),
            None,
        )];
        h.extend(add(1, 1.0, "c", "p1"));
        h.push(entry(
            3,
            "checkout",
            Kind::Ok,
            3.0,
            json!({"status": 201}),
            Some(0),
        ));
        let v = check(&ops(&h), &finals(&[("c", &[])]));
        assert_eq!(v.valid, Validity::VALID, "{}", v.summary);
    }

    #[test]
    fn a_remove_finished_before_the_add_began_excuses_nothing() {
        let mut h = vec![
            entry(
                0,
                "cart_remove",
                Kind::Invoke,
                0.0,
                json!({"cart": "c", "path": "/api/v1/carts/c/items/p1"}),
                None,
            ),
            entry(
                1,
                "cart_remove",
                Kind::Ok,
                1.0,
                json!({"status": 200}),
                Some(0),
            ),
        ];
        h.extend(add(2, 2.0, "c", "p1"));
        let v = check(&ops(&h), &finals(&[("c", &[])]));
        assert_eq!(v.valid, Validity::INVALID, "{}", v.summary);
        assert_eq!(v.details["lostCount"], 2);
    }

    #[test]
    fn a_stale_read_is_counted() {
        let mut h = add(0, 0.0, "c", "p1");
        h.push(entry(
            2,
            "read_cart",
            Kind::Invoke,
            10.0,
            json!({"cart": "c"}),
            None,
        ));
        h.push(entry(
            3,
            "read_cart",
            Kind::Ok,
            11.0,
            json!({"body": {"items": []}}),
            Some(2),
        ));
        h.push(entry(
            4,
            "read_cart",
            Kind::Invoke,
            20.0,
            json!({"cart": "c"}),
            None,
        ));
        h.push(entry(
            5,
            "read_cart",
            Kind::Ok,
            21.0,
            json!({"body": {"items": [{"productId": "p1"}]}}),
            Some(4),
        ));
        let v = check(&ops(&h), &finals(&[("c", &["p1"])]));
        assert_eq!(v.valid, Validity::VALID);
        assert_eq!(v.details["staleCount"], 1);
        assert_eq!(v.details["stableLatencyMs"]["0.5"], 19.0);
    }
}
