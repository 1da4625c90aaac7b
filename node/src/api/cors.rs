//! Browser access and request ids, the outermost layer.
//!
//! - **CORS** for the origins in `[http] cors_origins` (none by default, so
//!   no other site's scripts can call the API from a shopper's browser): a
//!   preflight from an allowed origin is answered 204 here, before any rate
//!   limit or token check; every answer to an allowed origin names it in
//!   `Access-Control-Allow-Origin` and exposes the headers a storefront
//!   reads. Other origins get no CORS headers, so browsers refuse them.
//! - **`X-Request-Id`**: echoed when the client sent a usable one (1–128
//!   visible ASCII characters), minted otherwise, and carried by the span
//!   every log line of the request is written in.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;

/// The request-id header.
pub const REQUEST_ID: &str = "x-request-id";

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str =
    "authorization, content-type, idempotency-key, if-match, if-none-match, x-request-id";
const EXPOSE_HEADERS: &str = "etag, location, idempotent-replayed, x-request-id, retry-after";

/// The client's request id if usable, else a fresh one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The layer: see the module documentation.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .filter(|o| state.config.http.cors_origins.iter().any(|a| a == o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        match &origin {
            Some(_) => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(ALLOW_METHODS),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOW_HEADERS),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                r
            }
            None => StatusCode::FORBIDDEN.into_response(),
        }
    } else {
        let span = tracing::info_span!("request", id = %id);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = next.run(req).instrument(span.clone()).await;
        span.in_scope(|| {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "answered");
        });
        resp
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(REQUEST_ID, v);
    }
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    resp
}
