//! The durable frontier: a node restarted after `kill -9` (or a power cut)
//! never holds less of its own history than a peer holds for it. A peer
//! ahead of the node on the node's own actor got a delta the node had not
//! made durable — and the node, restarted, will mint those dots again for
//! other writes, which the peer will then drop as already seen.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Validity, Verdict};

/// One restart: the node's own sequence and what each peer held of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Observation {
    /// The restarted node.
    pub node: String,
    /// Its actor after the restart.
    pub actor: String,
    /// The highest of its own dots it holds.
    pub own: u64,
    /// Peers that hold more of its dots than it does: (peer, their seq).
    pub ahead: Vec<(String, u64)>,
    /// Peers whose status could be read.
    pub peers_read: usize,
}

/// Runs the checker.
pub fn check(obs: &[Observation]) -> Verdict {
    let breaches: Vec<&Observation> = obs.iter().filter(|o| !o.ahead.is_empty()).collect();
    let read: usize = obs.iter().map(|o| o.peers_read).sum();
    let valid = if !breaches.is_empty() {
        Validity::INVALID
    } else if obs.is_empty() || read == 0 {
        Validity::UNKNOWN
    } else {
        Validity::VALID
    };
    Verdict {
        valid,
        summary: format!(
            "{} restarts; {} peer vectors compared; {} restarts with a peer ahead of the node's own history",
            obs.len(),
            read,
            breaches.len()
        ),
        details: json!({"restarts": obs}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_ahead_of_the_restarted_node_is_caught() {
        let ok = Observation {
            node: "n1".into(),
            actor: "n1".into(),
            own: 95,
            ahead: vec![],
            peers_read: 2,
        };
        assert_eq!(check(std::slice::from_ref(&ok)).valid, Validity::VALID);
        let bad = Observation {
            ahead: vec![("n2".into(), 102)],
            ..ok
        };
        assert_eq!(check(&[bad]).valid, Validity::INVALID);
        assert_eq!(check(&[]).valid, Validity::UNKNOWN);
    }
}
