//! Replication over QUIC: mutual TLS, delta push, anti-entropy, digest-tree
//! repair, stock-rights transfers and order forwarding.
//!
//! Tasks, all owned by the node's `JoinSet`:
//! - the accept loop, and one dial loop per peer with a larger id (one
//!   connection per pair; the smaller id dials, with backoff and jitter);
//! - per connection, a stream loop that serves the peer's pushes and requests;
//! - the fan-out: every applied delta — local, or merged from a peer the
//!   target cannot reach directly — goes to each peer's bounded queue;
//! - per peer, a sender that writes what its queue holds onto one uni stream
//!   at a time (sent at once when idle; batched while a push is in flight);
//!   and an anti-entropy loop that pulls on every (re)connection and every
//!   `anti_entropy_ms` with jitter — and repairs a divergence it finds;
//! - a truncation ticker that drops logged deltas every peer has (all of
//!   them on a node with no peers).

pub mod peer;
mod push;
pub mod repair;
pub mod rights;
pub mod sync;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crdt_core::status::OrderStatus;
use crdt_core::{Actor, NodeId, OrderId, Sku, VersionVector};
use rand::RngExt;
use serde::Serialize;
use tokio::task::JoinSet;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::config::{ClusterConfig, ReplicationConfig};
use crate::engine::Engine;
use crate::metrics as m;
use crate::pki::NodeTls;
use crate::shutdown::Shutdown;
use peer::{Identity, Peer};
use wire::Msg;

/// One peer as this node sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// Peer id.
    pub id: String,
    /// The address this node dials.
    pub address: String,
    /// Whether a connection (past the hello) is up.
    pub alive: bool,
    /// Milliseconds since the peer was last heard from (null: never).
    pub last_seen_ms: Option<u64>,
    /// The peer's state digest as it last reported it (hex; null: never).
    pub last_digest: Option<String>,
}

/// This node's peers and the replication machinery.
pub struct Cluster {
    /// The engine deltas come from and go to.
    pub engine: Arc<Engine>,
    /// Peers by id.
    pub peers: BTreeMap<NodeId, Arc<Peer>>,
    identity: Identity,
    endpoint: Option<quinn::Endpoint>,
    cfg: ReplicationConfig,
    /// One repair at a time.
    pub repairing: tokio::sync::Mutex<()>,
    hub: Arc<crate::events::EventHub>,
    /// The payment service, set once at start (the seller side of
    /// forwarded payments and refunds, and the capture before a ship).
    payments: std::sync::OnceLock<Arc<crate::payments::Payments>>,
    last_convergence: std::sync::Mutex<Option<bool>>,
    divergence: std::sync::Mutex<DivergenceStatus>,
}

/// Divergence repairs this node ran (equal vectors, different digests), for
/// the status endpoint, `concord inspect` and the console.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DivergenceStatus {
    /// Divergence repairs that changed something here, since start.
    pub repaired: u64,
    /// The last one: the peer repaired from, when (Unix ms), and the keys it
    /// changed (at most 20).
    pub last: Option<DivergenceRepair>,
}

/// One divergence repair.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DivergenceRepair {
    /// The peer whose state filled the gap.
    pub peer: String,
    /// When, in Unix milliseconds.
    pub at_ms: u64,
    /// Keys changed (`keyspace/key`), at most 20.
    pub keys: Vec<String>,
    /// How many keys changed in all.
    pub changed: usize,
}

