//! Stock rights and order moves across nodes.
//!
//! A node short of rights for a checkout asks its peers — richest first, by
//! its own view of the counter — for a transfer. The giver carries the
//! transfer out as an ordinary (durable, replicated) operation and answers
//! with its delta and whatever else the asker lacked, so the asker can sell
//! at once. Givers hand over at least half of what they hold, so rights
//! drift toward the nodes that sell. The whole search is bounded by
//! `rights_timeout_ms`: a partition makes a checkout answer 409, not wait.
//!
//! Shipping an order is the seller's alone (the cancel/ship rule); another
//! node forwards the request over the cluster link, or answers 503 while the
//! seller is unreachable.

use std::sync::Arc;
use std::time::Duration;

use crdt_core::status::OrderStatus;
use crdt_core::{Actor, Op, OpError, OrderId, Sku, VersionVector};

use super::Cluster;
use super::peer::Peer;
use super::sync::{self, merge};
use super::wire::{self, Msg, WireError};
use crate::api::error::ApiError;
use crate::engine::WriteError;
use crate::metrics as m;

/// Deltas sent along with a move reply, at most (a forwarded move needs
/// little; a peer further behind catches up by anti-entropy).
const ANSWER_BYTES: usize = 4 << 20;
/// How long a seller waits to catch up with a forwarded move's vector.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long a forwarding node waits for the seller to answer at all (a
/// move's verdict, or a payment's "working on it"): past it, the seller
/// counts as unreachable.
const FORWARD_WAIT: Duration = Duration::from_secs(3);

/// What one rights request brought.
enum Asked {
    /// Units granted, now usable here.
    Usable(u64),
    /// Units granted, but the grant's history has not all arrived (our
    /// vector was below the peer's log): to be caught up by a pull.
    Pending(u64),
    /// The peer holds no rights on the SKU.
    Refused,
}

/// This node's rights on `sku`, as it sees them now.
fn own_rights(cluster: &Cluster, sku: &Sku) -> u64 {
    let me = cluster.engine.actor();
    cluster
        .engine
        .peek(|r| r.state().stock.get(sku).map(|c| c.rights(&me)).unwrap_or(0))
}

