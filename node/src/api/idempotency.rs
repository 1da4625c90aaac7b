//! `Idempotency-Key` on every write, with Stripe's semantics.
//!
//! A write (POST, PUT, PATCH, DELETE) that carries a key is handled once per
//! (caller, key): the first final answer is recorded in the replicated
//! idempotency keyspace, and a retry gets that answer again with
//! `Idempotent-Replayed: true` — on this node at once, on any other once
//! replication has brought the record there.
//!
//! Where the record goes: a write handler renders its answer under the
//! write lock ([`super::answer::write_answer`]), and the record of that
//! answer joins the write's own delta — one stage, one sync, replicated and
//! lost only together with the write. An answer with no write behind it (a
//! refusal, an unchanged value, a move forwarded to its seller) is recorded
//! here, after the handler, as a delta of its own. The request runs inside
//! [`crate::engine::Engine::deferred`], so it waits for the disk once, at
//! the end, and its answer leaves only when it is durable.
//!
//! - the same key with another request (method, path or body) → 422;
//! - the same key while its first request is still running here → 409;
//! - only final answers are recorded: 2xx, and the 4xx a retry cannot
//!   change (400, 403, 404, 405, 410, 413, 415, 422). Never 401, 408, 409
//!   (stock, a conflict that may clear), 412, 429 or any 5xx: a retry of
//!   those runs again and may succeed;
//! - keys are scoped to the token's subject, so two callers never share a
//!   record; a write without a valid token is passed through untouched (it
//!   is refused with 401 by its handler).

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crdt_core::idem::{IdemRecord, MAX_RECORDED_BODY};
use crdt_core::{IdemKey, Op};

use super::AppState;
use super::error::ApiError;
use crate::clock;

tokio::task_local! {
    /// The key of the request running in this task, when it has one.
    static KEYED: Keyed;
}

/// A keyed request's identity, for the handler that records its own answer.
struct Keyed {
    key: IdemKey,
    fingerprint: [u8; 16],
    /// Set once a write has carried the record of the answer.
    recorded: std::cell::Cell<bool>,
}

/// The key and request fingerprint of the keyed request running in this
/// task, if any: a handler that records its answer in its write's delta
/// records it under these.
pub(super) fn current_key() -> Option<(IdemKey, [u8; 16])> {
    KEYED.try_with(|k| (k.key, k.fingerprint)).ok()
}

/// Notes that the running request's answer is recorded (in its write's
/// delta), so the layer records nothing more.
pub(super) fn mark_recorded() {
    let _ = KEYED.try_with(|k| k.recorded.set(true));
}

/// The record of an answer: its status, `Location` and body (a body longer
/// than [`MAX_RECORDED_BODY`] is left out, and a replay answers without it).
pub(super) fn record_of(
    writer: crdt_core::Actor,
    fingerprint: [u8; 16],
    status: StatusCode,
    location: Option<String>,
    body: &[u8],
) -> IdemRecord {
    IdemRecord {
        hlc: Default::default(),
        writer,
        fingerprint,
        status: status.as_u16(),
        location,
        body: (body.len() <= MAX_RECORDED_BODY).then(|| body.to_vec()),
    }
}

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header that marks a replay.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The request's idempotency key, if it sent one: 1–255 visible ASCII
/// characters, else 400 naming the header.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_KEY_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

/// Keys whose first request is running on this node.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<IdemKey>>);

/// Holds a key in flight until dropped (also when the client hangs up and
/// the request's future is dropped).
pub struct Claim<'a> {
    set: &'a InFlight,
    key: IdemKey,
}

impl InFlight {
    fn claim(&self, key: IdemKey) -> Option<Claim<'_>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(key).then_some(Claim { set: self, key })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut s = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&self.key);
    }
}

/// Whether an answer is final: one a retry of the same request cannot
/// change, and so is recorded.
pub fn is_final(status: StatusCode) -> bool {
    status.is_success()
        || matches!(
            status.as_u16(),
            400 | 403 | 404 | 405 | 410 | 413 | 415 | 422
        )
}

/// A hash of what makes a request the same request: method, path and
/// query, and body.
pub fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("concord 2026 idempotent request");
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    for part in [method.as_str().as_bytes(), target.as_bytes(), body] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// What a lookup decides for a request with a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No record: run the request.
    Run,
    /// A record for this very request: answer it again.
    Replay,
    /// A record for another request under the same key: 422.
    Mismatch,
}

/// The decision for a request with `fingerprint` given the key's record.
pub fn decide(record: Option<&IdemRecord>, fingerprint: &[u8; 16]) -> Decision {
    match record {
        None => Decision::Run,
        Some(r) if r.fingerprint == *fingerprint => Decision::Replay,
        Some(_) => Decision::Mismatch,
    }
}

fn replay(r: &IdemRecord) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Body::from(r.body.clone().unwrap_or_default()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if r.body.is_some() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(loc) = r
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        h.insert(header::LOCATION, loc);
    }
    h.insert(REPLAYED, HeaderValue::from_static("true"));
    ::metrics::counter!(crate::metrics::IDEMPOTENT_REPLAYS).increment(1);
    resp
}

