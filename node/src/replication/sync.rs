//! Anti-entropy: pulling the deltas a peer has and we lack, and — when its
//! delta log no longer holds them — repairing from its digest tree.
//!
//! Pull: we send our version vector; the peer streams the deltas we lack in
//! causal order, in chunks, each chunk merged (and made durable) before the
//! next is read.
//!
//! Repair: we send our four keyspace roots; the peer descends its tree only
//! where hashes differ, asking us for children level by level, so the
//! exchange is O(differences · log n). It then takes, under its replica lock,
//! the full state of the differing buckets together with its contexts —
//! re-checking that every subtree it judged equal still is — and streams it;
//! we join it atomically (see `Replica::merge_repair`).

use std::sync::Arc;
use std::time::Duration;

use crdt_core::digest::{DEPTH, FANOUT, NodeRef, buckets_under};
use crdt_core::state::KeyEntry;
use crdt_core::{KeyspaceId, NodeId, RepairSnapshot, VersionVector};

use super::Cluster;
use super::peer::Peer;
use super::wire::{self, Msg, TreeNode, WireError};
use crate::metrics as m;

/// Bytes of deltas per pull chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of entries per repair chunk (approximate).
const SNAPSHOT_CHUNK: usize = 2 << 20;
/// Longest wait for any one message of a conversation.
const STEP: Duration = Duration::from_secs(10);

fn count(kind: &'static str, bytes: usize) {
    ::metrics::counter!(m::WIRE_MESSAGES, "kind" => kind).increment(1);
    ::metrics::counter!(m::WIRE_BYTES, "kind" => kind).increment(bytes as u64);
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
        .peek(|r| (r.version_vector().clone(), r.digest()));
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
                if !deltas.is_empty() {
                    let batch: Vec<Arc<[u8]>> = deltas.into_iter().map(Arc::from).collect();
                    cluster
                        .engine
                        .merge_remote(&batch, Some(peer.id))
                        .await
                        .map_err(|e| WireError::Stream(e.to_string()))?;
                }
                if !more {
                    return Ok(());
                }
            }
            Msg::Truncated { vv } => {
                peer.learned(&vv, None, &[]);
                drop(recv);
                return repair(cluster, peer).await;
            }
            other => {
                return Err(WireError::unexpected(&other));
            }
        }
    }
}

/// Answers a pull: the deltas the peer lacks, chunk by chunk.
pub async fn serve_pull(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    mut their: VersionVector,
    digest: [u8; 32],
    connected: Vec<NodeId>,
) -> Result<(), WireError> {
    peer.learned(&their, Some(digest), &connected);
    cluster.convergence_changed();
    loop {
        let (ours, our_digest, chunk) = cluster.engine.peek(|r| {
            (
                r.version_vector().clone(),
                r.digest(),
                r.missing_for(&their, CHUNK_BYTES),
            )
        });
        match chunk {
            Err(t) => {
                tracing::info!(peer = %peer.id, actor = %t.actor, have = t.peer_has, floor = t.floor, "peer needs a repair");
                let n = wire::write_msg(&mut send, &Msg::Truncated { vv: ours }).await?;
                count("truncated", n);
                break;
            }
            Ok(batch) => {
                let more = !batch.is_empty();
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
                let n = wire::write_msg(&mut send, &msg).await?;
                count("deltas", n);
                if !more {
                    break;
                }
            }
        }
    }
    let _ = send.finish();
    Ok(())
}

fn tree_node(t: TreeNode) -> (KeyspaceId, NodeRef) {
    (
        t.0,
        NodeRef {
            level: t.1,
            index: t.2,
        },
    )
}

