//! `cluster.toml`: the raw file as serde reads it, and the validated
//! configuration the node runs on.
//!
//! Reading is two steps. [`RawConfig`] mirrors the file with
//! `deny_unknown_fields` everywhere, so a misspelt key stops start-up with
//! its name; [`ClusterConfig::validate`] then checks what types cannot —
//! duplicate node ids, addresses used twice, ranges — and names the field in
//! every error (`node[2].gossip`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crdt_core::NodeId;
use serde::Deserialize;

pub mod accounts;
pub mod http;
pub mod notifications;
pub mod payments;

pub use accounts::{AccountsConfig, RawAccounts};
pub use http::{FairUse, HttpConfig, RateLimit, RawHttp, RawLimits, RouteLimit};
pub use notifications::{NotificationsConfig, RawNotifications};
pub use payments::{PaymentsConfig, ProviderKind, RawPayments};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type,
    /// missing field); toml's message names the key and line.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported.
        message: String,
    },
    /// A field has a value the node cannot run with.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as a path (`node[1].http`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// `[cluster]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Cluster name: peers must present the same name.
    pub name: String,
    /// Where nodes keep their data (`data_dir/<id>`), relative to the file.
    pub data_dir: PathBuf,
    /// Dimension of search embeddings.
    pub embedding_dim: usize,
}

/// One `[[node]]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Node id.
    pub id: String,
    /// HTTP API listen address.
    pub http: String,
    /// QUIC (UDP) bind address.
    pub gossip: String,
    /// The address peers dial, when it differs from `gossip` (a proxy, NAT).
    pub advertise: Option<String>,
}

/// `[replication]`, optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    /// Bound of the delta log, MiB.
    pub delta_log_mib: Option<usize>,
    /// Anti-entropy period, ms (jittered).
    pub anti_entropy_ms: Option<u64>,
    /// How long a stock-rights request waits for an answer, ms.
    pub rights_timeout_ms: Option<u64>,
    /// Largest clock lead accepted from a peer, ms.
    pub max_clock_drift_ms: Option<u64>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[cluster]`.
    pub cluster: RawCluster,
    /// `[[node]]`, one per node.
    #[serde(rename = "node")]
    pub nodes: Vec<RawNode>,
    /// `[http]`.
    pub http: Option<RawHttp>,
    /// `[replication]`.
    pub replication: Option<RawReplication>,
    /// `[limits]`: fair use of carts and orders.
    pub limits: Option<RawLimits>,
    /// `[accounts]`: tokens, password hashing, login limits.
    pub accounts: Option<RawAccounts>,
    /// `[payments]`: the provider, capture, webhook secret.
    pub payments: Option<RawPayments>,
    /// `[notifications]`: order e-mails through an SMTP relay.
    pub notifications: Option<RawNotifications>,
}

/// One node of the cluster, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node id.
    pub id: NodeId,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// QUIC bind address.
    pub gossip: SocketAddr,
    /// The address peers dial (`advertise`, or `gossip`).
    pub dial: SocketAddr,
}

/// Replication tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Bound of the delta log, bytes.
    pub delta_log_bytes: usize,
    /// Anti-entropy period, ms.
    pub anti_entropy_ms: u64,
    /// Stock-rights request timeout, ms.
    pub rights_timeout_ms: u64,
    /// Largest clock lead accepted from a peer, ms.
    pub max_clock_drift_ms: u64,
}

/// The validated cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Cluster name.
    pub name: String,
    /// Data directory, resolved against the config file's folder.
    pub data_dir: PathBuf,
    /// Embedding dimension.
    pub embedding_dim: usize,
    /// Every node, in file order.
    pub nodes: Vec<NodeConfig>,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Replication tuning.
    pub replication: ReplicationConfig,
    /// Fair use of carts and orders.
    pub limits: FairUse,
    /// Accounts and sign-in.
    pub accounts: AccountsConfig,
    /// Payments.
    pub payments: PaymentsConfig,
    /// Order e-mails.
    pub notifications: NotificationsConfig,
}

impl ClusterConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` names the file in errors and
    /// anchors a relative `data_dir`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Self::validate(raw, path)
    }

    /// Turns the raw file into a configuration, or names the bad field.
    pub fn validate(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let name = raw.cluster.name.trim().to_string();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "cluster.name",
                format!("{name:?} must be 1–64 ASCII letters, digits, '-' or '_'"),
            ));
        }
        if !(8..=4096).contains(&raw.cluster.embedding_dim) {
            return Err(invalid(
                "cluster.embedding_dim",
                format!("{} is outside 8..=4096", raw.cluster.embedding_dim),
            ));
        }
        if raw.cluster.data_dir.as_os_str().is_empty() {
            return Err(invalid("cluster.data_dir", "must not be empty".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let data_dir = if raw.cluster.data_dir.is_absolute() {
            raw.cluster.data_dir.clone()
        } else {
            base.join(&raw.cluster.data_dir)
        };
        if raw.nodes.is_empty() {
            return Err(invalid("node", "at least one [[node]] is required".into()));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut nodes = Vec::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            let field = |f: &str| format!("node[{i}].{f}");
            let id = NodeId::new(&n.id).map_err(|e| invalid(&field("id"), e.to_string()))?;
            if !ids.insert(id) {
                return Err(invalid(&field("id"), format!("duplicate node id {id:?}")));
            }
            let addr = |f: &str, v: &str| -> Result<SocketAddr, ConfigError> {
                v.parse::<SocketAddr>()
                    .map_err(|_| invalid(&field(f), format!("{v:?} is not an IP:port address")))
            };
            let http = addr("http", &n.http)?;
            let gossip = addr("gossip", &n.gossip)?;
            let dial = match &n.advertise {
                Some(a) => addr("advertise", a)?,
                None => gossip,
            };
            for (f, a, proto) in [("http", http, "tcp"), ("gossip", gossip, "udp")] {
                if a.port() == 0 {
                    return Err(invalid(
                        &field(f),
                        "port 0 is not allowed: peers must know the port".into(),
                    ));
                }
                if !addrs.insert((proto, a)) {
                    return Err(invalid(&field(f), format!("address {a} is used twice")));
                }
            }
            nodes.push(NodeConfig {
                id,
                http,
                gossip,
                dial,
            });
        }
        let http = HttpConfig::validate(raw.http.as_ref(), base, &invalid)?;
        let limits = FairUse::validate(raw.limits.as_ref(), &invalid)?;
        let accounts = AccountsConfig::validate(raw.accounts.as_ref(), &invalid)?;
        let payments = PaymentsConfig::validate(raw.payments.as_ref(), base, &invalid)?;
        let notifications = NotificationsConfig::validate(raw.notifications.as_ref(), &invalid)?;
        let r = raw.replication.as_ref();
        let replication = ReplicationConfig {
            delta_log_bytes: r.and_then(|r| r.delta_log_mib).unwrap_or(256) << 20,
            anti_entropy_ms: r.and_then(|r| r.anti_entropy_ms).unwrap_or(1_000),
            rights_timeout_ms: r.and_then(|r| r.rights_timeout_ms).unwrap_or(2000),
            max_clock_drift_ms: r.and_then(|r| r.max_clock_drift_ms).unwrap_or(60_000),
        };
        if replication.delta_log_bytes == 0 {
            return Err(invalid(
                "replication.delta_log_mib",
                "must be at least 1".into(),
            ));
        }
        if !(50..=600_000).contains(&replication.anti_entropy_ms) {
            return Err(invalid(
                "replication.anti_entropy_ms",
                "must be within 50..=600000".into(),
            ));
        }
        if !(10..=60_000).contains(&replication.rights_timeout_ms) {
            return Err(invalid(
                "replication.rights_timeout_ms",
                "must be within 10..=60000".into(),
            ));
        }
        Ok(Self {
            name,
            data_dir,
            embedding_dim: raw.cluster.embedding_dim,
            nodes,
            http,
            replication,
            limits,
            accounts,
            payments,
            notifications,
        })
    }

    /// The node with this id.
    pub fn node(&self, id: &NodeId) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == *id)
    }

    /// Every node but `id`.
    pub fn peers_of(&self, id: &NodeId) -> Vec<NodeConfig> {
        self.nodes.iter().filter(|n| n.id != *id).cloned().collect()
    }

    /// Where node `id` keeps its store and search snapshot.
    pub fn node_dir(&self, id: &NodeId) -> PathBuf {
        self.data_dir.join(id.as_str())
    }

    /// Where the cluster's CA, node certificates and secret live.
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "local"
data_dir = "data"
embedding_dim = 256

