//! Anti-entropy: pulling the deltas a peer has and we lack, and noticing
//! when two nodes that have applied the same deltas hold different states.
//!
//! Pull: we send our version vector and digest; the peer streams the deltas
//! we lack in causal order, in chunks, each chunk merged (and made durable)
//! before the next is read. When the peer's log no longer reaches back to us
//! it answers `Truncated` and we run a catch-up repair ([`super::repair`]).
//!
//! Divergence: the last chunk of every pull carries the peer's vector and
//! digest, both from one snapshot of its replica; after merging we take ours
//! the same way. Equal vectors with different digests mean one side holds
//! something the other lost — a bug, a disk that returned stale data, a
//! write lost to a fault — which no amount of delta exchange repairs. Twice
//! in a row (one is forgiven: a repair may have been joining meanwhile) and
//! we run a divergence repair from the peer, then invite it to repair from
//! us, so the repair runs both ways. Normal lag never triggers it: a vector
//! one delta ahead is not equal.
//!
//! Everything sent is read through `Engine::read`, which waits until what it
//! read is durable: a pull answer never carries a delta a crash could take
//! back.

use std::sync::Arc;
use std::time::Duration;

use crdt_core::repair::RepairMode;
use crdt_core::{NodeId, VersionVector};

use super::Cluster;
use super::peer::Peer;
use super::repair;
use super::wire::{self, Msg, WireError};
use crate::metrics as m;

/// Bytes of deltas per pull chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Longest wait for any one message of a conversation.
pub const STEP: Duration = Duration::from_secs(10);
/// Pulls in a row with equal vectors and different digests before a
/// divergence repair runs.
const DIVERGENCE_STRIKES: u32 = 2;

/// Counts one message sent, by kind, with its size.
pub fn count(kind: &'static str, bytes: usize) {
    ::metrics::counter!(m::WIRE_MESSAGES, "kind" => kind).increment(1);
    ::metrics::counter!(m::WIRE_BYTES, "kind" => kind).increment(bytes as u64);
}

/// Merges a batch of encoded deltas from `peer`.
pub async fn merge(cluster: &Cluster, peer: &Peer, deltas: Vec<Vec<u8>>) -> Result<(), WireError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let batch: Vec<Arc<[u8]>> = deltas.into_iter().map(Arc::from).collect();
    cluster
        .engine
        .merge_remote(&batch, Some(peer.id))
        .await
        .map(|_| ())
        .map_err(|e| WireError::Stream(e.to_string()))
}

/// Pulls from `peer` everything we lack; repairs when needed.
pub async fn pull(cluster: &Arc<Cluster>, peer: &Arc<Peer>) -> Result<(), WireError> {
    let Some(conn) = peer.conn() else {
        return Ok(());
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let (vv, digest) = cluster
        .engine
        .read(|r| (r.version_vector().clone(), r.digest()))
        .await;
    let n = wire::write_msg(
        &mut send,
        &Msg::Pull {
            vv,
            digest,
            connected: cluster.connected_ids(),
        },
    )
    .await?;
    count("pull", n);
    let _ = send.finish();
    loop {
        match wire::expect_msg(&mut recv, STEP).await? {
            Msg::Deltas {
                vv,
                digest,
                connected,
                deltas,
                more,
            } => {
                peer.learned(&vv, Some(digest), &connected);
                merge(cluster, peer, deltas).await?;
                if !more {
                    drop(recv);
                    return check_divergence(cluster, peer, &vv, digest).await;
                }
            }
            Msg::Truncated { vv } => {
                peer.learned(&vv, None, &[]);
                drop(recv);
                return repair::repair(cluster, peer, RepairMode::CatchUp)
                    .await
                    .map(|_| ());
            }
            other => {
                return Err(WireError::unexpected(&other));
            }
        }
    }
}

/// After a pull: equal vectors and different digests twice in a row start a
/// divergence repair, both ways.
async fn check_divergence(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    their_vv: &VersionVector,
    their_digest: [u8; 32],
) -> Result<(), WireError> {
    let (ours, our_digest) = cluster
        .engine
        .read(|r| (r.version_vector().clone(), r.digest()))
        .await;
    let diverged = ours == *their_vv && our_digest != their_digest;
    let strikes = {
        let mut s = peer.lock();
        s.divergence_strikes = if diverged {
            s.divergence_strikes + 1
        } else {
            0
        };
        s.divergence_strikes
    };
    if strikes < DIVERGENCE_STRIKES {
        return Ok(());
    }
    peer.lock().divergence_strikes = 0;
    tracing::warn!(peer = %peer.id, "equal version vectors, different digests: repairing the divergence");
    repair::repair(cluster, peer, RepairMode::Divergence).await?;
    repair::invite(peer).await
}

/// Streams to `send` the deltas a peer at vector `their` lacks, in chunks
/// of [`CHUNK_BYTES`], each taken under one durable read with our vector and
/// digest; the last chunk says `more: false`. It ends with the first chunk
/// the size bound did not cut — one that held everything the peer lacked at
/// that moment — so a stream of new writes cannot keep it going for ever
/// (they travel by push). Returns `false` when the log no longer holds what
/// the peer needs (after sending `Truncated`).
pub async fn stream_missing(
    cluster: &Arc<Cluster>,
    send: &mut quinn::SendStream,
    mut their: VersionVector,
    peer: NodeId,
) -> Result<bool, WireError> {
    loop {
        let (ours, our_digest, chunk) = cluster
            .engine
            .read(|r| {
                (
                    r.version_vector().clone(),
                    r.digest(),
                    r.missing_chunk(&their, CHUNK_BYTES),
                )
            })
            .await;
        match chunk {
            Err(t) => {
                tracing::info!(%peer, actor = %t.actor, have = t.peer_has, floor = t.floor, "peer needs a repair");
                let n = wire::write_msg(send, &Msg::Truncated { vv: ours }).await?;
                count("truncated", n);
                return Ok(false);
            }
            Ok((batch, more)) => {
                for l in &batch {
                    if l.dot.seq > their.get(&l.dot.actor) {
                        their.dots.insert(l.dot.actor, l.dot.seq);
                    }
                }
                let msg = Msg::Deltas {
                    vv: ours,
                    digest: our_digest,
                    connected: cluster.connected_ids(),
                    deltas: batch.iter().map(|l| l.bytes.to_vec()).collect(),
                    more,
                };
                let n = wire::write_msg(send, &msg).await?;
                count("deltas", n);
                if !more {
                    return Ok(true);
                }
            }
        }
    }
}

/// Answers a pull: the deltas the peer lacks, chunk by chunk.
pub async fn serve_pull(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    their: VersionVector,
    digest: [u8; 32],
    connected: Vec<NodeId>,
) -> Result<(), WireError> {
    peer.learned(&their, Some(digest), &connected);
    cluster.convergence_changed().await;
    stream_missing(cluster, &mut send, their, peer.id).await?;
    let _ = send.finish();
    Ok(())
}
