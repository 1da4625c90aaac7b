//! Every answer has its audience: at the end of a run the harness asks
//! every node, as an anonymous caller and as a customer who owns nothing,
//! for the inspection routes, the order list, other customers' carts and
//! orders, and the event stream replayed from the start. Each protected
//! route must refuse (401 anonymous, 403/404 the stranger), and no answer
//! — refusal or not — may carry a cart id, order id or shipping address the
//! caller did not name itself.

use serde::Serialize;
use serde_json::json;

use super::{Validity, Verdict};

/// One probe and what it answered.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The node asked.
    pub node: String,
    /// `anonymous` or `stranger` (a customer token that owns nothing).
    pub who: &'static str,
    /// The request, `METHOD path`.
    pub request: String,
    /// Status codes that would be right.
    pub expected: Vec<u16>,
    /// The status (0: no answer).
    pub status: u16,
    /// Customer data in the answer that the request did not name.
    pub leaked: Vec<String>,
}

/// The markers of customer data in `body` (ids and the workload's address)
/// that `request` did not name itself; at most five, for the report.
pub fn leaks(body: &str, request: &str, markers: &[String]) -> Vec<String> {
    markers
        .iter()
        .filter(|m| !request.contains(m.as_str()) && body.contains(m.as_str()))
        .take(5)
        .cloned()
        .collect()
}

/// Runs the checker.
pub fn check(probes: &[Probe]) -> Verdict {
    let answered: Vec<&Probe> = probes.iter().filter(|p| p.status != 0).collect();
    let wrong: Vec<&&Probe> = answered
        .iter()
        .filter(|p| !p.expected.contains(&p.status) || !p.leaked.is_empty())
        .collect();
    let valid = if !wrong.is_empty() {
        Validity::INVALID
    } else if answered.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    let examples: Vec<String> = wrong
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{} {} on {} → {}{}",
                p.who,
                p.request,
                p.node,
                p.status,
                if p.leaked.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", p.leaked.join(", "))
                }
            )
        })
        .collect();
    Verdict {
        valid,
        summary: format!(
            "{} probes answered ({} unanswered), {} wrong{}",
            answered.len(),
            probes.len() - answered.len(),
            wrong.len(),
            if examples.is_empty() {
                String::new()
            } else {
                format!(": {}", examples.join("; "))
            }
        ),
        details: json!({"probes": probes}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(status: u16, leaked: Vec<String>) -> Probe {
        Probe {
            node: "n1".into(),
            who: "anonymous",
            request: "GET /api/v1/cluster/bucket?keyspace=orders&bucket=0".into(),
            expected: vec![401],
            status,
            leaked,
        }
    }

    #[test]
    fn an_open_route_or_a_leaked_id_is_caught() {
        assert_eq!(check(&[probe(401, vec![])]).valid, Validity::VALID);
        assert_eq!(check(&[probe(200, vec![])]).valid, Validity::INVALID);
        assert_eq!(
            check(&[probe(401, vec!["0190-order".into()])]).valid,
            Validity::INVALID
        );
        assert_eq!(check(&[probe(0, vec![])]).valid, Validity::UNKNOWN);
    }

    #[test]
    fn an_id_the_caller_named_is_no_leak() {
        let m = vec!["cart-a".to_string(), "cart-b".to_string()];
        let body = r#"{"error":"cart cart-a not found"}"#;
        assert!(leaks(body, "GET /api/v1/carts/cart-a", &m).is_empty());
        assert_eq!(
            leaks("cart-b", "GET /api/v1/carts/cart-a", &m),
            vec!["cart-b"]
        );
    }
}
