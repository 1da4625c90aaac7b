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
use serde_json::{Value, json};

/// Creates a product with `stock` units of initial stock; returns its id.
pub async fn create(c: &Client, sku: &str, stock: u64) -> String {
    concord_chaos::procs::create_product(c, sku, stock)
        .await
        .expect("the product is created")
}

/// Polls until `f` holds on the answer of `path` (bounded by 15 s).
pub async fn eventually(c: &Client, path: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t = std::time::Instant::now();
    loop {
        if let Ok(a) = c.get(path).await
            && let Ok(v) = a.json::<Value>()
            && f(&v)
        {
            return v;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(15),
            "{what}: not seen on {} within 15 s",
            c.addr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Acknowledged cart adds: (cart id, product id).
pub type Acked = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// `n` writers adding `product` to fresh carts on `c` as fast as they can,
/// recording every acknowledged add, until a request fails (the node was
/// killed) or `stop` is set.
pub fn cart_writers(
    c: &Client,
    product: &str,
    n: usize,
    acked: &Acked,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (client, acked, pid, stop) = (
                c.clone().with_timeout(std::time::Duration::from_secs(5)),
                acked.clone(),
                product.to_string(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let cart = uuid::Uuid::new_v4().to_string();
                    let body = json!({"productId": pid, "quantity": 1});
                    match client
                        .post(&format!("/api/v1/carts/{cart}/items"), &body)
                        .await
                    {
                        Ok(a) if a.status.as_u16() == 200 => acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((cart, pid.clone())),
                        Ok(a) if a.status.is_server_error() => return,
                        Ok(a) => panic!("unexpected answer {} {}", a.status, a.text()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect()
}

/// The acknowledged adds `c` does not hold.
pub async fn missing_adds(c: &Client, acked: &[(String, String)]) -> Vec<String> {
    let mut missing = Vec::new();
    for (cart, product) in acked {
        let ok = match c.get(&format!("/api/v1/carts/{cart}")).await {
            Ok(a) => a.text().contains(product.as_str()),
            Err(_) => false,
        };
        if !ok {
            missing.push(cart.clone());
        }
    }
    missing
}

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
        concord_node::pki::init(&config, &Default::default())?;
        let secret =
            concord_node::pki::load_token_key(&concord_node::pki::PkiPaths::new(config.pki_dir()))?;
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
            key: secret,
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
            sid: None,
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

/// A real SMTP server for the tests: Python's `aiosmtpd` (installed into
/// `target/smtp-venv` on first use) storing every message in a Maildir.
pub struct SmtpSink {
    child: std::process::Child,
    /// The Maildir.
    pub dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl SmtpSink {
    /// Starts a sink on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/smtp-venv");
        let python = root.join("bin/python");
        let ready = std::process::Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            let ok = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&root)
                .status()?
                .success()
                && std::process::Command::new(root.join("bin/pip"))
                    .args(["install", "-q", "aiosmtpd==1.4.6"])
                    .status()?
                    .success();
            anyhow::ensure!(ok, "could not install aiosmtpd into {}", root.display());
        }
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Self::start_on(addr)
    }

    /// Starts a sink on `addr` (say, where a stopped one listened).
    pub fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/smtp-venv");
        let python = root.join("bin/python");
        let dir = std::env::temp_dir().join(format!(
            "concord-maildir-{}-{}",
            std::process::id(),
            rand_u32()
        ));
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &addr.to_string(),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Self { child, dir, addr });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::bail!("the SMTP sink did not start on {addr}")
    }

    /// Every message received so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("new")) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    /// Stops it (the port refuses connections until a sink starts on it again
    /// with [`SmtpSink::start_on`]).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
