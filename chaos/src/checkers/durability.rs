//! Durability: what a killed node acknowledged before `kill -9` is on that
//! node after it restarts — read from it while it is still cut off from its
//! peers, so nothing it shows could have come back from them.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Validity, Verdict};

/// One kill, and what the restarted node still held.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Observation {
    /// The node.
    pub node: String,
    /// When it was killed, ms into the run.
    pub killed_ms: f64,
    /// Acknowledged writes checked.
    pub checked: usize,
    /// Those not found after the restart.
    pub missing: Vec<String>,
}

/// Runs the checker.
pub fn check(obs: &[Observation]) -> Verdict {
    let checked: usize = obs.iter().map(|o| o.checked).sum();
    let missing: Vec<&String> = obs.iter().flat_map(|o| o.missing.iter()).collect();
    let valid = if !missing.is_empty() {
        Validity::INVALID
    } else if obs.is_empty() || checked == 0 {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    Verdict {
        valid,
        summary: format!(
            "{} kills; {} acknowledged writes checked on the restarted node before it reconnected; {} missing",
            obs.len(),
            checked,
            missing.len()
        ),
        details: json!({"kills": obs, "missingCount": missing.len()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_missing_after_restart_is_caught() {
        let good = Observation {
            node: "n2".into(),
            killed_ms: 10.0,
            checked: 5,
            missing: vec![],
        };
        assert_eq!(check(std::slice::from_ref(&good)).valid, Validity::VALID);
        let bad = Observation {
            missing: vec!["cart c / product p".into()],
            ..good
        };
        assert_eq!(check(&[bad]).valid, Validity::INVALID);
        assert_eq!(check(&[]).valid, Validity::UNKNOWN);
    }
}