/// Why replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material was refused.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The UDP socket could not be bound.
    #[error("binding the QUIC endpoint to {addr}: {source}")]
    Bind {
        /// The gossip address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Cluster {
    /// Starts replication for node `me` and spawns its tasks into `tasks`.
    pub fn start(
        config: &ClusterConfig,
        me: NodeId,
        engine: Arc<Engine>,
        tls: &NodeTls,
        hub: Arc<crate::events::EventHub>,
        tasks: &mut JoinSet<()>,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, StartError> {
        let node = config.node(&me).cloned();
        let (server, client) = tls::quinn_configs(tls)?;
        let endpoint = match node {
            Some(n) => {
                let mut ep = quinn::Endpoint::server(server, n.gossip).map_err(|source| {
                    StartError::Bind {
                        addr: n.gossip,
                        source,
                    }
                })?;
                ep.set_default_client_config(client);
                Some(ep)
            }
            None => None,
        };
        let mut peers = BTreeMap::new();
        let mut queues = Vec::new();
        for p in config.peers_of(&me) {
            let (peer, rx) = Peer::new(p.id, p.dial, me < p.id);
            let peer = Arc::new(peer);
            queues.push((peer.clone(), rx));
            peers.insert(p.id, peer);
        }
        let cluster = Arc::new(Cluster {
            identity: Identity {
                cluster: config.name.clone(),
                node: me,
                actor: engine.actor(),
            },
            engine,
            peers,
            endpoint,
            cfg: config.replication.clone(),
            repairing: tokio::sync::Mutex::new(()),
            hub,
            payments: std::sync::OnceLock::new(),
            last_convergence: std::sync::Mutex::new(None),
            divergence: std::sync::Mutex::new(DivergenceStatus::default()),
        });
        if cluster.endpoint.is_some() {
            tasks.spawn(cluster.clone().accept_loop(shutdown.clone()));
        }
        for (peer, rx) in queues {
            if peer.we_dial {
                tasks.spawn(cluster.clone().dial_loop(peer.clone(), shutdown.clone()));
            }
            tasks.spawn(cluster.clone().sender(peer.clone(), rx, shutdown.clone()));
            tasks.spawn(cluster.clone().anti_entropy(peer, shutdown.clone()));
        }
        tasks.spawn(cluster.clone().fanout(shutdown.clone()));
        tasks.spawn(cluster.clone().housekeeping(shutdown));
        Ok(cluster)
    }

    /// Liveness of every peer.
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|p| {
                let s = p.lock();
                PeerStatus {
                    id: p.id.to_string(),
                    address: p.dial.to_string(),
                    alive: s.conn.as_ref().is_some_and(|c| c.close_reason().is_none()),
                    last_seen_ms: s.last_seen.map(|t| t.elapsed().as_millis() as u64),
                    last_digest: s.digest.map(|d| crate::api::system::hex(&d)),
                }
            })
            .collect()
    }

    /// Records a divergence repair that changed `keys`: counted, logged,
    /// shown in the status.
    pub fn divergence_repaired(&self, peer: NodeId, keys: &[crdt_core::Key]) {
        ::metrics::counter!(m::DIVERGENCE_REPAIRED).increment(1);
        let named: Vec<String> = keys
            .iter()
            .take(20)
            .map(|k| format!("{}/{}", k.keyspace().as_str(), crate::events::key_text(k)))
            .collect();
        tracing::warn!(%peer, changed = keys.len(), keys = ?named, "divergence repaired");
        let mut d = self.divergence.lock().unwrap_or_else(|p| p.into_inner());
        d.repaired += 1;
        d.last = Some(DivergenceRepair {
            peer: peer.to_string(),
            at_ms: crate::clock::now_ms(),
            keys: named,
            changed: keys.len(),
        });
        drop(d);
        self.hub.publish(
            "divergence",
            crate::events::Audience::Admin,
            serde_json::json!({"peer": peer.to_string(), "changed": keys.len()}),
        );
    }

    /// Divergence repairs so far.
    pub fn divergence_status(&self) -> DivergenceStatus {
        self.divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes a peer going up or down.
    async fn peer_changed(&self, peer: &Peer, alive: bool) {
        self.hub.publish(
            "peer",
            crate::events::Audience::Admin,
            serde_json::json!({"id": peer.id.to_string(), "alive": alive}),
        );
        self.convergence_changed().await;
    }

    /// Publishes whether this node and every live peer report one digest,
    /// when that changes.
    pub async fn convergence_changed(&self) {
        let ours = self.engine.read(|r| r.digest()).await;
        let mut all = true;
        let mut peers = serde_json::Map::new();
        for p in self.peers.values() {
            let s = p.lock();
            let live = s.conn.is_some();
            let same = live && s.digest == Some(ours);
            all &= same;
            peers.insert(
                p.id.to_string(),
                serde_json::json!({"alive": live, "sameDigest": same}),
            );
        }
        let mut last = self
            .last_convergence
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last != Some(all) {
            *last = Some(all);
            self.hub.publish("convergence", crate::events::Audience::Admin, serde_json::json!({"converged": all, "digest": crate::api::system::hex(&ours), "peers": peers}));
        }
    }

    /// Ids of the peers we are connected to.
    pub fn connected_ids(&self) -> Vec<NodeId> {
        self.peers
            .values()
            .filter(|p| p.conn().is_some())
            .map(|p| p.id)
            .collect()
    }

    /// Asks peers for stock rights on `sku` until this node holds `needed`
    /// (bounded by the rights timeout); true once it does.
    pub async fn acquire_rights(self: &Arc<Self>, sku: &Sku, needed: u64) -> bool {
        rights::acquire(
            self,
            sku,
            needed,
            Duration::from_millis(self.cfg.rights_timeout_ms),
        )
        .await
    }

    /// Forwards an order move to the node that sold the order.
    pub async fn forward_move(
        self: &Arc<Self>,
        seller: Actor,
        order: OrderId,
        to: OrderStatus,
    ) -> Result<(), ApiError> {
        rights::forward_move(self, seller, order, to).await
    }

    /// Forwards a payment or refund of `order` to its seller.
    pub async fn forward_call(
        self: &Arc<Self>,
        seller: Actor,
        order: OrderId,
        call: crate::payments::SellerCall,
    ) -> Result<(), ApiError> {
        // The catch-up, then at most two provider calls (create, confirm).
        let work = self
            .payments()
            .map(|p| 2 * p.config().call_timeout + Duration::from_secs(3))
            .unwrap_or(Duration::from_secs(30));
        rights::forward(self, seller, order, Some(work), |vv| Msg::SellerCall {
            order,
            call,
            vv,
        })
        .await
    }

    /// Installs the payment service (once, at start).
    pub fn set_payments(&self, payments: Arc<crate::payments::Payments>) {
        let _ = self.payments.set(payments);
    }

    /// The payment service, or 503 in the moment before start installs it.
    pub fn payments(&self) -> Result<&Arc<crate::payments::Payments>, ApiError> {
        self.payments
            .get()
            .ok_or_else(|| ApiError::unavailable("starting", "the node is starting; try again"))
    }

    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        if let Some(ep) = &self.endpoint {
            ep.close(0u32.into(), b"shutdown");
        }
    }

    /// Bytes sent and received on every peer connection (UDP payload).
    pub fn wire_bytes(&self) -> (u64, u64) {
        self.peers
            .values()
            .filter_map(|p| p.conn())
            .map(|c| {
                let s = c.stats();
                (s.udp_tx.bytes, s.udp_rx.bytes)
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    async fn accept_loop(self: Arc<Self>, shutdown: Shutdown) {
        let Some(ep) = self.endpoint.clone() else {
            return;
        };
        loop {
            let incoming = tokio::select! {
                i = ep.accept() => match i { Some(i) => i, None => break },
                _ = shutdown.wait() => break,
            };
            let this = self.clone();
            let sd = shutdown.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "refused a peer at the TLS handshake");
                        ::metrics::counter!(m::PEER_REFUSED, "reason" => "tls").increment(1);
                        return;
                    }
                };
                let Some((id, actor)) =
                    peer::accept_hello(&conn, &this.identity, |n| this.peers.contains_key(n)).await
                else {
                    return;
                };
                let Some(peer) = this.peers.get(&id).cloned() else {
                    return;
                };
                peer.install(conn.clone(), actor);
                this.serve_connection(peer, conn, sd).await;
            });
        }
    }

    async fn dial_loop(self: Arc<Self>, peer: Arc<Peer>, shutdown: Shutdown) {
        let Some(ep) = self.endpoint.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_set() {
            match peer::dial(&ep, peer.id, peer.dial, &self.identity).await {
                Ok((conn, actor)) => {
                    backoff = Duration::from_millis(100);
                    peer.install(conn.clone(), actor);
                    self.serve_connection(peer.clone(), conn, shutdown.clone())
                        .await;
                }
                Err(e) => tracing::debug!(peer = %peer.id, error = %e, "dial failed"),
            }
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            tokio::select! {
                _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
                _ = shutdown.wait() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Serves a connection's streams until it closes.
    async fn serve_connection(
        self: &Arc<Self>,
        peer: Arc<Peer>,
        conn: quinn::Connection,
        shutdown: Shutdown,
    ) {
        loop {
            tokio::select! {
                uni = conn.accept_uni() => match uni {
                    Ok(recv) => {
                        let (this, p) = (self.clone(), peer.clone());
                        tokio::spawn(async move { this.serve_push(p, recv).await });
                    }
                    Err(_) => break,
                },
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        let (this, p) = (self.clone(), peer.clone());
                        tokio::spawn(async move {
                            if let Err(e) = this.serve_request(&p, send, recv).await {
                                tracing::debug!(peer = %p.id, error = %e, "request failed");
                            }
                        });
                    }
                    Err(_) => break,
                },
                _ = shutdown.wait() => {
                    conn.close(0u32.into(), b"shutdown");
                    break;
                }
            }
        }
        peer.lost(&conn);
        if peer.conn().is_none() {
            self.peer_changed(&peer, false).await;
        }
    }

    async fn serve_push(self: Arc<Self>, peer: Arc<Peer>, mut recv: quinn::RecvStream) {
        loop {
            match wire::read_msg(&mut recv).await {
                Ok(Some(Msg::Push { deltas })) => {
                    peer.seen();
                    let batch: Vec<Arc<[u8]>> = deltas.into_iter().map(Arc::from).collect();
                    if let Err(e) = self.engine.merge_remote(&batch, Some(peer.id)).await {
                        tracing::warn!(peer = %peer.id, error = %e, "could not merge pushed deltas");
                        return;
                    }
                }
                Ok(None) => return,
                Ok(Some(other)) => {
                    // Named in short: a hostile peer cannot fill the log.
                    tracing::warn!(peer = %peer.id, msg = %wire::WireError::unexpected(&other), "unexpected message on a push stream");
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.id, error = %e, "refusing a malformed push");
                    ::metrics::counter!(m::PEER_REFUSED, "reason" => "malformed_frame")
                        .increment(1);
                    return;
                }
            }
        }
    }

    async fn serve_request(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<(), wire::WireError> {
        let first = wire::expect_msg(&mut recv, Duration::from_secs(10)).await?;
        peer.seen();
        match first {
            Msg::Pull {
                vv,
                digest,
                connected,
            } => sync::serve_pull(self, peer, send, vv, digest, connected).await,
            Msg::RepairStart { roots, mode, vv } => {
                repair::serve_repair(self, peer, send, recv, roots, mode, vv).await
            }
            Msg::RepairInvite => repair::serve_invite(self, peer).await,
            Msg::RightsRequest { sku, units, vv } => {
                rights::serve_rights(self, peer, send, sku, units, vv).await
            }
            Msg::MoveRequest { order, to, vv } => {
                rights::serve_move(self, peer, send, order, to, vv).await
            }
            Msg::SellerCall { order, call, vv } => {
                let payments = self.payments().cloned();
                rights::serve_seller(self, peer, send, order, vv, true, async move {
                    let payments = payments?;
                    match call {
                        crate::payments::SellerCall::Pay { method } => {
                            payments.pay(order, &method).await
                        }
                        crate::payments::SellerCall::Refund { amount, reason } => {
                            payments.refund(order, amount, &reason).await.map(|_| ())
                        }
                    }
                })
                .await
            }
            other => Err(wire::WireError::unexpected(&other)),
        }
    }

    /// Pulls from a peer on connect and every `anti_entropy_ms` (jittered).
    async fn anti_entropy(self: Arc<Self>, peer: Arc<Peer>, shutdown: Shutdown) {
        let period = self.cfg.anti_entropy_ms;
        loop {
            let jitter = rand::rng().random_range(period * 8 / 10..=period * 12 / 10);
            tokio::select! {
                _ = peer.pull_now.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(jitter)) => {}
                _ = shutdown.wait() => break,
            }
            if peer.conn().is_none() {
                continue;
            }
            if let Err(e) = sync::pull(&self, &peer).await {
                tracing::debug!(peer = %peer.id, error = %e, "anti-entropy round failed");
            }
        }
    }

    /// Truncates the delta log to what every peer has; exports wire metrics.
    async fn housekeeping(self: Arc<Self>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => break,
            }
            let (tx, rx) = self.wire_bytes();
            ::metrics::gauge!("concord_peer_udp_tx_bytes").set(tx as f64);
            ::metrics::gauge!("concord_peer_udp_rx_bytes").set(rx as f64);
            if self.peers.is_empty() {
                // Nobody will ever pull from a node without peers: keep no log.
                if let Err(e) = self.engine.truncate_all().await {
                    tracing::warn!(error = %e, "truncating the delta log failed");
                }
                continue;
            }
            let mut acked: Option<VersionVector> = None;
            let fresh = self.peers.values().all(|p| {
                let s = p.lock();
                match &s.vv {
                    Some((vv, at)) if at.elapsed() < Duration::from_secs(30) => {
                        acked = Some(match acked.take() {
                            None => vv.clone(),
                            Some(mut a) => {
                                a.glb(vv);
                                a
                            }
                        });
                        true
                    }
                    _ => false,
                }
            });
            if fresh && let Some(a) = acked {
                match self.engine.truncate_log(&a).await {
                    Ok(n) if n > 0 => tracing::debug!(dropped = n, "truncated the delta log"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "truncating the delta log failed"),
                }
            }
        }
        self.close();
    }
}
