//! The HTTP server loop: hyper's HTTP/1.1 connection with the limits a
//! public server needs, instead of `axum::serve`, which sets none.
//!
//! - **Header-read timeout** (`[http] header_read_timeout_ms`, 10 s): a
//!   connection must deliver a whole request head within it. hyper starts
//!   the timer whenever it waits for the next request, so it bounds a
//!   slowloris client and an idle keep-alive connection alike.
//! - **Connection cap** (`max_connections`, 1,024): a connection past the cap
//!   is closed at once (counted in `concord_http_connections_refused_total`)
//!   rather than queued.
//! - **Cap per address** (`max_connections_per_address`, 256): one client
//!   address (an IPv6 /64, as for rate limits) cannot take every slot, so a
//!   slowloris from one host leaves the node serving everyone else while the
//!   header timeout reaps its connections. Trusted proxies are exempt: they
//!   carry everybody.
//! - **Request timeout** (`request_timeout_ms`, 30 s): enforced in the
//!   request gate (`api::middleware`); the event stream is exempt.
//! - **HTTPS** (`tls_cert_file`, `tls_key_file`), optional: rustls with the
//!   ring provider, TLS 1.2 and 1.3, for deployments without a TLS proxy.
//!
//! Shutdown: the listener stops accepting, open connections finish their
//! in-flight request (`graceful_shutdown`), and the caller bounds the wait.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::api::middleware::limit_key;
use crate::shutdown::Shutdown;

/// The server's limits, from `[http]`.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one address.
    pub max_per_address: usize,
    /// Proxies exempt from the per-address cap.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// TLS, when the API is served over HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Connections refused over the cap.
pub const CONNECTIONS_REFUSED: &str = "concord_http_connections_refused_total";
/// Connections open now.
pub const CONNECTIONS_OPEN: &str = "concord_http_connections_open";

/// Open connections by client address; a [`AddressSlot`] gives its one
/// back when the connection ends.
#[derive(Clone, Default)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`PerAddress`].
struct AddressSlot {
    table: PerAddress,
    key: IpAddr,
}

impl PerAddress {
    /// A slot for `key`, unless it already holds `cap` connections.
    fn take(&self, key: IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown`; then lets open connections
/// finish their request and returns when they have (the caller bounds it).
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = limits.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let per_address = PerAddress::default();
    let mut conns = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, usually: back off a moment.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ::metrics::counter!(CONNECTIONS_REFUSED, "cap" => "node").increment(1);
            drop(stream);
            continue;
        };
        let ip = remote.ip();
        let address_slot = if limits.trusted_proxies.iter().any(|n| n.contains(&ip)) {
            None
        } else {
            match per_address.take(limit_key(ip), limits.max_per_address) {
                Some(s) => Some(s),
                None => {
                    ::metrics::counter!(CONNECTIONS_REFUSED, "cap" => "address").increment(1);
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, sd, header_timeout, acceptor) = (
            app.clone(),
            shutdown.clone(),
            limits.header_read_timeout,
            acceptor.clone(),
        );
        conns.spawn(async move {
            let _slots = (slot, address_slot);
            ::metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
            match acceptor {
                Some(a) => {
                    // The handshake is bounded like a request head.
                    match tokio::time::timeout(header_timeout, a.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, remote, app, header_timeout, sd).await,
                        _ => tracing::debug!(%remote, "TLS handshake failed or timed out"),
                    }
                }
                None => connection(stream, remote, app, header_timeout, sd).await,
            }
            ::metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One HTTP/1.1 connection over `io` from `remote`.
async fn connection<I>(
    io: I,
    remote: SocketAddr,
    app: Router,
    header_timeout: Duration,
    shutdown: Shutdown,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        req
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Loads the API's TLS certificate chain and key (PEM), for HTTPS.
pub fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds no PEM certificate", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the API certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
