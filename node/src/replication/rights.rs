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
use super::wire::{self, Msg, WireError};
use crate::api::error::ApiError;
use crate::engine::WriteError;
use crate::metrics as m;

/// Deltas sent along with an answer, at most.
const ANSWER_BYTES: usize = 4 << 20;

/// Asks peers for `units` rights on `sku` until `timeout` passes; true once
/// some were granted (and merged).
pub async fn acquire(cluster: &Arc<Cluster>, sku: &Sku, units: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
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
    for (_, peer) in candidates {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, ask(cluster, &peer, sku, units)).await {
            Ok(Ok(g)) if g > 0 => {
                ::metrics::counter!(m::RIGHTS_REQUESTS, "outcome" => "granted").increment(1);
                tracing::debug!(peer = %peer.id, %sku, granted = g, "received stock rights");
                return true;
            }
            Ok(Ok(_)) => {
                ::metrics::counter!(m::RIGHTS_REQUESTS, "outcome" => "refused").increment(1)
            }
            Ok(Err(e)) => {
                ::metrics::counter!(m::RIGHTS_REQUESTS, "outcome" => "error").increment(1);
                tracing::debug!(peer = %peer.id, error = %e, "rights request failed");
            }
            Err(_) => ::metrics::counter!(m::RIGHTS_REQUESTS, "outcome" => "timeout").increment(1),
        }
    }
    false
}

async fn ask(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    sku: &Sku,
    units: u64,
) -> Result<u64, WireError> {
    let conn = peer
        .conn()
        .ok_or_else(|| WireError::Stream("not connected".into()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let vv = cluster.engine.peek(|r| r.version_vector().clone());
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
    match wire::expect_msg(&mut recv, Duration::from_secs(5)).await? {
        Msg::RightsReply { granted, deltas } => {
            merge(cluster, peer, deltas).await?;
            Ok(granted)
        }
        other => Err(WireError::unexpected(&other)),
    }
}

async fn merge(
    cluster: &Arc<Cluster>,
    peer: &Arc<Peer>,
    deltas: Vec<Vec<u8>>,
) -> Result<(), WireError> {
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

fn missing(cluster: &Cluster, vv: &VersionVector) -> Vec<Vec<u8>> {
    cluster.engine.peek(|r| {
        r.missing_for(vv, ANSWER_BYTES)
            .map(|v| v.into_iter().map(|l| l.bytes.to_vec()).collect())
            .unwrap_or_default()
    })
}

/// Answers a rights request: transfers at least half of what we hold (at
/// most all), if we hold any.
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
        let held = cluster.engine.peek(|r| {
            r.state()
                .stock
                .get(&sku)
                .map(|c| c.rights(&me))
                .unwrap_or(0)
        });
        let give = held.min(units.max(held.div_ceil(2)));
        if give > 0 {
            match cluster
                .engine
                .write(Op::TransferRights {
                    sku: sku.clone(),
                    to,
                    quantity: give,
                })
                .await
            {
                Ok(_) => {
                    granted = give;
                    tracing::info!(peer = %peer.id, %sku, units = give, "gave stock rights");
                }
                Err(e) => tracing::debug!(peer = %peer.id, error = %e, "could not give rights"),
            }
        }
    }
    let deltas = missing(cluster, &vv);
    wire::write_msg(&mut send, &Msg::RightsReply { granted, deltas }).await?;
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
    let unreachable = || {
        ApiError::unavailable(
            "seller_unreachable",
            format!(
                "order {order} was sold by {seller}, which is unreachable now; try again later"
            ),
        )
    };
    let peer = cluster
        .peers
        .get(&seller.node)
        .ok_or_else(unreachable)?
        .clone();
    let (conn, actor) = {
        let s = peer.lock();
        (s.conn.clone(), s.actor)
    };
    let conn = conn.ok_or_else(unreachable)?;
    if actor != Some(seller) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "seller_gone",
            format!(
                "order {order} was sold by {seller}, whose store has since been replaced; it can no longer be shipped"
            ),
        ));
    }
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| WireError::Stream(e.to_string()))?;
        let vv = cluster.engine.peek(|r| r.version_vector().clone());
        wire::write_msg(&mut send, &Msg::MoveRequest { order, to, vv }).await?;
        let _ = send.finish();
        wire::expect_msg(&mut recv, Duration::from_secs(3)).await
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

fn static_code(code: &str) -> &'static str {
    match code {
        "illegal_transition" => "illegal_transition",
        "order_not_found" => "order_not_found",
        "seller_unreachable" => "seller_unreachable",
        _ => "forwarded_error",
    }
}

/// Carries out a forwarded move on the seller.
pub async fn serve_move(
    cluster: &Arc<Cluster>,
    mut send: quinn::SendStream,
    order: OrderId,
    to: OrderStatus,
    vv: VersionVector,
) -> Result<(), WireError> {
    let (status, code, message) = match cluster.engine.write(Op::MoveOrder { order, to }).await {
        Ok(_) | Err(WriteError::Op(OpError::Unchanged)) => (200, String::new(), String::new()),
        Err(e) => {
            let api: ApiError = e.into();
            (api.status.as_u16(), api.code.to_string(), api.message)
        }
    };
    let deltas = missing(cluster, &vv);
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
