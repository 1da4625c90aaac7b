//! Conditional requests: `ETag` on every JSON answer to a GET, derived from
//! the bytes of the representation itself — so it changes whenever anything
//! shown changes (a product's stock, say, which its digest leaf does not
//! cover) and never otherwise — `If-None-Match` → 304, and `If-Match` on a
//! PATCH, PUT or DELETE → 412 when the resource changed since.
//!
//! The resource a write is checked against is `/api/v1/{products|carts|
//! orders}/{id}`, the first four segments of its path (a price PUT or a
//! cart-line DELETE changes the product or the cart). The check is made on
//! the node that takes the request, against its replica: it is not
//! linearizable across nodes, since two nodes may each accept a write
//! conditioned on the same ETag. On one node, conditional writes are
//! serialised, so two writes with the same `If-Match` never both pass.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::error::ApiError;

/// The strong ETag of a representation.
pub fn etag_of(body: &[u8]) -> String {
    let h = blake3::hash(body);
    let hex: String = h.as_bytes()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// Whether a list header (`If-None-Match`, `If-Match`) names `etag` or `*`.
fn names(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The resource path a write under `path` changes, if it is one of ours.
pub fn resource_of(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // ["", "api", "v1", collection, id, ...]
    match segs.as_slice() {
        [
            "",
            "api",
            "v1",
            c @ ("products" | "carts" | "orders"),
            id,
            ..,
        ] if !id.is_empty() => Some(format!("/api/v1/{c}/{id}")),
        _ => None,
    }
}

/// Serialises the conditional writes of this node.
static CONDITIONAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The layer. `app` is the router itself, to read the current
/// representation of a resource an `If-Match` names.
pub async fn layer(app: Router, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        let inm = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let resp = next.run(req).await;
        return tag(resp, inm.as_deref()).await;
    }
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(want) = if_match else {
        return next.run(req).await;
    };
    if !matches!(method, Method::PATCH | Method::PUT | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(resource) = resource_of(req.uri().path()) else {
        return ApiError::bad_request(
            "invalid_precondition",
            "If-Match applies to products, carts and orders",
        )
        .into_response();
    };
    let _turn = CONDITIONAL.lock().await;
    let mut probe = Request::new(Body::empty());
    *probe.uri_mut() = match resource.parse() {
        Ok(u) => u,
        Err(_) => return ApiError::not_found("not_found", "no such resource").into_response(),
    };
    for h in [header::AUTHORIZATION, header::HOST] {
        if let Some(v) = req.headers().get(&h) {
            probe.headers_mut().insert(h, v.clone());
        }
    }
    let current = match app.oneshot(probe).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = current.status();
    if !status.is_success() {
        // The resource is gone, or not this caller's: that answer stands.
        return current;
    }
    let body = axum::body::to_bytes(current.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let now = etag_of(&body);
    if !names(&want, &now) {
        let mut r = ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("{resource} changed: its ETag is now {now}; read it again and retry"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&now) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    next.run(req).await
}

/// Adds the ETag to a JSON answer, or turns it into a 304.
async fn tag(resp: Response, if_none_match: Option<&str>) -> Response {
    if resp.status() != StatusCode::OK || !is_json(resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let etag = etag_of(&bytes);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    if if_none_match.is_some_and(|l| names(l, &etag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_the_bytes() {
        assert_eq!(etag_of(b"{}"), etag_of(b"{}"));
        assert_ne!(etag_of(b"{\"stock\":1}"), etag_of(b"{\"stock\":2}"));
        assert!(etag_of(b"x").starts_with('"') && etag_of(b"x").ends_with('"'));
    }

    #[test]
    fn lists_match_exactly_weakly_or_by_star() {
        let e = "\"abc\"";
        assert!(names("\"abc\"", e));
        assert!(names("\"x\", W/\"abc\"", e));
        assert!(names("*", e));
        assert!(!names("\"abd\"", e));
        assert!(!names("abc", e));
    }

    #[test]
    fn writes_map_to_their_resource() {
        assert_eq!(
            resource_of("/api/v1/products/p1/price").as_deref(),
            Some("/api/v1/products/p1")
        );
        assert_eq!(
            resource_of("/api/v1/carts/c1/items/p2").as_deref(),
            Some("/api/v1/carts/c1")
        );
        assert_eq!(
            resource_of("/api/v1/orders/o1").as_deref(),
            Some("/api/v1/orders/o1")
        );
        assert_eq!(resource_of("/api/v1/inventory/SKU/restock"), None);
        assert_eq!(resource_of("/api/v1/products"), None);
    }
}
