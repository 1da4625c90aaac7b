//! Running one node: open the store, rebuild the replica and the search
//! index, start replication and the HTTP API, and stop it all cleanly.
//!
//! The caller owns the node: it passes the listener (tests bind port 0) and
//! keeps the [`RunningNode`], whose `stop` ends every task in order — HTTP
//! first, so no new write starts; then replication; then the final flush
//! and search snapshot. Nothing is spawned and forgotten.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use crdt_core::{NodeId, ReplicaConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::{self, Services};
use crate::config::ClusterConfig;
use crate::engine::Engine;
use crate::pki::{self, PkiPaths};
use crate::replication::Cluster;
use crate::search::{self, SearchIndex};
use crate::shutdown::{self, Trigger};
use crate::storage;

/// How to start a node.
pub struct NodeOptions {
    /// The cluster.
    pub config: Arc<ClusterConfig>,
    /// Which node of it.
    pub id: NodeId,
    /// A bound HTTP listener; `None` binds the configured address.
    pub http: Option<TcpListener>,
}

/// A started node.
pub struct RunningNode {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The engine, for in-process tests.
    pub engine: Arc<Engine>,
    /// The search index.
    pub search: Arc<SearchIndex>,
    http_stop: Trigger,
    background_stop: Trigger,
    http_task: tokio::task::JoinHandle<()>,
    tasks: JoinSet<()>,
    flusher: crate::storage::Flusher,
}

/// Starts a node; returns once the store is open and the API listens. The
/// search index loads in the background (`/ready` says when).
pub async fn start(opts: NodeOptions) -> anyhow::Result<RunningNode> {
    let config = opts.config;
    let id = opts.id;
    let node = config
        .node(&id)
        .with_context(|| format!("node {id} is not in the cluster configuration"))?
        .clone();
    let node_dir = config.node_dir(&id);
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("creating {}", node_dir.display()))?;
    let pki = PkiPaths::new(config.pki_dir());
    let tokens = pki::load_token_key(&pki).context("loading the cluster secret")?;
    let repl = config.replication.clone();
    let max_cart_lines = config.limits.max_cart_lines;
    let idem_window_ms = config.limits.idempotency_window.as_millis() as u64;
    let (store, replica, fresh) = storage::open_replica(&node_dir, id, |actor| {
        let mut c = ReplicaConfig::new(actor);
        c.log_max_bytes = repl.delta_log_bytes;
        c.max_drift_ms = repl.max_clock_drift_ms;
        c.hash_seed = rand::random();
        c.max_cart_lines = max_cart_lines;
        c.idem_window_ms = idem_window_ms;
        c
    })
    .with_context(|| format!("opening the store of node {id}"))?;
    tracing::info!(node = %id, actor = %replica.actor(), fresh, keys = ?replica.state().sizes(), "store open");
    let engine = Engine::new(id, replica, store.clone());
    let search = SearchIndex::new(config.embedding_dim, &node_dir)?;
    let metrics = crate::metrics::install();

    let (background_stop, background) = shutdown::pair();
    let mut tasks = JoinSet::new();
    let flusher = {
        let engine = engine.clone();
        store.start_flusher(move |d| {
            ::metrics::histogram!(crate::metrics::FLUSH_BATCH).record(d.batches as f64);
            ::metrics::histogram!(crate::metrics::FLUSH_LATENCY).record(d.took.as_secs_f64());
            ::metrics::counter!(crate::metrics::STORE_SYNCS).increment(u64::from(d.syncs));
            engine.publish_durable(d.ticket);
        })
    };
    {
        let (search, engine) = (search.clone(), engine.clone());
        tasks.spawn(async move {
            let s = search.clone();
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || s.load_or_rebuild(&e)).await;
        });
    }
    tasks.spawn(search::run_indexer(
        search.clone(),
        engine.clone(),
        background.clone(),
    ));
    let hub = crate::events::EventHub::new(config.http.max_event_subscribers);
    tasks.spawn(crate::events::run_bridge(
        engine.clone(),
        hub.clone(),
        background.clone(),
    ));
    let tls = pki::load_node_tls(&pki, &id).context("loading the node's certificate")?;
    let cluster = Cluster::start(
        &config,
        id,
        engine.clone(),
        &tls,
        hub.clone(),
        &mut tasks,
        background.clone(),
    )
    .context("starting replication")?;
    let payments =
        crate::payments::Payments::open(config.payments.clone(), &node_dir, engine.clone())
            .context("opening the payment provider")?;
    cluster.set_payments(payments.clone());
    tasks.spawn(crate::payments::reconcile::run(
        payments.clone(),
        background.clone(),
    ));
    if let Some(n) = crate::notify::Notifier::new(&config.notifications, engine.clone())
        .context("setting up order e-mails")?
    {
        tasks.spawn(Arc::new(n).run(background.clone()));
    }
    tasks.spawn(engine.clone().run_returns(background.clone()));
    tasks.spawn(crate::expiry::run(
        engine.clone(),
        config.limits.clone(),
        background.clone(),
    ));

    let listener = match opts.http {
        Some(l) => l,
        None => TcpListener::bind(node.http)
            .await
            .with_context(|| format!("binding the HTTP API to {}", node.http))?,
    };
    let http_addr = listener.local_addr()?;
    let limiter = Arc::new(crate::api::middleware::Limits::new(&config.http));
    let accounts = Arc::new(
        crate::accounts::Accounts::new(&config.accounts).context("setting up password hashing")?,
    );
    {
        let (limiter, accounts, sd) = (limiter.clone(), accounts.clone(), background.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        limiter.prune();
                        accounts.guard.prune(crate::clock::now_ms());
                    }
                    _ = sd.wait() => break,
                }
            }
        });
    }
    let tls = match &config.http.tls {
        Some((cert, key)) => Some(
            crate::http_server::load_tls(cert, key).context("loading the API's TLS certificate")?,
        ),
        None => None,
    };
    let services = Services {
        engine: engine.clone(),
        search: search.clone(),
        tokens,
        config: config.clone(),
        cluster,
        metrics,
        events: hub,
        limiter,
        accounts,
        payments,
    };
    let app = api::router(services, crate::console::router());
    let (http_stop, http_signal) = shutdown::pair();
    let limits = crate::http_server::ServerLimits {
        header_read_timeout: config.http.header_read_timeout,
        max_connections: config.http.max_connections,
        max_per_address: config.http.max_connections_per_address,
        trusted_proxies: config.http.trusted_proxies.clone(),
        tls,
    };
    let http_task = tokio::spawn(crate::http_server::serve(
        listener,
        app,
        limits,
        http_signal,
    ));
    tracing::info!(node = %id, http = %http_addr, "node listening");
    Ok(RunningNode {
        http_addr,
        engine,
        search,
        http_stop,
        background_stop,
        http_task,
        tasks,
        flusher,
    })
}

impl RunningNode {
    /// Stops the node: HTTP, then background work, then the final flush.
    pub async fn stop(mut self) {
        self.http_stop.fire();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.http_task).await;
        self.http_task.abort();
        self.background_stop.fire();
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(15));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                _ = &mut deadline => {
                    tracing::warn!("background tasks did not stop in time; aborting them");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        // Last: flush whatever the stopped tasks staged.
        let flusher = self.flusher;
        let _ = tokio::task::spawn_blocking(move || flusher.stop()).await;
    }
}
