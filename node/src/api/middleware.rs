//! Request middleware, in one layer: rate limits (429), the global body
//! limit (413, checked on `Content-Length` before reading), the request
//! timeout, request metrics by route, and the security headers every answer
//! carries (CSP, `nosniff`, no framing).
//!
//! Rate limits are GCRA buckets (`governor`), keyed three ways, each from
//! `[http]`: per client address — an IPv6 address counts by its /64, since
//! one subscriber gets a whole /64 and could otherwise mint fresh buckets at
//! will; per token subject, so one customer cannot spread a flood over many
//! addresses; and per route and address for the routes named in
//! `route_limits` (checkout by default). The client address is the
//! connection's peer — or, only when that peer is a configured trusted
//! proxy, the rightmost `X-Forwarded-For` hop that is not itself trusted.
//! Idle keys are pruned every few seconds by [`Limits::prune`], so the maps
//! stay as small as the set of recent clients.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::config::{HttpConfig, RateLimit};
use crate::metrics as m;

/// The address a rate limit counts: an IPv4 address, or an IPv6 /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The client's address: the peer, or — behind a trusted proxy — the
/// rightmost `X-Forwarded-For` hop that is not a trusted proxy itself.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|h| !is_trusted(h))
        .unwrap_or(peer)
}

fn quota(r: RateLimit) -> Option<Quota> {
    let per_sec = NonZeroU32::new(r.per_sec)?;
    let burst = NonZeroU32::new(r.burst).unwrap_or(per_sec);
    Some(Quota::per_second(per_sec).allow_burst(burst))
}

/// Every rate limit of the node.
pub struct Limits {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_token: Option<DefaultKeyedRateLimiter<String>>,
    /// (method, route template, its limiter by address): a handful, so a
    /// scan that allocates nothing beats a map keyed by owned strings.
    by_route: Vec<(Method, String, DefaultKeyedRateLimiter<IpAddr>)>,
    trusted: Vec<ipnet::IpNet>,
}

/// Which limit refused a request, and how long to wait.
pub struct Refusal {
    /// `address`, `token` or `route`.
    pub what: &'static str,
    /// Seconds before a retry can succeed.
    pub retry_after: u64,
}

