//! Answers rendered under the write lock.
//!
//! A write handler builds its answer from the state its write leaves, in
//! the same critical section as the write ([`write_answer`]). The answer
//! then shows exactly that write (no later one), and for a request with an
//! `Idempotency-Key` the record of that answer rides in the write's own
//! delta ([`crate::engine::Engine::write_then`]): a keyed write costs one
//! stage and one sync, like any other, and no crash can keep the write
//! without its record.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crdt_core::{Op, Replica};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::idempotency;
use crate::engine::WriteError;

/// A rendered answer: status, `Location`, and a JSON body (or none).
#[derive(Debug, Clone)]
pub struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Option<Bytes>,
}

impl Answer {
    /// `v` as JSON, with `status`.
    pub fn json<V: Serialize>(status: StatusCode, v: &V) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(v).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("could not render the answer: {e}"),
            )
        })?;
        Ok(Self {
            status,
            location: None,
            body: Some(body.into()),
        })
    }

    /// No body (204 and the like).
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            location: None,
            body: None,
        }
    }

    /// With a `Location` header.
    pub fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut resp = Response::new(self.body.clone().map(Body::from).unwrap_or_default());
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if self.body.is_some() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(v) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, v);
        }
        resp
    }
}

/// Like [`write_answer`], for writes whose retry or repetition is not an
/// error: when `op` would change nothing (`Unchanged`), `render` answers
/// from the state as it is.
pub async fn write_or_current(
    state: &AppState,
    op: Op,
    render: impl Fn(&Replica) -> Result<Answer, ApiError>,
) -> Result<Answer, ApiError> {
    match write_answer(state, op, &render).await {
        Ok(answer) => answer,
        Err(WriteError::Op(crdt_core::OpError::Unchanged)) => {
            state.engine.read_answer(|r| render(r)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Carries out `op` and renders its answer with `render` from the state
/// the write leaves, under the same lock; under an `Idempotency-Key` the
/// record of that answer joins the write's delta. The outer error is the
/// write's (nothing changed); the inner one is the rendering's (the write
/// stands, and the layer records that answer instead, if final).
pub async fn write_answer(
    state: &AppState,
    op: Op,
    render: impl FnOnce(&Replica) -> Result<Answer, ApiError>,
) -> Result<Result<Answer, ApiError>, WriteError> {
    let keyed = idempotency::current_key();
    let writer = state.engine.actor();
    let (_, answer) = state
        .engine
        .write_then(op, |r| {
            let answer = render(r);
            let record = match (&keyed, &answer) {
                (Some((key, fingerprint)), Ok(a)) if idempotency::is_final(a.status) => {
                    let record = idempotency::record_of(
                        writer,
                        *fingerprint,
                        a.status,
                        a.location.clone(),
                        a.body_bytes(),
                    );
                    Some((*key, record))
                }
                _ => None,
            };
            (answer, record)
        })
        .await?;
    if keyed.is_some()
        && answer
            .as_ref()
            .is_ok_and(|a| idempotency::is_final(a.status))
    {
        idempotency::mark_recorded();
    }
    Ok(answer)
}
