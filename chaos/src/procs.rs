//! A cluster of real `concord node` processes on this machine, for the chaos
//! harness and the integration tests: free ports chosen at run time, a fresh
//! data directory, optional fault proxies in front of the gossip ports, and
//! the process faults — `kill -9`, SIGSTOP/SIGCONT, restart, wiping a
//! stopped node's store. Everything is cleaned up on drop.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use concord_node::auth::{Claims, Role, TokenKey};
use concord_node::http_client::Client;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::proxy::{Faults, Proxy};

/// How to build the cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Number of nodes.
    pub nodes: usize,
    /// Put a fault proxy in front of each gossip port.
    pub proxies: bool,
    /// Extra TOML appended to `cluster.toml` (`[http]`, `[replication]`);
    /// `$CONCORD_EXTRA_TOML`, when set, replaces it.
    pub extra_toml: String,
    /// Environment for every node process (say `CONCORD_CLOCK_SKEW_MS`).
    pub env: Vec<(String, String)>,
    /// Embedding dimension of the cluster.
    pub embedding_dim: usize,
    /// Nodes (by index) whose data directory sits on the power-cut
    /// filesystem ([`crate::disks::LazyMount`]).
    pub lazyfs: Vec<usize>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            nodes: 3,
            proxies: false,
            extra_toml: "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n".into(),
            env: Vec::new(),
            embedding_dim: 64,
            lazyfs: Vec::new(),
        }
    }
}

/// One node process.
pub struct NodeProc {
    /// Node id.
    pub id: String,
    /// HTTP address.
    pub http: SocketAddr,
    /// Gossip (UDP) address.
    pub gossip: SocketAddr,
    /// Proxy address peers dial, when proxied.
    pub advertise: Option<SocketAddr>,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl NodeProc {
    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is running (not reaped).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// The cluster.
pub struct ProcessCluster {
    dir: PathBuf,
    config: PathBuf,
    bin: PathBuf,
    /// The nodes, in id order (`n1`, `n2`, …).
    pub nodes: Vec<NodeProc>,
    /// The fault table (meaningful with proxies).
    pub faults: Faults,
    proxies: Vec<Proxy>,
    key: TokenKey,
    keep: bool,
    /// Data directories on the power-cut filesystem, by node index.
    lazy: HashMap<usize, crate::disks::LazyMount>,
}

fn free_tcp() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn free_udp() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// Finds the `concord` binary: `$CONCORD_BIN`, or next to the running
/// executable's target directory (`target/<profile>/concord`).
pub fn concord_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("CONCORD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let c = dir.join("concord");
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "cannot find the concord binary near {}: build it (cargo build -p concord-node) or set CONCORD_BIN",
        exe.display()
    )
}

impl ProcessCluster {
    /// Writes the configuration, runs `concord init`, starts every node and
    /// waits until all are ready.
    pub async fn start(spec: Spec) -> anyhow::Result<Self> {
        let bin = concord_bin()?;
        let dir = std::env::temp_dir().join(format!(
            "concord-cluster-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut nodes = Vec::new();
        let mut toml =
            "[cluster]\nname = \"test\"\ndata_dir = \"data\"\nembedding_dim = 64\n\n".to_string();
        for i in 1..=spec.nodes {
            let (http, gossip) = (free_tcp()?, free_udp()?);
            let advertise = if spec.proxies {
                Some(free_udp()?)
            } else {
                None
            };
            toml.push_str(&format!(
                "[[node]]\nid = \"n{i}\"\nhttp = \"{http}\"\ngossip = \"{gossip}\"\n"
            ));
            if let Some(a) = advertise {
                toml.push_str(&format!("advertise = \"{a}\"\n"));
            }
            toml.push('\n');
            nodes.push(NodeProc {
                id: format!("n{i}"),
                http,
                gossip,
                advertise,
                child: None,
                log: dir.join(format!("n{i}.log")),
                env: spec.env.clone(),
            });
        }
        // `$CONCORD_EXTRA_TOML` replaces the extra TOML, to run the harness
        // against nodes configured differently (or an older build that does
        // not know today's keys, with `$CONCORD_BIN`).
        match std::env::var("CONCORD_EXTRA_TOML") {
            Ok(extra) => toml.push_str(&extra),
            Err(_) => toml.push_str(&spec.extra_toml),
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, toml)?;
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("init")
            .output()?;
        if !out.status.success() {
            bail!(
                "concord init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let secret = concord_node::pki::load_token_key(&concord_node::pki::PkiPaths::new(
            dir.join("data").join("pki"),
        ))?;
        let faults = Faults::default();
        let mut proxies = Vec::new();
        if spec.proxies {
            let names: HashMap<SocketAddr, String> =
                nodes.iter().map(|n| (n.gossip, n.id.clone())).collect();
            for n in &nodes {
                if let Some(a) = n.advertise {
                    proxies.push(
                        Proxy::start(n.id.clone(), n.gossip, a, names.clone(), faults.clone())
                            .await?,
                    );
                }
            }
        }
        let mut c = Self {
            dir,
            config,
            bin,
            nodes,
            faults,
            proxies,
            key: secret,
            keep: std::env::var("CONCORD_KEEP_TEST_DIRS").is_ok(),
            lazy: HashMap::new(),
        };
        for &i in &spec.lazyfs {
            let m = crate::disks::LazyMount::over(&c.node_dir(i)).with_context(|| {
                format!("putting {} on the power-cut filesystem", c.nodes[i].id)
            })?;
            c.lazy.insert(i, m);
        }
        for i in 0..c.nodes.len() {
            c.spawn(i)?;
        }
        for i in 0..c.nodes.len() {
            c.wait_ready(i, Duration::from_secs(60)).await?;
        }
        Ok(c)
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Where node `i` keeps its data.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join("data").join(&self.nodes[i].id)
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["node", "--id", &n.id])
            .env(
                "RUST_LOG",
                std::env::var("CONCORD_NODE_LOG")
                    .unwrap_or_else(|_| "info,sled=warn,quinn=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for (k, v) in &n.env {
            cmd.env(k, v);
        }
        n.child = Some(cmd.spawn().with_context(|| format!("starting {}", n.id))?);
        Ok(())
    }

    /// An admin token.
    pub fn admin_token(&self) -> String {
        self.token(Role::Admin, "admin")
    }

    /// A token for a role and subject, valid for an hour.
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

    /// An admin client of node `i`.
    pub fn client(&self, i: usize) -> Client {
        Client::new(self.nodes[i].http).with_token(self.admin_token())
    }

    /// A client of node `i` without a token.
    pub fn anonymous(&self, i: usize) -> Client {
        Client::new(self.nodes[i].http)
    }

    /// Waits until node `i` answers `/ready`.
    pub async fn wait_ready(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let c = self.anonymous(i).with_timeout(Duration::from_secs(2));
        let t = Instant::now();
        loop {
            if let Ok(a) = c.get("/ready").await
                && a.status.is_success()
            {
                return Ok(());
            }
            if !self.nodes[i].running() {
                bail!(
                    "node {} exited; its log:\n{}",
                    self.nodes[i].id,
                    tail(&self.log(i), 40)
                );
            }
            if t.elapsed() > timeout {
                bail!(
                    "node {} not ready after {timeout:?}; its log:\n{}",
                    self.nodes[i].id,
                    tail(&self.log(i), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, i: usize, s: Signal) -> anyhow::Result<()> {
        let pid = self.nodes[i].pid().context("node not running")?;
        kill(Pid::from_raw(pid as i32), s)?;
        Ok(())
    }

    /// `kill -9` node `i` and reap it.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// Stops node `i` cleanly (SIGTERM) and waits for it.
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGTERM)?;
        let t = Instant::now();
        while self.nodes[i].running() {
            if t.elapsed() > Duration::from_secs(20) {
                return self.kill9(i);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.nodes[i].child = None;
        Ok(())
    }

    /// Whether node `i`'s data directory is on the power-cut filesystem.
    pub fn on_lazyfs(&self, i: usize) -> bool {
        self.lazy.contains_key(&i)
    }

    /// Cuts node `i`'s power: `kill -9`, then everything it wrote and did not
    /// sync is dropped (see [`crate::disks::LazyMount::cut`]). Restart it
    /// with [`ProcessCluster::restart`].
    pub fn power_cut(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i)?;
        self.lazy
            .get_mut(&i)
            .context("the node is not on the power-cut filesystem")?
            .cut()
    }

    /// Pauses node `i` (SIGSTOP).
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// Resumes node `i` (SIGCONT).
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    /// Starts node `i` again (after `kill9` or `stop`) and waits until ready.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_ready(i, Duration::from_secs(60)).await
    }

    /// Starts node `i` again without waiting.
    pub fn respawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)
    }

    /// Removes a stopped node's store and search snapshot (its certificate
    /// and incarnation ledger stay, as after a disk replacement).
    pub fn wipe(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.nodes[i].running(),
            "stop node {} before wiping it",
            self.nodes[i].id
        );
        let d = self.node_dir(i);
        let _ = std::fs::remove_dir_all(d.join("store"));
        let _ = std::fs::remove_file(d.join("search.idx"));
        Ok(())
    }

    /// Each node's status (None when unreachable).
    pub async fn statuses(&self) -> Vec<Option<serde_json::Value>> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            let c = self.anonymous(i).with_timeout(Duration::from_secs(2));
            out.push(match c.get("/api/v1/cluster/status").await {
                Ok(a) if a.status.is_success() => a.json().ok(),
                _ => None,
            });
        }
        out
    }