/// Asks connected peers for rights on `sku` until this node holds `needed`
/// or `timeout` passes; true once it holds them (merged and usable). Peers
/// are asked richest first by this node's view of the counter, round after
/// round while any of them grants something (concurrent checkouts here may
/// spend a grant before ours retries) or, after a round without grants,
/// while the refreshed view still shows a reachable peer holding rights
/// (they moved between our asks). It gives up when no reachable peer holds
/// any — the units are sold out, or beyond the partition — and stops asking
/// others while a grant it received cannot be used yet: it pulls from that
/// peer first, rather than draining every peer's rights toward a node that
/// cannot sell them.
pub async fn acquire(cluster: &Arc<Cluster>, sku: &Sku, needed: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let rights = cluster.engine.peek(|r| {
            r.state()
                .stock
                .get(sku)
                .map(|c| c.rights_by_actor())
                .unwrap_or_default()
        });
        let mut candidates: Vec<(u64, Arc<Peer>)> = cluster
            .peers
            .values()
            .filter_map(|p| {
                let actor = p.lock().actor?;
                p.conn()?;
                Some((rights.get(&actor).copied().unwrap_or(0), p.clone()))
            })
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut granted_any = false;
        for (_, peer) in candidates {
            let held = own_rights(cluster, sku);
            if held >= needed {
                return true;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let outcome = tokio::time::timeout(left, ask(cluster, &peer, sku, needed - held)).await;
            let label = match &outcome {
                Ok(Ok(Asked::Usable(_))) => "granted",
                Ok(Ok(Asked::Pending(_))) => "granted_pending",
                Ok(Ok(Asked::Refused)) => "refused",
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            ::metrics::counter!(m::RIGHTS_REQUESTS, "outcome" => label).increment(1);
            match outcome {
                Ok(Ok(Asked::Usable(g))) => {
                    tracing::debug!(peer = %peer.id, %sku, granted = g, "received stock rights");
                    granted_any = true;
                }
                Ok(Ok(Asked::Pending(g))) => {
                    tracing::info!(peer = %peer.id, %sku, granted = g, "a grant arrived before its history: pulling first");
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::time::timeout(left, sync::pull(cluster, &peer)).await;
                    return own_rights(cluster, sku) >= needed;
                }
                Ok(Ok(Asked::Refused)) => {}
                Ok(Err(e)) => tracing::debug!(peer = %peer.id, error = %e, "rights request failed"),
                Err(_) => return own_rights(cluster, sku) >= needed,
            }
        }
        if own_rights(cluster, sku) >= needed {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // Rights move between the asks of one round (a peer asked early may
        // have received some since): another round while any reachable
        // peer holds rights in our view, which every reply just refreshed.
        if !granted_any && !reachable_peer_holds(cluster, sku) {
            return false;
        }
    }
}

/// Whether some connected peer holds rights on `sku`, in this node's view.
fn reachable_peer_holds(cluster: &Cluster, sku: &Sku) -> bool {
    let rights = cluster.engine.peek(|r| {
        r.state()
            .stock
            .get(sku)
            .map(|c| c.rights_by_actor())
            .unwrap_or_default()
    });
    cluster.peers.values().any(|p| {
        let actor = p.lock().actor;
        p.conn().is_some() && actor.is_some_and(|a| rights.get(&a).copied().unwrap_or(0) > 0)
    })
}

async fn ask(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    sku: &Sku,
    units: u64,
) -> Result<Asked, WireError> {
    let conn = peer
        .conn()
        .ok_or_else(|| WireError::Stream("not connected".into()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let vv = cluster.engine.read(|r| r.version_vector().clone()).await;
    wire::write_msg(
        &mut send,
        &Msg::RightsRequest {
            sku: sku.clone(),
            units,
            vv,
        },
    )
    .await?;
    let _ = send.finish();
    let mut complete = true;
    loop {
        match wire::expect_msg(&mut recv, Duration::from_secs(5)).await? {
            Msg::Deltas {
                vv,
                digest,
                connected,
                deltas,
                ..
            } => {
                peer.learned(&vv, Some(digest), &connected);
                merge(cluster, peer, deltas).await?;
            }
            Msg::Truncated { .. } => complete = false,
            Msg::RightsReply { granted, deltas } => {
                merge(cluster, peer, deltas).await?;
                return Ok(match granted {
                    0 => Asked::Refused,
                    g if complete => Asked::Usable(g),
                    g => Asked::Pending(g),
                });
            }
            other => return Err(WireError::unexpected(&other)),
        }
    }
}

/// What a peer at `vv` lacks, up to [`ANSWER_BYTES`] (durable only).
async fn missing(cluster: &Cluster, vv: &VersionVector) -> Vec<Vec<u8>> {
    cluster
        .engine
        .read(|r| {
            r.missing_for(vv, ANSWER_BYTES)
                .map(|v| v.into_iter().map(|l| l.bytes.to_vec()).collect())
                .unwrap_or_default()
        })
        .await
}

/// Answers a rights request: transfers at least what was asked (all we
/// hold if less) and at least half of what we hold — decided under the
/// write lock, so concurrent sales here cannot make the transfer fail —
/// then streams every delta the asker lacks (the transfer's whole history,
/// in chunks, or `Truncated`), and the grant last.
pub async fn serve_rights(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    sku: Sku,
    units: u64,
    vv: VersionVector,
) -> Result<(), WireError> {
    let to = peer.lock().actor;
    let mut granted = 0;
    if let Some(to) = to {
        let me = cluster.engine.actor();
        let planned = cluster
            .engine
            .write_with(|r| {
                let held = r
                    .state()
                    .stock
                    .get(&sku)
                    .map(|c| c.rights(&me))
                    .unwrap_or(0);
                let give = held.min(units.max(held.div_ceil(2)));
                if give == 0 {
                    return Err(OpError::Unchanged);
                }
                let op = Op::TransferRights {
                    sku: sku.clone(),
                    to,
                    quantity: give,
                };
                Ok((op, give))
            })
            .await;
        match planned {
            Ok((_, give)) => {
                granted = give;
                tracing::info!(peer = %peer.id, %sku, units = give, "gave stock rights");
            }
            Err(WriteError::Op(OpError::Unchanged)) => {}
            Err(e) => tracing::debug!(peer = %peer.id, error = %e, "could not give rights"),
        }
    }
    sync::stream_missing(cluster, &mut send, vv, peer.id).await?;
    wire::write_msg(
        &mut send,
        &Msg::RightsReply {
            granted,
            deltas: Vec::new(),
        },
    )
    .await?;
    let _ = send.finish();
    Ok(())
}

/// Forwards an order move to the seller.
pub async fn forward_move(
    cluster: &Arc<Cluster>,
    seller: Actor,
    order: OrderId,
    to: OrderStatus,
) -> Result<(), ApiError> {
    forward(cluster, seller, order, None, |vv| Msg::MoveRequest {
        order,
        to,
        vv,
    })
    .await
}

/// Forwards a seller-only request about `order` (a move, a payment, a
/// refund) to `seller`, merges what it answers with, and turns its verdict
/// into this node's answer: 503 while the seller is unreachable, 409 when
/// its store is gone. With `work`, the seller first acknowledges within
/// `FORWARD_WAIT` (so a partition is seen at once) and its verdict may
/// then take up to `work` (a provider call).
pub async fn forward(
    cluster: &Arc<Cluster>,
    seller: Actor,
    order: OrderId,
    work: Option<Duration>,
    request: impl FnOnce(VersionVector) -> Msg,
) -> Result<(), ApiError> {
    let unreachable = || {
        ApiError::unavailable(
            "seller_unreachable",
            format!(
                "order {order} was sold by {seller}, which is unreachable now; try again later"
            ),
        )
    };
    let gone = || {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "seller_gone",
            format!(
                "order {order} was sold by {seller}, whose store has since been replaced; it can no longer be shipped"
            ),
        )
    };
    // This node's own previous incarnation sold it: that store is gone.
    if seller.node == cluster.engine.id() {
        return Err(gone());
    }
    let peer = cluster
        .peers
        .get(&seller.node)
        .ok_or_else(unreachable)?
        .clone();
    let (conn, actor) = {
        let s = peer.lock();
        (s.conn.clone(), s.actor)
    };
    // A later incarnation of the seller's node has been seen, connected or
    // not: the seller will never come back.
    if actor.is_some_and(|a| a.inc > seller.inc) {
        return Err(gone());
    }
    let conn = conn.ok_or_else(unreachable)?;
    if actor != Some(seller) {
        return Err(unreachable());
    }
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| WireError::Stream(e.to_string()))?;
        let vv = cluster.engine.read(|r| r.version_vector().clone()).await;
        wire::write_msg(&mut send, &request(vv)).await?;
        let _ = send.finish();
        let first = wire::expect_msg(&mut recv, FORWARD_WAIT).await?;
        match (work, first) {
            (Some(long), Msg::Working) => wire::expect_msg(&mut recv, long).await,
            (_, other) => Ok(other),
        }
    };
    match exchange.await {
        Ok(Msg::MoveReply {
            status,
            code,
            message,
            deltas,
        }) => {
            merge(cluster, &peer, deltas)
                .await
                .map_err(|_| unreachable())?;
            if status == 200 {
                Ok(())
            } else {
                let status = axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::CONFLICT);
                Err(ApiError::new(status, static_code(&code), message))
            }
        }
        _ => Err(unreachable()),
    }
}

