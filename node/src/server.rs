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
use crate::auth::TokenKey;
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
    let secret = pki::load_secret(&pki).context("loading the cluster secret")?;
    let repl = config.replication.clone();
    let (store, replica, fresh) = storage::open_replica(&node_dir, id, |actor| {
        let mut c = ReplicaConfig::new(actor);
        c.log_max_bytes = repl.delta_log_bytes;
        c.max_drift_ms = repl.max_clock_drift_ms;
        c.hash_seed = rand::random();
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
    let hub = crate::events::EventHub::new();
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
    tasks.spawn(engine.clone().run_returns(background.clone()));

    let listener = match opts.http {
        Some(l) => l,
        None => TcpListener::bind(node.http)
            .await
            .with_context(|| format!("binding the HTTP API to {}", node.http))?,
    };
    let http_addr = listener.local_addr()?;
    let services = Services {
        engine: engine.clone(),
        search: search.clone(),
        tokens: TokenKey::new(secret),
        config: config.clone(),
        cluster,
        metrics,
        events: hub,
    };
    let app = api::router(services, crate::console::router());
    let (http_stop, http_signal) = shutdown::pair();
    let http_task = tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc)
            .with_graceful_shutdown(async move { http_signal.wait().await })
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
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