    /// Waits until the given nodes report equal digests; returns how long it took.
    pub async fn wait_converged(
        &self,
        which: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let t = Instant::now();
        loop {
            let st = self.statuses().await;
            let digests: Vec<Option<String>> = which
                .iter()
                .map(|&i| {
                    st[i]
                        .as_ref()
                        .and_then(|v| v["digest"].as_str().map(str::to_string))
                })
                .collect();
            if digests.iter().all(|d| d.is_some()) && digests.windows(2).all(|w| w[0] == w[1]) {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                bail!("nodes {which:?} did not converge within {timeout:?}: {digests:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every node reports every peer connected (past the
    /// hello): nodes start one by one, and a dialler backs off up to a
    /// second, so a link can come up after the nodes are all ready.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let t = Instant::now();
        loop {
            let st = self.statuses().await;
            let all = st.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s["peers"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().all(|p| p["alive"] == true))
                })
            });
            if all {
                return Ok(());
            }
            if t.elapsed() > timeout {
                bail!("not every peer link came up within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }
}

/// Creates a product with `stock` units on the node `c` talks to; returns
/// its id.
pub async fn create_product(c: &Client, sku: &str, stock: u64) -> anyhow::Result<String> {
    let a = c
        .post(
            "/api/v1/products",
            &serde_json::json!({"name": format!("Product {sku}"), "sku": sku, "price": "10.00",
                "currency": "USD", "initialQuantity": stock}),
        )
        .await?;
    anyhow::ensure!(a.status.as_u16() == 201, "creating {sku}: {}", a.text());
    Ok(a.json::<serde_json::Value>()?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for p in &mut self.proxies {
            p.stop();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                if let Some(pid) = Some(c.id()) {
                    // A paused process cannot die until it is continued.
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Unmount before removing the directories under the mounts.
        self.lazy.clear();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