/// The layer: see the module documentation.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) || req.uri().path().starts_with("/api/v1/auth/")
    {
        // Sign-in answers carry tokens, which are never recorded; those
        // routes are safe to retry as they are (see `api::auth`).
        return next.run(req).await;
    }
    let key = match key_of(req.headers()) {
        Ok(Some(k)) => k,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let Ok(Some(claims)) = super::extract::claims_of(req.headers(), &state) else {
        return next.run(req).await;
    };
    let id = IdemKey::new(&claims.sub, &key);
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(super::extract::Verified(claims));
    let limit = state.config.http.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
        .into_response();
    };
    let fp = fingerprint(&parts.method, &parts.uri, &bytes);
    let now = clock::now_ms();
    // The common case, no record, decides nothing that leaves the node and
    // needs no wait; a record about to be replayed is read durably.
    let known = state.engine.peek(|r| r.idem_record(&id, now).is_some());
    let record = if known {
        state
            .engine
            .read(|r| r.idem_record(&id, now).cloned())
            .await
    } else {
        None
    };
    match (decide(record.as_ref(), &fp), &record) {
        (Decision::Replay, Some(r)) => return replay(r),
        (Decision::Mismatch, _) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request: use a new key for a new request",
            )
            .into_response();
        }
        _ => {}
    }
    let Some(_claim) = state.in_flight.claim(id) else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being handled: retry shortly",
        )
        .into_response();
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    let engine = state.engine.clone();
    let keyed = Keyed {
        key: id,
        fingerprint: fp,
        recorded: std::cell::Cell::new(false),
    };
    let handled = engine
        .deferred(KEYED.scope(keyed, async {
            let resp = next.run(req).await;
            let (parts, body) = resp.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let recorded = KEYED.with(|k| k.recorded.get());
            if !recorded && is_final(parts.status) {
                let location = parts
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let record = record_of(state.engine.actor(), fp, parts.status, location, &body);
                let op = Op::Record {
                    key: id,
                    record: Box::new(record),
                };
                if let Err(e) = state.engine.write(op).await {
                    tracing::warn!(error = %e, "could not record an idempotent answer");
                }
            }
            (parts, body)
        }))
        .await;
    match handled {
        Ok((parts, body)) => Response::from_parts(parts, Body::from(body)),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the node is stopping: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::{Actor, Hlc, NodeId};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn rec(fp: u8, status: u16) -> IdemRecord {
        IdemRecord {
            hlc: Hlc::from_ms(1),
            writer: Actor::first(NodeId::new("n1").expect("id")),
            fingerprint: [fp; 16],
            status,
            location: None,
            body: Some(vec![fp]),
        }
    }

    #[test]
    fn keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).ok(), Some(None));
        h.insert(HEADER, HeaderValue::from_static("order-7f3a"));
        assert_eq!(key_of(&h).ok(), Some(Some("order-7f3a".into())));
        for bad in ["", "has space", &"k".repeat(256)] {
            h.insert(HEADER, HeaderValue::from_str(bad).expect("header"));
            let e = key_of(&h).expect_err(bad);
            assert!(e.message.contains("Idempotency-Key"), "{}", e.message);
        }
    }

    #[test]
    fn only_answers_a_retry_cannot_change_are_final() {
        for ok in [200, 201, 204, 400, 403, 404, 422] {
            assert!(is_final(StatusCode::from_u16(ok).expect("status")), "{ok}");
        }
        for not in [401, 408, 409, 412, 429, 500, 503] {
            assert!(
                !is_final(StatusCode::from_u16(not).expect("status")),
                "{not}"
            );
        }
    }

    #[test]
    fn the_fingerprint_tells_requests_apart() {
        let u: axum::http::Uri = "/api/v1/orders".parse().expect("uri");
        let v: axum::http::Uri = "/api/v1/orders?x=1".parse().expect("uri");
        let a = fingerprint(&Method::POST, &u, b"{}");
        assert_eq!(a, fingerprint(&Method::POST, &u, b"{}"));
        assert_ne!(a, fingerprint(&Method::PUT, &u, b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, &v, b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, &u, b"{ }"));
    }

    /// One request of the model: a caller, a key, which request, and the
    /// status its handler would answer.
    #[derive(Clone, Debug)]
    struct Call {
        who: u8,
        key: u8,
        request: u8,
        status: u16,
    }

    fn calls() -> impl Strategy<Value = Vec<Call>> {
        let status = prop_oneof![Just(201u16), Just(200), Just(404), Just(409), Just(503)];
        prop::collection::vec(
            (0u8..2, 0u8..3, 0u8..2, status).prop_map(|(who, key, request, status)| Call {
                who,
                key,
                request,
                status,
            }),
            0..40,
        )
    }

    proptest! {
        /// The table against a model: per (caller, key), the first final
        /// answer is replayed for the same request and refused (422) for
        /// another; a non-final answer leaves no record, so the next try runs.
        #[test]
        fn the_table_follows_its_model(calls in calls()) {
            let mut table: HashMap<IdemKey, IdemRecord> = HashMap::new();
            let mut model: HashMap<(u8, u8), (u8, u16)> = HashMap::new();
            let mut handler_runs = 0usize;
            for c in &calls {
                let id = IdemKey::new(&format!("caller{}", c.who), &format!("key{}", c.key));
                let fp = [c.request; 16];
                let got = match decide(table.get(&id), &fp) {
                    Decision::Run => {
                        handler_runs += 1;
                        if is_final(StatusCode::from_u16(c.status).expect("status")) {
                            table.insert(id, rec(c.request, c.status));
                        }
                        ("ran", c.status)
                    }
                    Decision::Replay => ("replayed", table[&id].status),
                    Decision::Mismatch => ("refused", 422),
                };
                let expect = match model.get(&(c.who, c.key)) {
                    None => {
                        if is_final(StatusCode::from_u16(c.status).expect("status")) {
                            model.insert((c.who, c.key), (c.request, c.status));
                        }
                        ("ran", c.status)
                    }
                    Some((r, s)) if *r == c.request => ("replayed", *s),
                    Some(_) => ("refused", 422),
                };
                prop_assert_eq!(got, expect);
            }
            // Every final first answer ran its handler exactly once.
            prop_assert!(handler_runs >= model.len());
        }
    }
}
