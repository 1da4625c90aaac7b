//! `[http]` and `[limits]` of `cluster.toml`: the HTTP server's timeouts and
//! caps, rate limits (per client address, per token, per route), trusted
//! reverse proxies, optional HTTPS; and fair use of carts and orders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[http]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Largest request body, bytes.
    pub max_body_bytes: Option<usize>,
    /// Requests per second allowed per client address (0 turns every
    /// per-address limit off, the route limits too).
    pub rate_limit_per_sec: Option<u32>,
    /// Burst allowed above the rate, per client address.
    pub rate_limit_burst: Option<u32>,
    /// Requests per second allowed per token subject (0: off).
    pub token_rate_limit_per_sec: Option<u32>,
    /// Burst per token subject.
    pub token_rate_limit_burst: Option<u32>,
    /// Limits of single routes, per client address: `"POST /api/v1/orders" =
    /// { per_sec = 20, burst = 40 }`.
    pub route_limits: Option<BTreeMap<String, RawRateLimit>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (CIDRs).
    pub trusted_proxies: Option<Vec<String>>,
    /// Longest wait for a complete request head (also bounds idle
    /// keep-alive connections), ms.
    pub header_read_timeout_ms: Option<u64>,
    /// Longest a request may take (the event stream is exempt), ms.
    pub request_timeout_ms: Option<u64>,
    /// Most connections open at once.
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address (an IPv6
    /// /64); trusted proxies are exempt.
    pub max_connections_per_address: Option<usize>,
    /// Most event streams open at once.
    pub max_event_subscribers: Option<usize>,
    /// PEM certificate chain for HTTPS on the API (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS on the API.
    pub tls_key_file: Option<PathBuf>,
    /// Origins whose browsers may call the API (CORS); none by default.
    pub cors_origins: Option<Vec<String>>,
}

/// One rate as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests per second.
    pub per_sec: u32,
    /// Burst above the rate.
    pub burst: Option<u32>,
}

/// A rate: `per_sec` sustained, `burst` at once; `per_sec == 0` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second.
    pub per_sec: u32,
    /// Burst.
    pub burst: u32,
}

impl RateLimit {
    /// Whether the limit is on.
    pub fn on(&self) -> bool {
        self.per_sec > 0
    }
}

/// A limit for one route (method and path template), per client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteLimit {
    /// The method, upper case.
    pub method: String,
    /// The route's path template, as the router knows it
    /// (`/api/v1/carts/{cartId}/items`).
    pub path: String,
    /// Its rate.
    pub rate: RateLimit,
}

/// The validated `[http]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Per client address (an IPv6 address counts by its /64).
    pub rate: RateLimit,
    /// Per token subject.
    pub token_rate: RateLimit,
    /// Per route and client address.
    pub route_limits: Vec<RouteLimit>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Header-read (and idle) timeout.
    pub header_read_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Connection cap.
    pub max_connections: usize,
    /// Connection cap per client address.
    pub max_connections_per_address: usize,
    /// Event-stream cap.
    pub max_event_subscribers: usize,
    /// HTTPS certificate and key, resolved against the file's folder.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Origins allowed to call the API from a browser (`scheme://host[:port]`).
    pub cors_origins: Vec<String>,
}

/// The checkout route, limited by default: it is the most expensive write
/// (it may ask every peer for stock rights).
pub const CHECKOUT_ROUTE: &str = "POST /api/v1/orders";

/// Validates `http.cors_origins`: each an exact origin, `http(s)://host`
/// with an optional port and nothing after it (`*` is refused: an API that
/// takes bearer tokens names the shops it serves).
fn cors_origins(
    raw: &[String],
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, o)| {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && r.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
            });
            if ok {
                Ok(o.to_ascii_lowercase())
            } else {
                Err(invalid(
                    &format!("http.cors_origins[{i}]"),
                    format!("{o:?} is not an origin such as \"https://shop.example.com\" (scheme and host, no path, no *)"),
                ))
            }
        })
        .collect()
}

