//! Digest-tree repair: the conversation that finds, in O(differences · log
//! n), the buckets where two nodes differ and sends them whole.
//!
//! The receiver freezes its tree hashes and starts its journal
//! (`crdt_core::repair`), then sends its four roots with the mode and its
//! vector. The sender descends only where hashes differ, asking for children
//! level by level (answered from the frozen trees), then — under one durable
//! read of its replica — re-checks every subtree it judged equal, takes the
//! full state of the differing buckets with its contexts, and streams it;
//! for a divergence repair it adds its deltas beyond the receiver's vector.
//! The receiver joins it atomically. Any failure abandons the repair (the
//! journal is dropped); the next anti-entropy round tries again.
//!
//! A catch-up repair runs when a peer's log no longer reaches back to us; a
//! divergence repair when a pull ends with equal vectors and different
//! digests (see [`super::sync`]). The latter is counted
//! (`concord_divergence_repaired_total`), logged with the keys it changed,
//! and shown in `/api/v1/cluster/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crdt_core::digest::{DEPTH, FANOUT, NodeRef, buckets_under};
use crdt_core::repair::RepairMode;
use crdt_core::state::KeyEntry;
use crdt_core::{Key, KeyspaceId, RepairSnapshot, VersionVector};

use super::Cluster;
use super::peer::Peer;
use super::sync::{STEP, count};
use super::wire::{self, Msg, TreeNode, WireError};
use crate::engine::Engine;
use crate::metrics as m;

/// Most tree nodes one `Descend` may name (every node of the deepest inner
/// level of all four keyspaces).
pub const MAX_DESCEND: usize = 4 * FANOUT * FANOUT * FANOUT;
/// Bytes of entries per repair chunk (approximate).
const SNAPSHOT_CHUNK: usize = 2 << 20;
/// Most bytes of snapshot a node accepts in one repair: the full state of a
/// store this size is a bigger problem than a repair can solve, and a peer
/// cannot make us hold more.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 30;
/// Bytes of newer deltas a divergence repair carries at most.
const NEWER_BYTES: usize = 4 << 20;
/// Shortest time between two repairs a peer's invitations start.
const INVITE_INTERVAL: Duration = Duration::from_secs(5);

fn tree_node(t: TreeNode) -> Option<(KeyspaceId, NodeRef)> {
    let level = usize::from(t.1);
    (level < DEPTH && (t.2 as usize) < FANOUT.pow(t.1.into())).then_some((
        t.0,
        NodeRef {
            level: t.1,
            index: t.2,
        },
    ))
}

/// Abandons the engine's repair unless disarmed (a failed conversation).
struct Abandon<'a>(Option<&'a Engine>);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.0 {
            e.abort_repair();
        }
    }
}

