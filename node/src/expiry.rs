//! Fair use over time (`[limits]`): unpaid orders expire, untouched carts
//! are emptied — each decided by exactly one node, so no two nodes race to
//! do it.
//!
//! - An order still `placed` (unpaid) `unpaid_order_ttl_secs` after it was
//!   created is cancelled **by its seller** — the seller alone sold its
//!   units, and a cancel at the seller returns them in the same delta (the
//!   existing return path). This is the "reservation with a TTL" a shopper
//!   expects. A pay that reaches the seller first wins: a paid order never
//!   expires; a pay concurrent with the expiry loses to it (cancel is above
//!   paid in the status order), and the customer sees `cancelled`.
//! - A cart whose newest line is older than `cart_ttl_days` is emptied by
//!   the node that wrote that newest line (an observed remove: a line added
//!   meanwhile elsewhere survives). The cart's owner binding stays.
//! - Idempotency records older than `idempotency_window_secs` are dropped
//!   by every node on its own (no delta: the expiry rule is the same
//!   everywhere).

use std::sync::Arc;
use std::time::Duration;

use crdt_core::status::OrderStatus;
use crdt_core::{CartId, Op, OrderId};

use crate::clock;
use crate::config::FairUse;
use crate::engine::{Engine, WriteError};
use crate::shutdown::Shutdown;

/// How often the node looks for expired orders and carts.
pub const TICK: Duration = Duration::from_secs(5);
/// Most of each acted on per tick (the rest wait for the next).
const PER_TICK: usize = 500;
/// Idempotency records (and record segments) dropped per hold of the lock.
const SWEEP_CHUNK: usize = 1_000;

/// Orders this node sold that are unpaid past `ttl`, at `now_ms`.
fn expired_orders(engine: &Engine, ttl: Duration, now_ms: u64) -> Vec<OrderId> {
    let me = engine.actor();
    let cutoff = now_ms.saturating_sub(ttl.as_millis() as u64);
    engine.peek(|r| {
        r.orders_after(None, Some(OrderStatus::Placed), None)
            .filter(|id| {
                r.state()
                    .orders
                    .get(id)
                    .and_then(|e| e.header())
                    .is_some_and(|h| h.seller == me && h.created_ms < cutoff)
            })
            .take(PER_TICK)
            .collect()
    })
}

/// Carts whose newest line, written by this node, is older than `ttl`.
fn expired_carts(engine: &Engine, ttl: Duration, now_ms: u64) -> Vec<CartId> {
    let me = engine.actor();
    let cutoff = now_ms.saturating_sub(ttl.as_millis() as u64);
    engine.peek(|r| {
        r.state()
            .carts
            .iter()
            .filter(|(_, e)| {
                e.siblings()
                    .iter()
                    .max_by_key(|s| (s.hlc, s.dot))
                    .is_some_and(|s| s.dot.actor == me && s.hlc.ms < cutoff)
            })
            .map(|(id, _)| *id)
            .take(PER_TICK)
            .collect()
    })
}

/// Runs the expiry of unpaid orders and untouched carts until shutdown.
pub async fn run(engine: Arc<Engine>, limits: FairUse, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let now = clock::now_ms();
        if let Some(ttl) = limits.unpaid_order_ttl {
            for order in expired_orders(&engine, ttl, now) {
                let to = OrderStatus::Cancelled;
                match engine.write(Op::MoveOrder { order, to }).await {
                    Ok(_) => tracing::info!(%order, "cancelled an unpaid order past its time"),
                    Err(WriteError::Op(e)) => tracing::debug!(%order, error = %e, "no expiry"),
                    Err(e) => tracing::warn!(%order, error = %e, "expiring an order failed"),
                }
            }
        }
        // Idempotency records past their window: a local sweep every node
        // makes at the same HLC deadline (see `crdt_core::idem`).
        // In chunks, each a short hold of the write lock, until none is
        // left: however fast keyed writes come, the sweep keeps up.
        let mut swept = 0;
        loop {
            let n = engine.sweep_idem(now, SWEEP_CHUNK).await;
            swept += n;
            if n < SWEEP_CHUNK {
                break;
            }
            tokio::task::yield_now().await;
        }
        if swept > 0 {
            tracing::debug!(swept, "dropped expired idempotency records");
        }
        if let Some(ttl) = limits.cart_ttl {
            for cart in expired_carts(&engine, ttl, now) {
                match engine.write(Op::ClearCart { cart }).await {
                    Ok(_) => tracing::info!(%cart, "emptied a cart left untouched"),
                    Err(e) => tracing::debug!(%cart, error = %e, "no cart expiry"),
                }
            }
        }
    }
}
