//! Support for the integration tests: an in-process node on port 0 for the
//! API tests, and a lock that keeps the process-cluster tests from running
//! several clusters at once on a two-core machine.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use concord_node::auth::{Claims, Role, TokenKey};
use concord_node::config::ClusterConfig;
use concord_node::http_client::Client;
use concord_node::server::{self, NodeOptions, RunningNode};

/// Serialises the tests that start process clusters.
pub static CLUSTER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A single node running inside the test process.
pub struct InProcessNode {
    pub node: Option<RunningNode>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub key: TokenKey,
    pub config: Arc<ClusterConfig>,
}

impl InProcessNode {
    /// Starts a one-node cluster in a fresh directory; `extra` is appended to
    /// its `cluster.toml`.
    pub async fn start(extra: &str) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("concord-api-{}-{}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(&dir)?;
        let gossip = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let toml = format!(
            "[cluster]\nname = \"api\"\ndata_dir = \"data\"\nembedding_dim = 32\n\n[[node]]\nid = \"n1\"\nhttp = \"127.0.0.1:1\"\ngossip = \"{gossip}\"\n\n{extra}"
        );
        let path = dir.join("cluster.toml");
        std::fs::write(&path, toml)?;
        let config = Arc::new(ClusterConfig::load(&path)?);
        concord_node::pki::init(&config)?;
        let secret =
            concord_node::pki::load_secret(&concord_node::pki::PkiPaths::new(config.pki_dir()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let node = server::start(NodeOptions {
            config: config.clone(),
            id: crdt_core::NodeId::new("n1")?,
            http: Some(listener),
        })
        .await?;
        let addr = node.http_addr;
        let n = Self {
            node: Some(node),
            addr,
            dir,
            key: TokenKey::new(secret),
            config,
        };
        let c = n.anonymous();
        for _ in 0..200 {
            if c.get("/ready")
                .await
                .map(|a| a.status.is_success())
                .unwrap_or(false)
            {
                return Ok(n);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        anyhow::bail!("in-process node not ready")
    }

    pub fn token(&self, role: Role, sub: &str) -> String {
        let now = concord_node::clock::now_secs();
        self.key.issue(&Claims {
            sub: sub.into(),
            role,
            exp: now + 3600,
            iat: now,
        })
    }

    pub fn admin(&self) -> Client {
        Client::new(self.addr).with_token(self.token(Role::Admin, "admin"))
    }

    pub fn customer(&self, sub: &str) -> Client {
        Client::new(self.addr).with_token(self.token(Role::Customer, sub))
    }

    pub fn anonymous(&self) -> Client {
        Client::new(self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}