[[node]]
id = "n1"
http = "127.0.0.1:7001"
gossip = "127.0.0.1:7101"

[[node]]
id = "n2"
http = "127.0.0.1:7002"
gossip = "127.0.0.1:7102"
advertise = "127.0.0.1:7202"
"#;

    fn parse(t: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(t, Path::new("/etc/concord/cluster.toml"))
    }

    fn err(t: &str) -> String {
        parse(t).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_good_file_validates() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/etc/concord/data"));
        assert_eq!(c.nodes[1].dial, "127.0.0.1:7202".parse().unwrap());
        assert_eq!(c.nodes[0].dial, c.nodes[0].gossip);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
    }

    #[test]
    fn every_mistake_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"local\"",
                "name = \"local\"\ncolour = \"blue\"",
                "colour",
            ),
            ("id = \"n2\"", "id = \"n1\"", "node[1].id"),
            (
                "gossip = \"127.0.0.1:7102\"",
                "gossip = \"localhost\"",
                "node[1].gossip",
            ),
            (
                "http = \"127.0.0.1:7002\"",
                "http = \"127.0.0.1:7001\"",
                "node[1].http",
            ),
            (
                "embedding_dim = 256",
                "embedding_dim = 3",
                "cluster.embedding_dim",
            ),
            (
                "embedding_dim = 256",
                "embedding_dim = \"big\"",
                "embedding_dim",
            ),
            ("embedding_dim = 256\n", "", "embedding_dim"),
            ("id = \"n2\"", "id = \"n 2\"", "node[1].id"),
            (
                "advertise = \"127.0.0.1:7202\"",
                "advertise = \"nowhere\"",
                "node[1].advertise",
            ),
        ];
        for (from, to, field) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = err(&text);
            assert!(e.contains(field), "{field:?} not named in: {e}");
        }
        assert!(
            err("[cluster]\nname=\"x\"\ndata_dir=\"d\"\nembedding_dim=8\nnode=[]\n")
                .contains("node")
        );
    }
}