/// The requesting side of a repair.
pub async fn repair(cluster: &Arc<Cluster>, peer: &Arc<Peer>) -> Result<(), WireError> {
    let _guard = cluster.repairing.lock().await;
    let Some(conn) = peer.conn() else {
        return Ok(());
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let roots = cluster.engine.peek(|r| r.state().roots().to_vec());
    wire::write_msg(&mut send, &Msg::RepairStart { roots }).await?;
    let mut entries: Vec<KeyEntry> = Vec::new();
    loop {
        match wire::expect_msg(&mut recv, STEP * 3).await? {
            Msg::Descend { nodes } => {
                let children = cluster.engine.peek(|r| {
                    nodes
                        .iter()
                        .map(|t| {
                            let (ks, n) = tree_node(*t);
                            r.state().tree(ks).children(n)
                        })
                        .collect()
                });
                let n = wire::write_msg(&mut send, &Msg::Hashes { children }).await?;
                count("repair_hashes", n);
            }
            Msg::SnapshotChunk { entries: mut e } => entries.append(&mut e),
            Msg::SnapshotEnd {
                cc,
                applied,
                buckets,
            } => {
                let snap = RepairSnapshot {
                    cc,
                    applied,
                    buckets,
                    entries: std::mem::take(&mut entries),
                };
                let keys = snap.entries.len();
                let changed = cluster
                    .engine
                    .merge_repair(&snap)
                    .await
                    .map_err(|e| WireError::Stream(e.to_string()))?;
                ::metrics::counter!(m::REPAIRS, "role" => "received").increment(1);
                tracing::info!(peer = %peer.id, buckets = snap.buckets.len(), keys, changed, "repaired from peer");
                let _ = send.finish();
                cluster.engine.process_returns().await;
                return Ok(());
            }
            other => {
                return Err(WireError::unexpected(&other));
            }
        }
    }
}

/// The answering side of a repair: descend where hashes differ, then send
/// the differing buckets' state.
pub async fn serve_repair(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    roots: Vec<u128>,
) -> Result<(), WireError> {
    let engine = &cluster.engine;
    let mut equal: Vec<(TreeNode, u128)> = Vec::new();
    let mut frontier: Vec<TreeNode> = Vec::new();
    let ours = engine.peek(|r| r.state().roots());
    for (i, ks) in KeyspaceId::ALL.iter().enumerate() {
        let theirs = roots.get(i).copied().unwrap_or(0);
        if theirs == ours[i] {
            equal.push(((*ks, 0, 0), theirs));
        } else {
            frontier.push((*ks, 0, 0));
        }
    }
    let mut buckets: Vec<(KeyspaceId, u16)> = Vec::new();
    while !frontier.is_empty() {
        wire::write_msg(
            &mut send,
            &Msg::Descend {
                nodes: frontier.clone(),
            },
        )
        .await?;
        let Msg::Hashes { children } = wire::expect_msg(&mut recv, STEP).await? else {
            return Err(WireError::Unexpected("expected hashes".into()));
        };
        if children.len() != frontier.len() || children.iter().any(|c| c.len() != FANOUT) {
            return Err(WireError::Unexpected(
                "hashes do not match the nodes asked for".into(),
            ));
        }
        let mine: Vec<Vec<u128>> = engine.peek(|r| {
            frontier
                .iter()
                .map(|t| {
                    let (ks, n) = tree_node(*t);
                    r.state().tree(ks).children(n)
                })
                .collect()
        });
        let mut next = Vec::new();
        for ((node, theirs), ours) in frontier.iter().zip(&children).zip(&mine) {
            for i in 0..FANOUT {
                let child = (node.0, node.1 + 1, node.2 * FANOUT as u32 + i as u32);
                if theirs[i] == ours[i] {
                    equal.push((child, theirs[i]));
                } else if usize::from(child.1) == DEPTH {
                    buckets.push((child.0, child.2 as u16));
                } else {
                    next.push(child);
                }
            }
        }
        frontier = next;
    }
    // Under the lock: re-check what we judged equal, then take the snapshot.
    let snap = engine.peek(|r| {
        let mut all = buckets.clone();
        for (t, h) in &equal {
            let (ks, n) = tree_node(*t);
            if r.state().tree(ks).node(n) != *h {
                all.extend(buckets_under(n).map(|b| (ks, b as u16)));
            }
        }
        all.sort_unstable();
        all.dedup();
        r.repair_for(&all)
    });
    let mut chunk = Vec::new();
    let mut size = 0usize;
    let mut sent = 0usize;
    for e in snap.entries {
        size += postcard::experimental::serialized_size(&e).unwrap_or(256);
        chunk.push(e);
        if size >= SNAPSHOT_CHUNK {
            sent += wire::write_msg(
                &mut send,
                &Msg::SnapshotChunk {
                    entries: std::mem::take(&mut chunk),
                },
            )
            .await?;
            size = 0;
        }
    }
    if !chunk.is_empty() {
        sent += wire::write_msg(&mut send, &Msg::SnapshotChunk { entries: chunk }).await?;
    }
    let end = Msg::SnapshotEnd {
        cc: snap.cc,
        applied: snap.applied,
        buckets: snap.buckets,
    };
    sent += wire::write_msg(&mut send, &end).await?;
    let _ = send.finish();
    count("repair_snapshot", sent);
    ::metrics::counter!(m::REPAIRS, "role" => "sent").increment(1);
    tracing::info!(peer = %peer.id, bytes = sent, "sent a repair snapshot");
    // Wait for the peer to finish reading before the stream is dropped.
    let _ = tokio::time::timeout(STEP, recv.read_to_end(1024)).await;
    Ok(())
}
