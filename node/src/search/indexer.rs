//! The indexer task: applies the engine's published changes to the search
//! index, compacts the graph when deletions pile up, saves snapshots.

use std::sync::Arc;

use crdt_core::{Key, ProductId};
use tokio::sync::broadcast::error::RecvError;

use super::SearchIndex;
use crate::engine::{Engine, Event};
use crate::shutdown::Shutdown;

/// Keeps the index in step with the engine's published changes; saves a
/// snapshot now and then and at shutdown.
pub async fn run_indexer(index: Arc<SearchIndex>, engine: Arc<Engine>, shutdown: Shutdown) {
    let mut rx = engine.subscribe();
    // Changes made while the index loads wait in the channel until it is
    // ready; then the indexer starts at once (a `Notified` made before the
    // check receives a wake-up sent after it).
    loop {
        let ready = index.became_ready.notified();
        if index.is_ready() {
            break;
        }
        tokio::select! {
            _ = ready => {}
            _ = shutdown.wait() => return,
        }
    }
    let mut dirty = false;
    let mut save_tick = tokio::time::interval(std::time::Duration::from_secs(30));
    save_tick.tick().await;
    let mut compact_tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(Event::Applied(a, _)) => {
                    let ids: Vec<ProductId> = a.changed.iter().filter_map(|k| match k { Key::Product(p) => Some(*p), _ => None }).collect();
                    index.sync_products(&engine, &ids);
                    dirty |= !ids.is_empty();
                }
                Ok(Event::Repaired(keys)) => {
                    let ids: Vec<ProductId> = keys.iter().filter_map(|k| match k { Key::Product(p) => Some(*p), _ => None }).collect();
                    index.sync_products(&engine, &ids);
                    dirty |= !ids.is_empty();
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "search indexer fell behind: resynchronising every product");
                    let mut ids: Vec<ProductId> = engine.peek(|r| r.state().products.iter().map(|(k, _)| *k).collect());
                    {
                        // Indexed products the replica no longer holds are removed too.
                        let g = index.inner.read().unwrap_or_else(|p| p.into_inner());
                        ids.extend(g.labels.keys().copied());
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    index.sync_products(&engine, &ids);
                    dirty = true;
                }
                Err(RecvError::Closed) => break,
            },
            _ = compact_tick.tick() => {
                if index.needs_compaction() {
                    let ix = index.clone();
                    tokio::task::spawn_blocking(move || ix.compact());
                }
            }
            _ = save_tick.tick() => {
                if dirty {
                    if let Err(e) = index.save_snapshot() {
                        tracing::warn!(error = %e, "could not save the search snapshot");
                    }
                    dirty = false;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    if let Err(e) = index.save_snapshot() {
        tracing::warn!(error = %e, "could not save the search snapshot at shutdown");
    }
}
