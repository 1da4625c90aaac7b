//! Peers: their connection, what they told us, and the handshake.
//!
//! One QUIC connection per pair of nodes: the node with the smaller id dials
//! (retrying with backoff and jitter), the other accepts. A connection counts
//! only after the hello — cluster name, node id (which must equal the name
//! in the peer's certificate), actor and protocol version — so a node of
//! another cluster, or one claiming someone else's id, is refused, logged
//! and counted before it can send a single delta.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crdt_core::{Actor, NodeId, VersionVector};
use tokio::sync::{Notify, mpsc};

use super::wire::{self, Msg, PROTOCOL_VERSION, WireError};
use crate::metrics as m;

/// How long a hello may take.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// Capacity of a peer's push queue (deltas). When full, new deltas for that
/// peer are dropped and left to anti-entropy: a slow peer costs its own
/// queue, never memory without bound or the other peers' progress.
pub const PUSH_QUEUE: usize = 16_384;

/// What we know of one peer.
#[derive(Default)]
pub struct PeerState {
    /// The live connection, past the hello.
    pub conn: Option<quinn::Connection>,
    /// The peer's actor, from its hello.
    pub actor: Option<Actor>,
    /// When we last heard from it.
    pub last_seen: Option<Instant>,
    /// Its version vector, from its last pull or answer.
    pub vv: Option<(VersionVector, Instant)>,
    /// The peers it says it is connected to.
    pub connected_to: BTreeSet<NodeId>,
    /// Its state digest, as last reported.
    pub digest: Option<[u8; 32]>,
    /// Pulls in a row that ended with equal vectors and different digests.
    pub divergence_strikes: u32,
    /// When it last invited us to repair from it (invitations are rate
    /// limited).
    pub last_invite: Option<Instant>,
}

/// One peer of this node.
pub struct Peer {
    /// Its id.
    pub id: NodeId,
    /// The address we dial (its `advertise`, or `gossip`).
    pub dial: SocketAddr,
    /// Whether we dial it (our id is smaller) or wait for it.
    pub we_dial: bool,
    /// Mutable knowledge.
    pub state: Mutex<PeerState>,
    /// Sending side of its push queue.
    pub queue: mpsc::Sender<std::sync::Arc<[u8]>>,
    /// Wakes its anti-entropy task (on connect, and by the ticker).
    pub pull_now: Notify,
}

impl Peer {
    /// A peer and the receiving side of its push queue.
    pub fn new(
        id: NodeId,
        dial: SocketAddr,
        we_dial: bool,
    ) -> (Self, mpsc::Receiver<std::sync::Arc<[u8]>>) {
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        (
            Self {
                id,
                dial,
                we_dial,
                state: Mutex::new(PeerState::default()),
                queue: tx,
                pull_now: Notify::new(),
            },
            rx,
        )
    }

    /// Locks the peer's state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection, if any.
    pub fn conn(&self) -> Option<quinn::Connection> {
        self.lock().conn.clone()
    }

    /// Notes that the peer was heard from.
    pub fn seen(&self) {
        self.lock().last_seen = Some(Instant::now());
    }

    /// Installs a connection that passed the hello (closing any older one).
    pub fn install(&self, conn: quinn::Connection, actor: Actor) {
        let old = {
            let mut s = self.lock();
            s.actor = Some(actor);
            s.last_seen = Some(Instant::now());
            s.conn.replace(conn)
        };
        if let Some(o) = old {
            o.close(0u32.into(), b"replaced");
        }
        tracing::info!(peer = %self.id, %actor, "peer connected");
        self.pull_now.notify_one();
    }

    /// Forgets a connection that closed, if it is still the current one.
    pub fn lost(&self, conn: &quinn::Connection) {
        let mut s = self.lock();
        if s.conn
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            s.conn = None;
            tracing::info!(peer = %self.id, reason = ?conn.close_reason(), "peer disconnected");
        }
    }

    /// Records the peer's vector, digest and connectivity.
    pub fn learned(&self, vv: &VersionVector, digest: Option<[u8; 32]>, connected: &[NodeId]) {
        let mut s = self.lock();
        s.vv = Some((vv.clone(), Instant::now()));
        s.connected_to = connected.iter().copied().collect();
        s.last_seen = Some(Instant::now());
        if digest.is_some() {
            s.digest = digest;
        }
    }
}

/// Who we are, for the hello.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Cluster name.
    pub cluster: String,
    /// Our node id.
    pub node: NodeId,
    /// Our actor.
    pub actor: Actor,
}

