//! `GET /api/v1/events`: server-sent events — applied deltas by keyspace,
//! order status changes, peers going up and down, this node's digest, and
//! whether it agrees with its peers (convergence) — with a resume token.
//!
//! **Audiences.** Every event has one: catalog and stock events are
//! public; a cart's or an order's events belong to its customer; cluster
//! internals (peers, digests, convergence, divergence repairs, repairs) are
//! for admins. A subscriber sees what its token entitles it to — anonymous:
//! the public events; a customer: those and its own; an admin: everything.
//!
//! Every event gets a sequence number (its SSE `id`). The hub keeps the most
//! recent events in a ring of shared (`Arc`) events; a client that
//! reconnects with `Last-Event-ID` is replayed what followed it — read from
//! the ring a batch at a time, never copied whole per connection — and at
//! most [`MAX_REPLAY`] events; further back, or past the ring, it is sent a
//! `reset` event first ("reload your state, then carry on"). Subscribers are
//! capped (`[http] max_event_subscribers`): one more gets 503.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use crdt_core::Key;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::Caller;
use crate::auth::Role;
use crate::engine::{Engine, Event, Origin};
use crate::shutdown::Shutdown;

/// Events kept for resuming clients.
pub const RING: usize = 10_000;
/// Most events replayed to one resuming client.
pub const MAX_REPLAY: usize = 1_000;
/// Events copied out of the ring at a time while replaying.
const REPLAY_BATCH: usize = 64;

/// Who may see an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Anyone: catalog and stock.
    Public,
    /// The customer it concerns (and admins).
    Customer(String),
    /// Admins only: cluster internals.
    Admin,
}

/// Who is listening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listener {
    /// No token.
    Anonymous,
    /// A customer token with this subject.
    Customer(String),
    /// An admin token.
    Admin,
}

impl Listener {
    /// Whether this listener may see an event for `a`.
    pub fn sees(&self, a: &Audience) -> bool {
        match (self, a) {
            (_, Audience::Public) | (Listener::Admin, _) => true,
            (Listener::Customer(me), Audience::Customer(them)) => me == them,
            _ => false,
        }
    }
}

/// One published event.
#[derive(Clone, Debug)]
pub struct Published {
    /// Sequence number (the SSE id).
    pub id: u64,
    /// SSE event name: `delta`, `order`, `peer`, `digest`, `convergence`,
    /// `divergence`, `reset`.
    pub kind: &'static str,
    /// Who may see it.
    pub audience: Audience,
    /// JSON payload.
    pub data: String,
}

/// The node's event hub.
pub struct EventHub {
    ring: Mutex<(u64, VecDeque<Arc<Published>>)>,
    live: broadcast::Sender<Arc<Published>>,
    subscribers: AtomicUsize,
    max_subscribers: usize,
}

