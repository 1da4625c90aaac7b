//! A closed-loop HTTP load generator: N workers, each on one keep-alive
//! connection, each sending its next request as soon as the last answered.
//! It records every latency, so percentiles are exact, and counts errors
//! apart from successes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_node::http_client::Method;
use serde::Serialize;

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// What was sent.
    pub label: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Wall time of the run, seconds.
    pub secs: f64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (non-2xx or transport errors).
    pub errors: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Latency percentiles of successful requests, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
}

/// Builds the i-th request of worker w: method, path, optional JSON body;
/// `None` ends that worker (for runs of a fixed size).
pub type RequestFn = dyn Fn(usize, u64) -> Option<(Method, String, Option<Vec<u8>>)> + Send + Sync;

/// Exact percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn worker(
    addr: SocketAddr,
    token: Option<String>,
    w: usize,
    until: Instant,
    make: Arc<RequestFn>,
    keyed: Option<u64>,
) -> (Vec<f64>, u64) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    let mut lat = Vec::with_capacity(100_000);
    let mut errors = 0u64;
    let mut i = 0u64;
    'outer: while Instant::now() < until {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            errors += 1;
            continue;
        };
        let task = tokio::spawn(conn);
        while Instant::now() < until {
            let Some((method, path, body)) = make(w, i) else {
                task.abort();
                break 'outer;
            };
            i += 1;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, addr.to_string());
            if let Some(t) = &token {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            if body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            if let Some(run) = keyed {
                req = req.header("idempotency-key", format!("{run:x}-{w}-{i}"));
            }
            let Ok(req) = req.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
                errors += 1;
                continue;
            };
            let t = Instant::now();
            match sender.send_request(req).await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    let _ = resp.into_body().collect().await;
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
                Err(_) => {
                    errors += 1;
                    task.abort();
                    continue 'outer;
                }
            }
        }
        task.abort();
    }
    (lat, errors)
}

/// Runs `clients` workers against `addr` for `duration`.
pub async fn run(
    label: &str,
    addr: SocketAddr,
    token: Option<String>,
    clients: usize,
    duration: Duration,
    make: Arc<RequestFn>,
) -> LoadReport {
    run_with(label, addr, token, clients, duration, make, false).await
}

/// Like [`run`]; with `keyed`, every request carries a fresh
/// `Idempotency-Key` (unique to this run, worker and request).
pub async fn run_with(
    label: &str,
    addr: SocketAddr,
    token: Option<String>,
    clients: usize,
    duration: Duration,
    make: Arc<RequestFn>,
    keyed: bool,
) -> LoadReport {
    let run_id = keyed.then(rand::random::<u64>);
    let start = Instant::now();
    let until = start + duration;
    let mut hs = Vec::new();
    for w in 0..clients {
        hs.push(tokio::spawn(worker(
            addr,
            token.clone(),
            w,
            until,
            make.clone(),
            run_id,
        )));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for h in hs {
        if let Ok((l, e)) = h.await {
            all.extend(l);
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    LoadReport {
        label: label.into(),
        clients,
        secs,
        ok: all.len() as u64,
        errors,
        rps: all.len() as f64 / secs,
        p50_ms: percentile(&all, 50.0),
        p90_ms: percentile(&all, 90.0),
        p99_ms: percentile(&all, 99.0),
        max_ms: all.last().copied().unwrap_or(0.0),
    }
}