fn refuse(conn: &quinn::Connection, reason: &'static str, detail: String) {
    tracing::warn!(remote = %conn.remote_address(), reason, %detail, "refusing a peer");
    ::metrics::counter!(m::PEER_REFUSED, "reason" => reason).increment(1);
    conn.close(1u32.into(), reason.as_bytes());
}

/// The acceptor's side of the hello. Returns the peer's id and actor, or
/// refuses (logging and counting why).
pub async fn accept_hello(
    conn: &quinn::Connection,
    me: &Identity,
    is_peer: impl Fn(&NodeId) -> bool,
) -> Option<(NodeId, Actor)> {
    let Some(cert_id) = super::tls::peer_node_id(conn) else {
        refuse(conn, "certificate", "the certificate names no node".into());
        return None;
    };
    let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        _ => {
            refuse(conn, "no_hello", format!("{cert_id} sent no hello"));
            return None;
        }
    };
    let hello = match wire::expect_msg(&mut recv, HELLO_TIMEOUT).await {
        Ok(m) => m,
        Err(e) => {
            refuse(conn, "bad_hello", format!("{cert_id}: {e}"));
            return None;
        }
    };
    let Msg::Hello {
        cluster,
        node,
        actor,
        version,
    } = hello
    else {
        refuse(
            conn,
            "bad_hello",
            format!("{cert_id} opened with another message"),
        );
        return None;
    };
    let problem = if version != PROTOCOL_VERSION {
        Some((
            "version",
            format!("protocol {version}, we speak {PROTOCOL_VERSION}"),
        ))
    } else if cluster != me.cluster {
        Some((
            "cluster",
            format!("cluster {cluster:?}, we are {:?}", me.cluster),
        ))
    } else if node != cert_id || actor.node != node {
        Some((
            "node_id",
            format!("certificate names {cert_id}, hello claims {node} ({actor})"),
        ))
    } else if node == me.node || !is_peer(&node) {
        Some((
            "unknown_node",
            format!("{node} is not a peer in the configuration"),
        ))
    } else {
        None
    };
    if let Some((reason, detail)) = problem {
        let _ = wire::write_msg(
            &mut send,
            &Msg::Refused {
                reason: detail.clone(),
            },
        )
        .await;
        let _ = send.finish();
        tokio::time::sleep(Duration::from_millis(20)).await;
        refuse(conn, reason, detail);
        return None;
    }
    let ok = Msg::HelloOk {
        cluster: me.cluster.clone(),
        node: me.node,
        actor: me.actor,
    };
    if wire::write_msg(&mut send, &ok).await.is_err() || send.finish().is_err() {
        return None;
    }
    Some((node, actor))
}

/// The dialler's side: connect to `peer` at `addr`, send our hello, check the
/// answer.
pub async fn dial(
    endpoint: &quinn::Endpoint,
    peer: NodeId,
    addr: SocketAddr,
    me: &Identity,
) -> Result<(quinn::Connection, Actor), String> {
    let connecting = endpoint
        .connect(addr, peer.as_str())
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(HELLO_TIMEOUT, connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| {
            let e = e.to_string();
            // The peer's certificate failed our checks (another CA,
            // revoked, expired, another name): a security event.
            if e.contains("certificate") {
                tracing::warn!(%peer, %addr, error = %e, "refused a peer's certificate");
                ::metrics::counter!(m::PEER_REFUSED, "reason" => "tls").increment(1);
            }
            e
        })?;
    let step = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| WireError::Stream(e.to_string()))?;
        let hello = Msg::Hello {
            cluster: me.cluster.clone(),
            node: me.node,
            actor: me.actor,
            version: PROTOCOL_VERSION,
        };
        wire::write_msg(&mut send, &hello).await?;
        let _ = send.finish();
        wire::expect_msg(&mut recv, HELLO_TIMEOUT).await
    };
    match step.await {
        Ok(Msg::HelloOk {
            cluster,
            node,
            actor,
        }) if cluster == me.cluster && node == peer && actor.node == peer => Ok((conn, actor)),
        Ok(Msg::HelloOk { cluster, node, .. }) => {
            conn.close(1u32.into(), b"mismatch");
            ::metrics::counter!(m::PEER_REFUSED, "reason" => "hello_ok_mismatch").increment(1);
            Err(format!("{addr} answered as {node} of cluster {cluster:?}"))
        }
        Ok(Msg::Refused { reason }) => Err(format!("refused: {reason}")),
        Ok(other) => {
            conn.close(1u32.into(), b"protocol");
            Err(format!("unexpected answer to hello: {other:?}"))
        }
        Err(e) => Err(format!("hello failed: {e} ({:?})", conn.close_reason())),
    }
}