pub(super) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    invalid: &dyn Fn(&str, String) -> ConfigError,
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(field, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

impl HttpConfig {
    /// Validates `[http]` (absent: the defaults); relative paths are
    /// resolved against `base`.
    pub fn validate(
        raw: Option<&RawHttp>,
        base: &Path,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let empty = RawHttp::default();
        let h = raw.unwrap_or(&empty);
        let max_body_bytes = in_range(
            invalid,
            "http.max_body_bytes",
            h.max_body_bytes.unwrap_or(1 << 20),
            1024,
            64 << 20,
        )?;
        let rate = RateLimit {
            per_sec: h.rate_limit_per_sec.unwrap_or(2_000),
            burst: h.rate_limit_burst.unwrap_or(4_000).max(1),
        };
        let token_rate = RateLimit {
            per_sec: h.token_rate_limit_per_sec.unwrap_or(1_000),
            burst: h.token_rate_limit_burst.unwrap_or(2_000).max(1),
        };
        let mut route_limits = Vec::new();
        let mut raw_routes: BTreeMap<String, (u32, Option<u32>)> = BTreeMap::new();
        raw_routes.insert(CHECKOUT_ROUTE.into(), (20, Some(40)));
        for (k, v) in h.route_limits.iter().flatten() {
            raw_routes.insert(k.clone(), (v.per_sec, v.burst));
        }
        for (k, (per_sec, burst)) in raw_routes {
            let field = format!("http.route_limits.{k:?}");
            let (method, path) = k.split_once(' ').ok_or_else(|| {
                invalid(
                    &field,
                    "a route is \"METHOD /path\", e.g. \"POST /api/v1/orders\"".into(),
                )
            })?;
            let method = method.trim().to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                return Err(invalid(&field, format!("unknown method {method:?}")));
            }
            let path = path.trim();
            if !path.starts_with('/') {
                return Err(invalid(&field, "the path must start with /".into()));
            }
            route_limits.push(RouteLimit {
                method,
                path: path.to_string(),
                rate: RateLimit {
                    per_sec,
                    burst: burst.unwrap_or(per_sec.saturating_mul(2)).max(1),
                },
            });
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in h.trusted_proxies.iter().flatten().enumerate() {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        &format!("http.trusted_proxies[{i}]"),
                        format!("{p:?} is not an address or a CIDR such as 10.0.0.0/8"),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let ms = |field: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(in_range(
                invalid,
                field,
                v.unwrap_or(default),
                100,
                3_600_000,
            )?))
        };
        let tls = match (&h.tls_cert_file, &h.tls_key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls_key_file",
                    "needed with tls_cert_file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls_cert_file",
                    "needed with tls_key_file".into(),
                ));
            }
        };
        Ok(Self {
            max_body_bytes,
            rate,
            token_rate,
            route_limits,
            trusted_proxies,
            header_read_timeout: ms(
                "http.header_read_timeout_ms",
                h.header_read_timeout_ms,
                10_000,
            )?,
            request_timeout: ms("http.request_timeout_ms", h.request_timeout_ms, 30_000)?,
            max_connections: in_range(
                invalid,
                "http.max_connections",
                h.max_connections.unwrap_or(1_024),
                1,
                1_000_000,
            )?,
            max_connections_per_address: in_range(
                invalid,
                "http.max_connections_per_address",
                h.max_connections_per_address.unwrap_or(256),
                1,
                1_000_000,
            )?,
            max_event_subscribers: in_range(
                invalid,
                "http.max_event_subscribers",
                h.max_event_subscribers.unwrap_or(256),
                1,
                100_000,
            )?,
            tls,
            cors_origins: cors_origins(h.cors_origins.as_deref().unwrap_or(&[]), invalid)?,
        })
    }
}

/// `[limits]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Most lines one cart may hold.
    pub max_cart_lines: Option<usize>,
    /// Most placed, unpaid orders one customer may have open.
    pub max_open_orders_per_customer: Option<usize>,
    /// Seconds after which the seller cancels an unpaid order (0: never).
    pub unpaid_order_ttl_secs: Option<u64>,
    /// Days after its last change when a cart is removed (0: never).
    pub cart_ttl_days: Option<u64>,
    /// Seconds an idempotency record is kept (default 24 h).
    pub idempotency_window_secs: Option<u64>,
}

/// Fair use of carts and orders: what one customer may tie up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FairUse {
    /// Most lines per cart.
    pub max_cart_lines: usize,
    /// Most open unpaid orders per customer.
    pub max_open_orders_per_customer: usize,
    /// When an unpaid order expires (`None`: never).
    pub unpaid_order_ttl: Option<Duration>,
    /// When an untouched cart is removed (`None`: never).
    pub cart_ttl: Option<Duration>,
    /// How long an idempotency record is kept.
    pub idempotency_window: Duration,
}

impl FairUse {
    /// Validates `[limits]` (absent: the defaults).
    pub fn validate(
        raw: Option<&RawLimits>,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let empty = RawLimits::default();
        let l = raw.unwrap_or(&empty);
        let ttl = l.unpaid_order_ttl_secs.unwrap_or(1_800);
        let cart_days = l.cart_ttl_days.unwrap_or(30);
        Ok(Self {
            max_cart_lines: in_range(
                invalid,
                "limits.max_cart_lines",
                l.max_cart_lines.unwrap_or(100),
                1,
                10_000,
            )?,
            max_open_orders_per_customer: in_range(
                invalid,
                "limits.max_open_orders_per_customer",
                l.max_open_orders_per_customer.unwrap_or(20),
                1,
                100_000,
            )?,
            unpaid_order_ttl: (ttl > 0)
                .then(|| {
                    in_range(
                        invalid,
                        "limits.unpaid_order_ttl_secs",
                        ttl,
                        10,
                        365 * 86_400,
                    )
                })
                .transpose()?
                .map(Duration::from_secs),
            cart_ttl: (cart_days > 0)
                .then(|| in_range(invalid, "limits.cart_ttl_days", cart_days, 1, 3_650))
                .transpose()?
                .map(|d| Duration::from_secs(d * 86_400)),
            // Under a minute is only for tests; 24 h is what clients expect.
            idempotency_window: Duration::from_secs(in_range(
                invalid,
                "limits.idempotency_window_secs",
                l.idempotency_window_secs.unwrap_or(86_400),
                60,
                30 * 86_400,
            )?),
        })
    }
}
