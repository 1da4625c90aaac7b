//! Request middleware, in one layer: per-IP rate limiting (429), the global
//! body limit (413, checked on `Content-Length` before reading), and request
//! metrics by route.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::metrics as m;

/// A token bucket per client IP (the peer address of the connection, not a
/// forwarded header a client could forge).
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_sec` requests per second with bursts of `burst`; 0 disables it.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`; `Err(seconds to wait)` when empty.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 100_000 {
            // Forget idle clients rather than grow without bound.
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, last) = b.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_sec).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// Per (route, method): the latency histogram and a counter per status,
/// registered once, so recording a request allocates nothing.
#[derive(Default)]
pub struct RequestMetrics {
    handles: Mutex<HashMap<String, HashMap<Method, RouteMetrics>>>,
}

struct RouteMetrics {
    latency: ::metrics::Histogram,
    by_status: HashMap<u16, ::metrics::Counter>,
}

impl RequestMetrics {
    fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let mut g = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if !g.contains_key(route) {
            g.insert(route.to_string(), HashMap::new());
        }
        let Some(by_method) = g.get_mut(route) else {
            return;
        };
        let rm = by_method.entry(method.clone()).or_insert_with(|| RouteMetrics {
            latency: ::metrics::histogram!(m::HTTP_LATENCY, "route" => route.to_string(), "method" => method.to_string()),
            by_status: HashMap::new(),
        });
        rm.latency.record(seconds);
        rm.by_status
            .entry(status)
            .or_insert_with(|| {
                ::metrics::counter!(m::HTTP_REQUESTS, "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string())
            })
            .increment(1);
    }
}

/// Every request passes here once: the per-IP rate limit (429 with
/// `Retry-After`), the body limit on a declared `Content-Length` (413, before
/// reading), then the handler, then the request's metrics.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let resp = if let Some(wait) = ip.and_then(|ip| state.limiter.check(ip).err()) {
        ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address",
            )
        }
        .into_response()
    } else if declared.is_some_and(|n| n > state.config.http.max_body_bytes as u64) {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than {} bytes",
                state.config.http.max_body_bytes
            ),
        )
        .into_response()
    } else {
        next.run(req).await
    };
    state.request_metrics.record(
        route.as_ref().map(|r| r.as_str()).unwrap_or("unmatched"),
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}