impl Limits {
    /// The limits of `[http]`. A per-address rate of 0 turns every
    /// per-address limit off, the route limits too.
    pub fn new(http: &HttpConfig) -> Self {
        let by_ip = quota(http.rate).map(RateLimiter::keyed);
        let by_route = if http.rate.on() {
            http.route_limits
                .iter()
                .filter_map(|r| {
                    let q = quota(r.rate)?;
                    let method = Method::from_bytes(r.method.as_bytes()).ok()?;
                    Some((method, r.path.clone(), RateLimiter::keyed(q)))
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            by_ip,
            by_token: quota(http.token_rate).map(RateLimiter::keyed),
            by_route,
            trusted: http.trusted_proxies.clone(),
        }
    }

    fn wait<K: std::hash::Hash + Eq + Clone>(
        l: &DefaultKeyedRateLimiter<K>,
        key: &K,
        what: &'static str,
    ) -> Result<(), Refusal> {
        l.check_key(key).map_err(|not_until| Refusal {
            what,
            retry_after: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
    }

    /// Takes one token of every limit that applies.
    pub fn check(
        &self,
        ip: IpAddr,
        subject: Option<&str>,
        method: &Method,
        route: Option<&str>,
    ) -> Result<(), Refusal> {
        let key = limit_key(ip);
        if let Some(l) = &self.by_ip {
            Self::wait(l, &key, "address")?;
        }
        if let Some(route) = route {
            let limit = self
                .by_route
                .iter()
                .find(|(m, p, _)| m == method && p == route);
            if let Some((_, _, l)) = limit {
                Self::wait(l, &key, "route")?;
            }
        }
        if let (Some(l), Some(sub)) = (&self.by_token, subject) {
            Self::wait(l, &sub.to_string(), "token")?;
        }
        Ok(())
    }

    /// Forgets keys whose buckets are full again (idle clients).
    pub fn prune(&self) {
        if let Some(l) = &self.by_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.by_token {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for (_, _, l) in &self.by_route {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys held, for metrics and tests.
    pub fn len(&self) -> usize {
        self.by_ip.as_ref().map(|l| l.len()).unwrap_or(0)
            + self.by_token.as_ref().map(|l| l.len()).unwrap_or(0)
            + self.by_route.iter().map(|(_, _, l)| l.len()).sum::<usize>()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a limit counts by token subject, so the gate verifies the
    /// token only when something will use its subject.
    pub fn by_subject(&self) -> bool {
        self.by_token.is_some()
    }

    /// The trusted proxies.
    pub fn trusted(&self) -> &[ipnet::IpNet] {
        &self.trusted
    }
}

/// The methods metrics name; any other (made up) method is `OTHER`, so a
/// client cannot add series to `/metrics`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Per (route, method): the latency histogram and a counter per status,
/// registered once, so recording a request allocates nothing. Routes are
/// the router's templates (or `unmatched`) and methods a fixed set, so the
/// number of series is bounded by the API, never by clients.
#[derive(Default)]
pub struct RequestMetrics {
    handles: Mutex<HashMap<String, HashMap<&'static str, RouteMetrics>>>,
}

struct RouteMetrics {
    latency: ::metrics::Histogram,
    by_status: HashMap<u16, ::metrics::Counter>,
}

impl RequestMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let mut g = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        // Look up by `&str` first: the steady state allocates nothing.
        if !g.contains_key(route) {
            g.insert(route.to_string(), HashMap::new());
        }
        let by_method = g.get_mut(route).expect("inserted above");
        let rm = by_method
            .entry(method)
            .or_insert_with(|| RouteMetrics {
                latency: ::metrics::histogram!(m::HTTP_LATENCY, "route" => route.to_string(), "method" => method),
                by_status: HashMap::new(),
            });
        rm.latency.record(seconds);
        rm.by_status
            .entry(status)
            .or_insert_with(|| {
                ::metrics::counter!(m::HTTP_REQUESTS, "route" => route.to_string(), "method" => method, "status" => status.to_string())
            })
            .increment(1);
    }
}

/// The bearer token's subject, when the token checks out (the handler
/// refuses a bad one with 401 anyway).
fn subject(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))?;
    state
        .tokens
        .verify(token.trim(), crate::clock::now_secs())
        .ok()
        .map(|c| c.sub)
}

/// The routes the request timeout does not apply to: streams.
fn streams(route: Option<&str>) -> bool {
    route == Some("/api/v1/events")
}

/// Every request passes here once: rate limits (429 with `Retry-After`),
/// the body limit on a declared `Content-Length` (413, before reading), the
/// handler under the request timeout (503 `timeout`; a write it carried out
/// is still durable and published), then the request's metrics.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str);
    let method = req.method().clone();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limited = peer.and_then(|peer| {
        let ip = client_ip(peer, req.headers(), state.limiter.trusted());
        let sub = if state.limiter.by_subject() {
            subject(&state, req.headers())
        } else {
            None
        };
        state
            .limiter
            .check(ip, sub.as_deref(), &method, route)
            .err()
    });
    let resp = if let Some(r) = limited {
        ::metrics::counter!(m::RATE_LIMITED, "limit" => r.what).increment(1);
        ApiError {
            retry_after: Some(r.retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests (per {})", r.what),
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
    } else if streams(route) {
        next.run(req).await
    } else {
        match tokio::time::timeout(state.config.http.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::unavailable(
                "timeout",
                "the request took longer than this node allows; a write it carried out stands",
            )
            .into_response(),
        }
    };
    state.request_metrics.record(
        route.unwrap_or("unmatched"),
        method_label(&method),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    let mut resp = resp;
    secure_headers(resp.headers_mut());
    resp
}

/// Headers on every answer: no content sniffing; and for the console (on
/// every answer, which costs nothing on JSON) a content security policy
/// that allows only this origin's own scripts, styles and requests, no
/// framing (clickjacking), and no referrer to other sites.
fn secure_headers(h: &mut HeaderMap) {
    use axum::http::HeaderValue;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(limit_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger,
            "a forged header is ignored"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&m), "OTHER");
        assert_eq!(method_label(&Method::GET), "GET");
    }
}
