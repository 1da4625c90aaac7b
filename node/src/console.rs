//! The web console: static assets embedded in the binary and served by every
//! node at `/`, so it works on whichever side of a partition you stand, with
//! nothing to install and no network at run time.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::AppState;

/// `(name, content type, bytes)` of a file of `node/console/`.
macro_rules! embed {
    ($name:literal, $ct:expr) => {
        ($name, $ct, include_bytes!(concat!("../console/", $name)))
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    embed!("index.html", HTML),
    embed!("style.css", CSS),
    embed!("app.js", JS),
    embed!("api.js", JS),
    embed!("dom.js", JS),
    embed!("svg.js", JS),
    embed!("cluster.js", JS),
    embed!("catalog.js", JS),
    embed!("orders.js", JS),
    embed!("chaos.js", JS),
];

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, bytes)) => (
            [
                (header::CONTENT_TYPE, *ct),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Routes of the console: `/` and `/console/{file}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/console/{file}",
            get(|Path(f): Path<String>| async move { asset(&f) }),
        )
}