impl EventHub {
    /// A new hub admitting at most `max_subscribers` streams at once.
    pub fn new(max_subscribers: usize) -> Arc<Self> {
        let (live, _) = broadcast::channel(4096);
        Arc::new(Self {
            ring: Mutex::new((0, VecDeque::with_capacity(RING))),
            live,
            subscribers: AtomicUsize::new(0),
            max_subscribers,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<Arc<Published>>)> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event for `audience`.
    pub fn publish(&self, kind: &'static str, audience: Audience, data: serde_json::Value) {
        let mut g = self.lock();
        g.0 += 1;
        let e = Arc::new(Published {
            id: g.0,
            kind,
            audience,
            data: data.to_string(),
        });
        if g.1.len() == RING {
            g.1.pop_front();
        }
        g.1.push_back(e.clone());
        let _ = self.live.send(e);
    }

    /// Up to `max` ring events with ids above `after`, oldest first.
    fn batch_after(&self, after: u64, max: usize) -> Vec<Arc<Published>> {
        let g = self.lock();
        let Some(front) = g.1.front().map(|e| e.id) else {
            return Vec::new();
        };
        let skip = after.saturating_add(1).saturating_sub(front) as usize;
        g.1.iter().skip(skip).take(max).cloned().collect()
    }

    /// Where a stream resuming after `after` starts: (first id to replay
    /// after, whether a `reset` must come first), and a live receiver
    /// subscribed before the ring was looked at.
    fn resume(&self, after: Option<u64>) -> (u64, bool, broadcast::Receiver<Arc<Published>>) {
        let g = self.lock();
        let rx = self.live.subscribe();
        let last = g.0;
        let Some(after) = after.map(|a| a.min(last)) else {
            return (last, false, rx);
        };
        let oldest = g.1.front().map(|e| e.id).unwrap_or(last.saturating_add(1));
        let from = after.max(last.saturating_sub(MAX_REPLAY as u64));
        // Events after `after` were dropped from the ring, or are beyond
        // the replay cap: the client must reload.
        let reset = after.saturating_add(1) < oldest || from > after;
        (from.max(oldest.saturating_sub(1)), reset, rx)
    }

    /// The last sequence number handed out.
    pub fn last_id(&self) -> u64 {
        self.lock().0
    }

    /// Streams open now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }
}

/// Counts one open stream; the count drops with it.
struct Subscription(Arc<EventHub>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A key as text: a UUID, or a SKU.
pub fn key_text(k: &Key) -> String {
    match k {
        Key::Product(p) => p.to_string(),
        Key::Cart(c) => c.to_string(),
        Key::Stock(s) => s.0.clone(),
        Key::Order(o) => o.to_string(),
        Key::Idem(i) => i.to_string(),
        Key::Account(a) => a.to_string(),
    }
}

/// The audience of a changed key, read from the replica: a cart's or an
/// order's customer; catalog and stock are public; an unbound cart's events
/// go to admins only.
fn audience_of(r: &crdt_core::Replica, k: &Key) -> Audience {
    match k {
        Key::Product(_) | Key::Stock(_) => Audience::Public,
        Key::Cart(c) => r
            .state()
            .carts
            .get(c)
            .and_then(|e| e.customer())
            .map(|c| Audience::Customer(c.to_string()))
            .unwrap_or(Audience::Admin),
        Key::Order(o) => r
            .state()
            .orders
            .get(o)
            .and_then(|e| e.header())
            .map(|h| Audience::Customer(h.customer.clone()))
            .unwrap_or(Audience::Admin),
        // Records hold answers to customers' writes: operators only.
        Key::Idem(_) => Audience::Admin,
        // Sign-ins, failed logins, profile changes: operators only (the
        // event names the key, never the entry).
        Key::Account(_) => Audience::Admin,
    }
}

/// Turns the engine's applied deltas into `delta` and `order` events, each
/// for the audience of its keys, and emits `digest` when this node's digest
/// changes (at most every 200 ms).
pub async fn run_bridge(engine: Arc<Engine>, hub: Arc<EventHub>, shutdown: Shutdown) {
    let mut rx = engine.subscribe();
    let mut digest_tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_digest = String::new();
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                // Idempotency records are the node's bookkeeping, not news
                // for any audience: alone in a delta or beside the write
                // whose answer they hold.
                Ok(Event::Applied(a, _)) if a.changed.iter().all(|k| matches!(k, Key::Idem(_))) => {}
                Ok(Event::Applied(a, origin)) => {
                    let origin = match origin { Origin::Local => "local".to_string(), Origin::Remote(p) => p.map(|p| p.to_string()).unwrap_or_else(|| "peer".into()) };
                    let keys: Vec<Key> = a.changed.iter().filter(|k| !matches!(k, Key::Idem(_))).cloned().collect();
                    let (groups, orders) = engine.read(|r| {
                        let mut groups: BTreeMap<(&'static str, String), (Audience, Vec<String>)> = BTreeMap::new();
                        let mut orders = Vec::new();
                        for k in &keys {
                            let aud = audience_of(r, k);
                            let who = format!("{aud:?}");
                            groups.entry((k.keyspace().as_str(), who)).or_insert_with(|| (aud.clone(), Vec::new())).1.push(key_text(k));
                            if let Key::Order(o) = k
                                && let Some(e) = r.state().orders.get(o)
                                && let Some(h) = e.header()
                            {
                                orders.push((o.to_string(), e.status.0.as_str(), h.customer.clone()));
                            }
                        }
                        (groups, orders)
                    }).await;
                    for ((ks, _), (aud, keys)) in groups {
                        hub.publish("delta", aud, json!({"keyspace": ks, "keys": keys, "actor": a.delta.dot.actor.to_string(), "seq": a.delta.dot.seq, "origin": origin}));
                    }
                    for (id, status, customer) in orders {
                        hub.publish("order", Audience::Customer(customer.clone()), json!({"id": id, "status": status, "customerId": customer}));
                    }
                }
                Ok(Event::Repaired(keys)) => {
                    hub.publish("delta", Audience::Admin, json!({"keyspace": "repair", "keys": keys.iter().map(key_text).take(100).collect::<Vec<_>>(), "origin": "repair"}));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => hub.publish("reset", Audience::Public, json!({"missed": n})),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = digest_tick.tick() => {
                let d = engine.read(|r| crate::api::system::hex(&r.digest())).await;
                if d != last_digest {
                    hub.publish("digest", Audience::Admin, json!({"digest": d}));
                    last_digest = d;
                }
            }
            _ = shutdown.wait() => break,
        }
    }
}

/// A stream's position: replaying from the ring, then live.
struct Cursor {
    listener: Listener,
    /// The last id sent (or skipped).
    last: u64,
    /// Ring events fetched and not yet sent.
    pending: VecDeque<Arc<Published>>,
    /// Still replaying from the ring up to this id.
    replay_until: u64,
    /// A `reset` to send first.
    reset: Option<Published>,
    rx: broadcast::Receiver<Arc<Published>>,
    hub: Arc<EventHub>,
    _sub: Subscription,
}

impl Cursor {
    async fn next(&mut self) -> Option<SseEvent> {
        if let Some(r) = self.reset.take() {
            return Some(to_sse(&r));
        }
        loop {
            if self.pending.is_empty() && self.last < self.replay_until {
                self.pending
                    .extend(self.hub.batch_after(self.last, REPLAY_BATCH));
                if self.pending.is_empty() {
                    self.replay_until = self.last;
                }
            }
            if let Some(e) = self.pending.pop_front() {
                if e.id <= self.last {
                    continue;
                }
                self.last = e.id;
                if self.listener.sees(&e.audience) {
                    return Some(to_sse(&e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if e.id > self.last => {
                    self.last = e.id;
                    if self.listener.sees(&e.audience) {
                        return Some(to_sse(&e));
                    }
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let reset = Published {
                        id: self.last,
                        kind: "reset",
                        audience: Audience::Public,
                        data: json!({"reason": "this client fell behind"}).to_string(),
                    };
                    return Some(to_sse(&reset));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Streams events (SSE) this caller may see, resuming after `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/events", tag = "cluster",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "A stream of server-sent events: delta, order, peer, digest, convergence, divergence, reset — as many as the token entitles the caller to", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many open streams", body = crate::api::error::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let listener = match &caller.0 {
        None => Listener::Anonymous,
        Some(c) if c.role == Role::Admin => Listener::Admin,
        Some(c) => Listener::Customer(c.sub.clone()),
    };
    let hub = state.events.clone();
    if hub.subscribers.fetch_add(1, Ordering::Relaxed) >= hub.max_subscribers {
        hub.subscribers.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::unavailable(
            "too_many_streams",
            "this node serves as many event streams as it allows; try another node or later",
        ));
    }
    let sub = Subscription(hub.clone());
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (from, reset, rx) = hub.resume(after);
    let until = hub.last_id();
    let cursor = Cursor {
        listener,
        last: from,
        pending: VecDeque::new(),
        replay_until: until,
        reset: reset.then(|| Published {
            id: from,
            kind: "reset",
            audience: Audience::Public,
            data: json!({"reason": "the event log no longer reaches back to Last-Event-ID"})
                .to_string(),
        }),
        rx,
        hub,
        _sub: sub,
    };
    let stream =
        futures_util::stream::unfold(
            cursor,
            |mut c| async move { c.next().await.map(|e| (Ok(e), c)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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

    fn hub() -> Arc<EventHub> {
        EventHub::new(8)
    }

    #[test]
    fn resume_starts_after_the_id_and_resets_past_the_ring_or_the_cap() {
        let h = hub();
        for i in 0..5 {
            h.publish("delta", Audience::Public, json!({"i": i}));
        }
        let (from, reset, _) = h.resume(Some(2));
        assert_eq!((from, reset), (2, false));
        assert_eq!(
            h.batch_after(2, 10)
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let (from, reset, _) = h.resume(None);
        assert_eq!((from, reset), (5, false), "no Last-Event-ID: live only");
        // The largest id a client can send does not overflow.
        let (from, reset, _) = h.resume(Some(u64::MAX));
        assert_eq!((from, reset), (5, false));
        for i in 0..RING {
            h.publish("delta", Audience::Public, json!({"i": i}));
        }
        let (from, reset, _) = h.resume(Some(1));
        assert!(reset, "events 2.. have left the ring");
        assert_eq!(h.last_id() - from, MAX_REPLAY as u64, "replay is capped");
        let (_, reset, _) = h.resume(Some(h.last_id() - 10));
        assert!(!reset);
    }

    #[test]
    fn each_listener_sees_its_audience_only() {
        let alice = Audience::Customer("alice".into());
        for (l, public, own, admin) in [
            (Listener::Anonymous, true, false, false),
            (Listener::Customer("alice".into()), true, true, false),
            (Listener::Customer("bob".into()), true, false, false),
            (Listener::Admin, true, true, true),
        ] {
            assert_eq!(l.sees(&Audience::Public), public, "{l:?}");
            assert_eq!(l.sees(&alice), own, "{l:?}");
            assert_eq!(l.sees(&Audience::Admin), admin, "{l:?}");
        }
    }
}
