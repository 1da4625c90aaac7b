//! A small HTTP/1.1 JSON client over hyper, for the CLI (`up`, `inspect`),
//! the chaos harness and the tests: one fresh connection per request, a
//! timeout on every call, and no TLS (the API is served on trusted
//! networks or behind a proxy).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
pub use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;

/// Why a request failed before an answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error talking to {addr}: {message}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// No answer in time.
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout {
        /// The address.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Answer {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client for one node's API.
#[derive(Clone, Debug)]
pub struct Client {
    addr: SocketAddr,
    token: Option<String>,
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl Client {
    /// A client of the node at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }

    /// The same client with a bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same client sending one more header on every request (say, an
    /// `Idempotency-Key` or `If-Match`).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The same client with another timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a request with an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.send_raw(method, path, bytes.map(|b| (b, "application/json")))
            .await
    }

    /// Sends a request with raw body bytes and a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let timeout = self.timeout;
        let fut = async move {
            let http = |message: String| ClientError::Http { addr, message };
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect { addr, source })?;
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| http(e.to_string()))?;
            let conn_task = tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, addr.to_string());
            if let Some(t) = &self.token {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let (payload, ct) = match body {
                Some((b, ct)) => (b, Some(ct)),
                None => (Vec::new(), None),
            };
            if let Some(ct) = ct {
                req = req.header(hyper::header::CONTENT_TYPE, ct);
            }
            for (k, v) in &self.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req
                .body(Full::new(Bytes::from(payload)))
                .map_err(|e| http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| http(e.to_string()))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| http(e.to_string()))?
                .to_bytes();
            conn_task.abort();
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout { addr, timeout })?
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<Answer, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: &serde_json::Value) -> Result<Answer, ClientError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> Result<Answer, ClientError> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(Method::DELETE, path, None).await
    }
}
