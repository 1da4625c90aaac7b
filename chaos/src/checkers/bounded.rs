//! Bounded under a hostile client: while one address holds every slowloris
//! connection a node lets it (the `hostile` nemesis), the node keeps
//! answering everybody else, and no attacker connection outlives the node's
//! header timeout by more than a second of slack (the attacker looks every
//! 100 ms). A node without a per-address cap serves the probe late or not
//! at all; one without a header timeout holds the attacker's connections for
//! the whole window.

use serde::Serialize;
use serde_json::json;

use super::{Validity, Verdict};

/// What the attacker saw.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttackStats {
    /// Connections accepted by the kernel (the node may close them at once).
    pub opened: u64,
    /// Connections the node closed.
    pub closed_by_node: u64,
    /// Connections still open when the attack stopped.
    pub open_at_end: u64,
    /// The longest any attacker connection stayed open, ms: closed by the
    /// node or still open at the end.
    pub longest_ms: u64,
    /// The most attacker connections open at one time.
    pub most_open: u64,
}

/// One hostile window, as observed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// The node attacked.
    pub node: String,
    /// How long the attack ran, ms.
    pub window_ms: u64,
    /// What the attacker saw.
    pub attack: AttackStats,
    /// Whether `/health` from the workload's address answered 200 while the
    /// attack held its connections.
    pub probe_ok: bool,
    /// How long the probe took, ms.
    pub probe_ms: u64,
    /// Why the window was not judged (the node was killed or paused), if so.
    pub skipped: Option<String>,
}

/// Runs the checker; `header_timeout_ms` is the nodes' header timeout.
pub fn check(obs: &[Observation], header_timeout_ms: u64) -> Verdict {
    let bound = header_timeout_ms + 1_000;
    let judged: Vec<&Observation> = obs.iter().filter(|o| o.skipped.is_none()).collect();
    let starved: Vec<&&Observation> = judged.iter().filter(|o| !o.probe_ok).collect();
    // A window shorter than the bound cannot show a connection held too long.
    let held_too_long: Vec<&&Observation> = judged
        .iter()
        .filter(|o| o.window_ms > bound && o.attack.longest_ms > bound)
        .collect();
    let valid = if !starved.is_empty() || !held_too_long.is_empty() {
        Validity::INVALID
    } else if judged.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    let most = judged.iter().map(|o| o.attack.most_open).max().unwrap_or(0);
    let longest = judged
        .iter()
        .map(|o| o.attack.longest_ms)
        .max()
        .unwrap_or(0);
    let probe_max = judged.iter().map(|o| o.probe_ms).max().unwrap_or(0);
    Verdict {
        valid,
        summary: format!(
            "{} hostile windows judged ({} skipped); the attacker held at most {most} connections, none longer than {longest} ms (bound {bound} ms); the probe answered in at most {probe_max} ms; {} windows starved the probe, {} held a connection too long",
            judged.len(),
            obs.len() - judged.len(),
            starved.len(),
            held_too_long.len()
        ),
        details: json!({"windows": obs, "boundMs": bound}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(probe_ok: bool, longest_ms: u64) -> Observation {
        Observation {
            node: "n1".into(),
            window_ms: 6_000,
            attack: AttackStats {
                opened: 900,
                closed_by_node: 700,
                open_at_end: 200,
                longest_ms,
                most_open: 256,
            },
            probe_ok,
            probe_ms: 3,
            skipped: None,
        }
    }

    #[test]
    fn a_starved_probe_or_a_connection_held_past_the_timeout_is_caught() {
        assert_eq!(check(&[window(true, 2_400)], 2_000).valid, Validity::VALID);
        assert_eq!(
            check(&[window(false, 2_400)], 2_000).valid,
            Validity::INVALID
        );
        assert_eq!(
            check(&[window(true, 5_900)], 2_000).valid,
            Validity::INVALID
        );
        let skipped = Observation {
            skipped: Some("killed".into()),
            ..window(false, 5_900)
        };
        assert_eq!(check(&[skipped], 2_000).valid, Validity::UNKNOWN);
    }
}
