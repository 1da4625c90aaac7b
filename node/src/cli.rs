//! The `concord` command line: `init`, `token`, `node`, `up` (and `inspect`).
//! The only module that prints to stdout; everything else logs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use crdt_core::NodeId;

use crate::auth::{Claims, Role, TokenKey};
use crate::config::ClusterConfig;
use crate::http_client::Client;
use crate::pki::{self, PkiPaths};
use crate::{clock, sample, server};

/// Concord: a geo-replicated commerce store.
#[derive(Debug, Parser)]
#[command(name = "concord", version, about)]
pub struct Cli {
    /// The cluster configuration.
    #[arg(long, global = true, default_value = "cluster.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A token role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Catalog, inventory, every cart and order.
    Admin,
    /// One customer's carts and orders.
    Customer,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make what is missing of the cluster CA, node certificates and secret
    /// (idempotent), make existing keys and secrets private, and write one
    /// bundle per node for multi-machine clusters.
    Init {
        /// Issue every node a new certificate (they are valid for a year).
        #[arg(long)]
        renew: bool,
        /// Revoke a node's certificate (it goes on `pki/revoked.crl`, which
        /// every node must be given) and issue it a new one. Repeatable.
        #[arg(long, value_name = "ID")]
        revoke: Vec<String>,
        /// Sign tokens with a new key from now on; tokens of the previous two
        /// keys stay valid until they expire.
        #[arg(long)]
        rotate_secret: bool,
    },
    /// Print a bearer token signed with the cluster secret.
    Token {
        /// The role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Subject: the customer id (default "admin" or "customer").
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
    /// Run one node (after `init`).
    Node {
        /// Which node of the configuration.
        #[arg(long)]
        id: String,
    },
    /// Run every node of the configuration on this machine, with a sample
    /// catalog when the store is empty; Ctrl-C stops them all.
    Up {
        /// Do not load the sample catalog.
        #[arg(long)]
        no_sample: bool,
    },
    /// Are the nodes converged? (see `concord inspect --help`)
    Inspect(crate::inspect::InspectArgs),
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Init {
            renew,
            revoke,
            rotate_secret,
        } => {
            let cfg = load(&cli.config)?;
            let opts = pki::InitOptions {
                renew,
                revoke,
                rotate_secret,
            };
            let report = pki::init(&cfg, &opts)?;
            for p in &report.tightened {
                println!("made private (mode 600) {}", p.display());
            }
            for p in &report.created {
                println!("created {}", p.display());
            }
            for id in &report.revoked {
                println!(
                    "revoked the certificate of {id}: copy {} to every node and restart them",
                    PkiPaths::new(cfg.pki_dir()).crl().display()
                );
            }
            if let Some(kid) = &report.rotated {
                println!(
                    "new token key {kid}: copy the cluster secret to every node and restart them"
                );
            }
            if report.created.is_empty() && report.rotated.is_none() {
                println!("nothing to do: every certificate and the secret exist");
            }
            for b in &report.bundles {
                println!("bundle  {}", b.display());
            }
            Ok(0)
        }
        Command::Token {
            role,
            sub,
            ttl_hours,
        } => {
            let cfg = load(&cli.config)?;
            let key = pki::load_token_key(&PkiPaths::new(cfg.pki_dir()))?;
            println!("{}", issue(&key, role, sub, ttl_hours));
            Ok(0)
        }
        Command::Node { id } => {
            let cfg = Arc::new(load(&cli.config)?);
            let id = NodeId::new(&id).with_context(|| format!("--id {id:?}"))?;
            run_node(cfg, id).await?;
            Ok(0)
        }
        Command::Up { no_sample } => up(&cli.config, no_sample).await,
        Command::Inspect(args) => crate::inspect::run(&cli.config, args).await,
    }
}

fn load(path: &Path) -> anyhow::Result<ClusterConfig> {
    Ok(ClusterConfig::load(path)?)
}

