//! `GET /api/v1/events`: server-sent events — applied deltas by keyspace,
//! order status changes, peers going up and down, this node's digest, and
//! whether it agrees with its peers (convergence) —
//! with a resume token.
//!
//! Every event gets a sequence number (its SSE `id`). The hub keeps the most
//! recent events in a ring; a client that reconnects with `Last-Event-ID`
//! gets everything after it that is still in the ring, then the live stream.
//! If the ring no longer reaches back that far, the client is sent a `reset`
//! event first, meaning "reload your state, then carry on".

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use crdt_core::{Key, KeyspaceId};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast;

use crate::api::AppState;
use crate::engine::{Engine, Event, Origin};
use crate::shutdown::Shutdown;

/// Events kept for resuming clients.
pub const RING: usize = 10_000;

/// One published event.
#[derive(Clone, Debug)]
pub struct Published {
    /// Sequence number (the SSE id).
    pub id: u64,
    /// SSE event name: `delta`, `order`, `peer`, `digest`, `convergence`, `reset`.
    pub kind: &'static str,
    /// JSON payload.
    pub data: String,
}

/// The node's event hub.
pub struct EventHub {
    ring: Mutex<(u64, VecDeque<Published>)>,
    live: broadcast::Sender<Published>,
}

impl Default for EventHub {
    fn default() -> Self {
        let (live, _) = broadcast::channel(4096);
        Self {
            ring: Mutex::new((0, VecDeque::with_capacity(RING))),
            live,
        }
    }
}

impl EventHub {
    /// A new hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Publishes an event.
    pub fn publish(&self, kind: &'static str, data: serde_json::Value) {
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let e = Published {
            id: g.0,
            kind,
            data: data.to_string(),
        };
        if g.1.len() == RING {
            g.1.pop_front();
        }
        g.1.push_back(e.clone());
        let _ = self.live.send(e);
    }

    /// Events after `after` still held, and whether the ring reaches back
    /// that far; plus a live receiver subscribed before the copy was taken.
    fn resume(&self, after: Option<u64>) -> (Vec<Published>, bool, broadcast::Receiver<Published>) {
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.live.subscribe();
        let Some(after) = after else {
            return (Vec::new(), true, rx);
        };
        let oldest = g.1.front().map(|e| e.id).unwrap_or(g.0 + 1);
        let complete = after + 1 >= oldest || after >= g.0;
        let backlog = g.1.iter().filter(|e| e.id > after).cloned().collect();
        (backlog, complete, rx)
    }

    /// The last sequence number handed out.
    pub fn last_id(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

fn keyspace_of(k: &Key) -> KeyspaceId {
    k.keyspace()
}

/// A key as text: a UUID, or a SKU.
pub fn key_text(k: &Key) -> String {
    match k {
        Key::Product(p) => p.to_string(),
        Key::Cart(c) => c.to_string(),
        Key::Stock(s) => s.0.clone(),
        Key::Order(o) => o.to_string(),
    }
}

/// Turns the engine's applied deltas into `delta` and `order` events, and
/// emits `convergence` when this node's digest changes (at most every 200 ms).
pub async fn run_bridge(engine: Arc<Engine>, hub: Arc<EventHub>, shutdown: Shutdown) {
    let mut rx = engine.subscribe();
    let mut digest_tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_digest = String::new();
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(Event::Applied(a, origin)) => {
                    let mut by_ks: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
                    for k in &a.changed {
                        by_ks.entry(keyspace_of(k).as_str()).or_default().push(key_text(k));
                    }
                    let origin = match origin { Origin::Local => "local".to_string(), Origin::Remote(p) => p.map(|p| p.to_string()).unwrap_or_else(|| "peer".into()) };
                    for (ks, keys) in by_ks {
                        hub.publish("delta", json!({"keyspace": ks, "keys": keys, "actor": a.delta.dot.actor.to_string(), "seq": a.delta.dot.seq, "origin": origin}));
                    }
                    let orders: Vec<_> = a.changed.iter().filter_map(|k| match k { Key::Order(o) => Some(*o), _ => None }).collect();
                    if !orders.is_empty() {
                        let statuses = engine.read(|r| orders.iter().filter_map(|o| {
                            r.state().orders.get(o).and_then(|e| e.header.as_ref().map(|h| (o.to_string(), e.status.0.as_str(), h.customer.clone())))
                        }).collect::<Vec<_>>()).await;
                        for (id, status, customer) in statuses {
                            hub.publish("order", json!({"id": id, "status": status, "customerId": customer}));
                        }
                    }
                }
                Ok(Event::Repaired(keys)) => {
                    hub.publish("delta", json!({"keyspace": "repair", "keys": keys.iter().map(key_text).take(100).collect::<Vec<_>>(), "origin": "repair"}));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => hub.publish("reset", json!({"missed": n})),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = digest_tick.tick() => {
                let d = engine.read(|r| crate::api::system::hex(&r.digest())).await;
                if d != last_digest {
                    hub.publish("digest", json!({"digest": d}));
                    last_digest = d;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
}

/// Streams events (SSE), resuming after `Last-Event-ID` when given.
#[utoipa::path(get, path = "/api/v1/events", tag = "cluster",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "A stream of server-sent events: delta, order, peer, convergence, reset", content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (backlog, complete, rx) = state.events.resume(after);
    let mut first: Vec<Published> = Vec::new();
    if !complete {
        first.push(Published {
            id: backlog
                .first()
                .map(|e| e.id.saturating_sub(1))
                .unwrap_or(state.events.last_id()),
            kind: "reset",
            data: json!({"reason": "the event log no longer reaches back to Last-Event-ID"})
                .to_string(),
        });
    }
    first.extend(backlog);
    let last = first.last().map(|e| e.id).or(after).unwrap_or(0);
    let stream = futures_util::stream::unfold(
        (first.into_iter(), rx, last),
        |(mut replay, mut rx, mut last)| async move {
            if let Some(e) = replay.next() {
                return Some((Ok(to_sse(&e)), (replay, rx, last)));
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e.id > last => {
                        last = e.id;
                        return Some((Ok(to_sse(&e)), (replay, rx, last)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let reset = Published {
                            id: last,
                            kind: "reset",
                            data: json!({"reason": "this client fell behind"}).to_string(),
                        };
                        return Some((Ok(to_sse(&reset)), (replay, rx, last)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn to_sse(e: &Published) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind)
        .data(e.data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_replays_what_the_ring_holds() {
        let hub = EventHub::default();
        for i in 0..5 {
            hub.publish("delta", json!({"i": i}));
        }
        let (b, complete, _) = hub.resume(Some(2));
        assert!(complete);
        assert_eq!(b.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        let (b, complete, _) = hub.resume(None);
        assert!(complete && b.is_empty());
        for i in 0..RING {
            hub.publish("delta", json!({"i": i}));
        }
        let (_, complete, _) = hub.resume(Some(1));
        assert!(!complete, "events 2.. have left the ring");
    }
}
