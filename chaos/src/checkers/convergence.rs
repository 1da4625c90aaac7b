//! Convergence (strong eventual consistency): after the final heal, every
//! node reports the same digest within the limit; and after each fault
//! healed during the run, every node caught up — holding at least what any
//! node held when the fault healed — within the limit too. Reports the times.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Validity, Verdict};

/// How one heal during the run went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heal {
    /// When the fault healed, ms into the run.
    pub heal_ms: f64,
    /// When every node had caught up (None: not within the limit).
    pub converged_ms: Option<f64>,
    /// What healed.
    pub fault: String,
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Runs the checker: `final_ms` is how long the final convergence took
/// (None: not within `limit_ms`).
pub fn check(heals: &[Heal], final_ms: Option<f64>, limit_ms: f64) -> Verdict {
    let took: Vec<f64> = heals
        .iter()
        .filter_map(|h| h.converged_ms.map(|c| c - h.heal_ms))
        .collect();
    let slow: Vec<&Heal> = heals
        .iter()
        .filter(|h| h.converged_ms.is_none_or(|c| c - h.heal_ms > limit_ms))
        .collect();
    let final_ok = final_ms.is_some_and(|t| t <= limit_ms);
    let valid = if final_ok && slow.is_empty() {
        Validity::VALID
    } else {
        Validity::INVALID
    };
    let summary = format!(
        "final convergence {}; {} heals during the run, p50 {:.0} ms, p99 {:.0} ms, {} over the {:.0} s limit",
        match final_ms {
            Some(t) => format!("in {t:.0} ms"),
            None => format!("NOT within {:.0} s", limit_ms / 1000.0),
        },
        heals.len(),
        quantile(took.clone(), 0.5),
        quantile(took.clone(), 0.99),
        slow.len(),
        limit_ms / 1000.0
    );
    Verdict {
        valid,
        summary,
        details: json!({"finalMs": final_ms, "limitMs": limit_ms, "heals": heals.len(),
            "p50Ms": quantile(took.clone(), 0.5), "p99Ms": quantile(took.clone(), 0.99), "maxMs": quantile(took, 1.0),
            "slow": slow.iter().take(20).map(|h| json!({"healMs": h.heal_ms, "convergedMs": h.converged_ms, "fault": h.fault})).collect::<Vec<_>>()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_does_not_converge_is_invalid() {
        let heals = vec![Heal {
            heal_ms: 1_000.0,
            converged_ms: Some(1_300.0),
            fault: "partition".into(),
        }];
        assert_eq!(check(&heals, Some(500.0), 10_000.0).valid, Validity::VALID);
        assert_eq!(check(&heals, None, 10_000.0).valid, Validity::INVALID);
        let slow = vec![Heal {
            heal_ms: 1_000.0,
            converged_ms: Some(15_000.0),
            fault: "partition".into(),
        }];
        assert_eq!(check(&slow, Some(500.0), 10_000.0).valid, Validity::INVALID);
        let never = vec![Heal {
            heal_ms: 1_000.0,
            converged_ms: None,
            fault: "kill".into(),
        }];
        assert_eq!(
            check(&never, Some(500.0), 10_000.0).valid,
            Validity::INVALID
        );
    }
}