fn issue(key: &TokenKey, role: RoleArg, sub: Option<String>, ttl_hours: u64) -> String {
    let now = clock::now_secs();
    let (role, default_sub) = match role {
        RoleArg::Admin => (Role::Admin, "admin"),
        RoleArg::Customer => (Role::Customer, "customer"),
    };
    key.issue(&Claims {
        sub: sub.unwrap_or_else(|| default_sub.to_string()),
        role,
        exp: now + ttl_hours * 3600,
        iat: now,
        sid: None,
    })
}

async fn run_node(cfg: Arc<ClusterConfig>, id: NodeId) -> anyhow::Result<()> {
    let node = server::start(server::NodeOptions {
        config: cfg,
        id,
        http: None,
    })
    .await?;
    wait_for_signal().await;
    tracing::info!("stopping");
    node.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn up(config_path: &Path, no_sample: bool) -> anyhow::Result<i32> {
    let cfg = load(config_path)?;
    let report = pki::init(&cfg, &pki::InitOptions::default())?;
    if !report.created.is_empty() {
        println!(
            "initialised the cluster: CA, {} node certificates and the secret under {}",
            cfg.nodes.len(),
            cfg.pki_dir().display()
        );
    }
    let exe = std::env::current_exe().context("finding the concord executable")?;
    let mut children = Vec::new();
    for n in &cfg.nodes {
        let log_path = cfg.node_dir(&n.id).join("node.log");
        std::fs::create_dir_all(cfg.node_dir(&n.id))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = tokio::process::Command::new(&exe)
            .arg("--config")
            .arg(config_path)
            .args(["node", "--id", n.id.as_str()])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", n.id))?;
        children.push((n.clone(), child, log_path));
    }
    let key = pki::load_token_key(&PkiPaths::new(cfg.pki_dir()))?;
    let token = issue(&key, RoleArg::Admin, None, 24 * 30);
    let clients: Vec<Client> = cfg
        .nodes
        .iter()
        .map(|n| Client::new(n.http).with_token(token.clone()))
        .collect();
    for (c, (n, _, log)) in clients.iter().zip(&children) {
        wait_ready(c, Duration::from_secs(120))
            .await
            .with_context(|| {
                format!("node {} did not become ready; see {}", n.id, log.display())
            })?;
    }
    if !no_sample {
        let first = clients[0].get("/api/v1/products?limit=1").await?;
        let empty = first
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v["items"].as_array().map(|a| a.is_empty()))
            .unwrap_or(false);
        if empty {
            let n = sample::load(&clients).await?;
            println!("loaded {n} sample products");
        }
    }
    println!();
    for n in &cfg.nodes {
        println!(
            "  {:<8} http://{}   (console at /, API under /api/v1)",
            n.id.as_str(),
            n.http
        );
    }
    println!();
    println!("admin token (30 days):\n{token}\n");
    println!(
        "try:  curl -s http://{}/api/v1/search/products?q=headphones | head -c 400",
        cfg.nodes[0].http
    );
    println!("Ctrl-C stops every node.");
    let exit = tokio::select! {
        _ = wait_for_signal() => 0,
        (i, status) = wait_any(&mut children) => {
            eprintln!("node {} exited unexpectedly ({status}); stopping the others", cfg.nodes[i].id);
            1
        }
    };
    for (n, child, _) in &mut children {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(_) => println!("stopped {}", n.id),
            Err(_) => {
                let _ = child.kill().await;
                println!("killed {} (it did not stop in 20 s)", n.id);
            }
        }
    }
    Ok(exit)
}

async fn wait_any(
    children: &mut [(crate::config::NodeConfig, tokio::process::Child, PathBuf)],
) -> (usize, String) {
    loop {
        for (i, (_, c, _)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return (i, status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a node answers `/ready` with 200.
pub async fn wait_ready(c: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(a) = c.get("/ready").await
            && a.status.is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