/// The receiving side of a repair from `peer`; returns the keys it changed.
pub async fn repair(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mode: RepairMode,
) -> Result<Vec<Key>, WireError> {
    let _guard = cluster.repairing.lock().await;
    let Some(conn) = peer.conn() else {
        return Ok(Vec::new());
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let base = cluster.engine.begin_repair();
    let mut abandon = Abandon(Some(&cluster.engine));
    let start = Msg::RepairStart {
        roots: base.roots().to_vec(),
        mode,
        vv: base.version_vector().clone(),
    };
    wire::write_msg(&mut send, &start).await?;
    let mut entries: Vec<KeyEntry> = Vec::new();
    let mut received = 0usize;
    loop {
        let (msg, size) = match tokio::time::timeout(STEP * 3, wire::read_frame(&mut recv)).await {
            Err(_) => return Err(WireError::Timeout),
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Err(WireError::Stream("the stream ended".into())),
            Ok(Err(e)) => return Err(e),
        };
        received += size;
        if received > MAX_SNAPSHOT_BYTES {
            return Err(WireError::TooLarge(received));
        }
        match msg {
            Msg::Descend { nodes } => {
                if nodes.len() > MAX_DESCEND {
                    return Err(WireError::Unexpected(format!(
                        "a descend of {} nodes (at most {MAX_DESCEND})",
                        nodes.len()
                    )));
                }
                let mut children = Vec::with_capacity(nodes.len());
                for t in nodes {
                    let (ks, n) = tree_node(t)
                        .ok_or_else(|| WireError::Unexpected(format!("no such tree node {t:?}")))?;
                    children.push(base.children(ks, n));
                }
                let n = wire::write_msg(&mut send, &Msg::Hashes { children }).await?;
                count("repair_hashes", n);
            }
            Msg::SnapshotChunk { entries: mut e } => entries.append(&mut e),
            Msg::SnapshotEnd {
                cc,
                applied,
                buckets,
                newer,
            } => {
                let snap = RepairSnapshot {
                    cc,
                    applied,
                    buckets,
                    entries: std::mem::take(&mut entries),
                };
                let keys = snap.entries.len();
                let joined = match mode {
                    RepairMode::CatchUp => cluster.engine.merge_repair(&snap, &base).await,
                    RepairMode::Divergence => {
                        let newer = newer.ok_or_else(|| {
                            WireError::Unexpected(
                                "the peer's log no longer holds its newer deltas".into(),
                            )
                        })?;
                        cluster.engine.merge_divergent(&snap, &newer, &base).await
                    }
                };
                abandon.0 = None;
                let changed = joined.map_err(|e| WireError::Stream(e.to_string()))?;
                ::metrics::counter!(m::REPAIRS, "role" => "received").increment(1);
                tracing::info!(peer = %peer.id, ?mode, buckets = snap.buckets.len(), keys, changed = changed.len(), "repaired from peer");
                if mode == RepairMode::Divergence && !changed.is_empty() {
                    cluster.divergence_repaired(peer.id, &changed);
                }
                let _ = send.finish();
                return Ok(changed);
            }
            other => {
                return Err(WireError::unexpected(&other));
            }
        }
    }
}

/// The sending side of a repair: descend where hashes differ, then send
/// the differing buckets' state.
pub async fn serve_repair(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    roots: Vec<u128>,
    mode: RepairMode,
    their_vv: VersionVector,
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
        // Comparing hashes is a decision inside this node: nothing read
        // here leaves it.
        let mine: Vec<Vec<u128>> = engine.peek(|r| {
            frontier
                .iter()
                .map(|t| {
                    r.state().tree(t.0).children(NodeRef {
                        level: t.1,
                        index: t.2,
                    })
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
    // One durable read: re-check what we judged equal, take the snapshot
    // (and, for a divergence repair, our deltas beyond the receiver's base).
    let (snap, newer) = engine
        .read(|r| {
            let mut all = buckets.clone();
            for (t, h) in &equal {
                let n = NodeRef {
                    level: t.1,
                    index: t.2,
                };
                if r.state().tree(t.0).node(n) != *h {
                    all.extend(buckets_under(n).map(|b| (t.0, b as u16)));
                }
            }
            all.sort_unstable();
            all.dedup();
            let newer = match mode {
                RepairMode::CatchUp => None,
                RepairMode::Divergence => r.newer_than(&their_vv, NEWER_BYTES),
            };
            (r.repair_for(&all), newer)
        })
        .await;
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
        newer,
    };
    sent += wire::write_msg(&mut send, &end).await?;
    let _ = send.finish();
    count("repair_snapshot", sent);
    ::metrics::counter!(m::REPAIRS, "role" => "sent").increment(1);
    tracing::info!(peer = %peer.id, ?mode, bytes = sent, "sent a repair snapshot");
    // Wait for the peer to finish reading before the stream is dropped.
    let _ = tokio::time::timeout(STEP, recv.read_to_end(1024)).await;
    Ok(())
}

/// Asks `peer` to run a divergence repair from us.
pub async fn invite(peer: &Peer) -> Result<(), WireError> {
    let Some(conn) = peer.conn() else {
        return Ok(());
    };
    let (mut send, _recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    wire::write_msg(&mut send, &Msg::RepairInvite).await?;
    let _ = send.finish();
    Ok(())
}

/// Answers an invitation: a divergence repair from the inviter, at most
/// one per `INVITE_INTERVAL` per peer.
pub async fn serve_invite(cluster: &Arc<Cluster>, peer: &Arc<Peer>) -> Result<(), WireError> {
    {
        let mut s = peer.lock();
        if s.last_invite.is_some_and(|t| t.elapsed() < INVITE_INTERVAL) {
            return Ok(());
        }
        s.last_invite = Some(Instant::now());
    }
    repair(cluster, peer, RepairMode::Divergence)
        .await
        .map(|_| ())
}