/// Error codes a seller may answer a forwarded request with, kept as the
/// seller said them (anything else becomes `forwarded_error`).
const FORWARDED_CODES: &[&str] = &[
    "illegal_transition",
    "order_not_found",
    "seller_unreachable",
    "seller_behind",
    "already_paid",
    "payment_in_progress",
    "not_payable",
    "too_many_attempts",
    "nothing_captured",
    "refund_exceeds_capture",
    "too_many_refunds",
    "card_declined",
    "insufficient_funds",
    "payment_declined",
    "provider_unavailable",
    "provider_refused",
    "invalid_field",
];

fn static_code(code: &str) -> &'static str {
    FORWARDED_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("forwarded_error")
}

/// Whether this node has applied everything in `vv`.
fn covers(cluster: &Cluster, vv: &VersionVector) -> bool {
    cluster
        .engine
        .peek(|r| vv.dots.iter().all(|(a, s)| r.version_vector().get(a) >= *s))
}

/// Carries out a forwarded move on the seller — once it has applied
/// everything the asker had (the asker may have seen a pay this node has
/// not): it pulls from the asker first, for up to `CATCH_UP`, and answers
/// 503 `seller_behind` if it still lags.
pub async fn serve_move(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    send: quinn::SendStream,
    order: OrderId,
    to: OrderStatus,
    vv: VersionVector,
) -> Result<(), WireError> {
    serve_seller(cluster, peer, send, order, vv, false, async {
        if to == OrderStatus::Shipped {
            cluster.payments()?.before_ship(order).await?;
        }
        match cluster.engine.write(Op::MoveOrder { order, to }).await {
            Ok(_) | Err(WriteError::Op(OpError::Unchanged)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// Carries out a forwarded seller-only request (`work`) once this node has
/// applied everything the asker had, and answers with the verdict and the
/// deltas the asker lacks — after a [`Msg::Working`] first when `ack`.
#[allow(clippy::too_many_arguments)]
pub async fn serve_seller(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    mut send: quinn::SendStream,
    order: OrderId,
    vv: VersionVector,
    ack: bool,
    work: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), WireError> {
    if ack {
        wire::write_msg(&mut send, &Msg::Working).await?;
    }
    if !covers(cluster, &vv) {
        let _ = tokio::time::timeout(CATCH_UP, sync::pull(cluster, peer)).await;
    }
    let (status, code, message) = if !covers(cluster, &vv) {
        (
            503,
            "seller_behind".to_string(),
            format!(
                "the seller has not yet caught up with what this node knew of order {order}; try again"
            ),
        )
    } else {
        match work.await {
            Ok(()) => (200, String::new(), String::new()),
            Err(api) => (api.status.as_u16(), api.code.to_string(), api.message),
        }
    };
    let deltas = missing(cluster, &vv).await;
    wire::write_msg(
        &mut send,
        &Msg::MoveReply {
            status,
            code,
            message,
            deltas,
        },
    )
    .await?;
    let _ = send.finish();
    Ok(())
}
