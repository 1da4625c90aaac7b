//! The `stripe` provider: Stripe's REST API — PaymentIntents confirmed with
//! a payment-method id from the storefront, captured, cancelled and
//! refunded, each call with an `Idempotency-Key` header.
//!
//! Requests are form-encoded with the secret key as a bearer token; answers
//! are JSON. A card decline comes back as HTTP 402 with the intent inside
//! the error; it is an answer (the attempt failed), not a fault. A 409
//! (the key is still being processed), a 429, a 5xx or no answer at all are
//! `Unavailable`: the same call may be repeated. Other 4xx are `Refused`.
//!
//! `api_base` may be `https://…` (Stripe itself, through rustls with the
//! ring provider and the webpki roots) or `http://127.0.0.1:…` (a local
//! fake of the same shapes, as the tests run).

use std::sync::Arc;

use crdt_core::payment::{CaptureMode, PaymentStatus, RefundStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::provider::{Intent, NewIntent, PayMethod, ProviderError, RefundOutcome};

/// The Stripe adapter.
pub struct Stripe {
    secret: String,
    base: Base,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Where the API is.
struct Base {
    https: bool,
    host: String,
    port: u16,
}

#[derive(Deserialize)]
struct IntentBody {
    id: String,
    status: String,
    #[serde(default)]
    amount_received: u64,
    #[serde(default)]
    last_payment_error: Option<LastError>,
}

#[derive(Deserialize)]
struct LastError {
    decline_code: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    payment_intent: Option<IntentBody>,
}

#[derive(Deserialize)]
struct RefundBody {
    id: String,
    status: String,
}

impl Stripe {
    /// The adapter for `api_base` with the secret key `secret`.
    pub fn new(api_base: &str, secret: String) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = api_base.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = api_base.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{api_base:?} must start with https:// or http://"));
        };
        let hostport = rest.trim_end_matches('/');
        if hostport.contains('/') || hostport.is_empty() {
            return Err(format!(
                "{api_base:?} must be a scheme and a host, with no path"
            ));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port in {api_base:?}"))?,
            ),
            None => (hostport.to_string(), if https { 443 } else { 80 }),
        };
        let tls = https.then(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            config.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
        });
        let tls = match tls {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => return Err(format!("TLS setup: {e}")),
            None => None,
        };
        Ok(Self {
            secret,
            base: Base { https, host, port },
            tls,
        })
    }

    pub(super) async fn create(&self, key: &str, n: &NewIntent) -> Result<Intent, ProviderError> {
        let capture = match n.capture {
            CaptureMode::Immediate => "automatic",
            CaptureMode::OnShip => "manual",
        };
        let form = [
            ("amount", n.amount_minor.to_string()),
            ("currency", n.currency.to_lowercase()),
            ("capture_method", capture.to_string()),
            ("confirmation_method", "manual".to_string()),
            ("payment_method_types[]", "card".to_string()),
            ("metadata[order]", n.order.clone()),
            ("metadata[attempt]", n.attempt.clone()),
        ];
        self.intent_call("/v1/payment_intents", key, &form).await
    }

    pub(super) async fn confirm(
        &self,
        key: &str,
        id: &str,
        method: &PayMethod,
    ) -> Result<Intent, ProviderError> {
        let PayMethod::Token(pm) = method else {
            return Err(ProviderError::Refused(
                "Stripe takes a payment-method id (pm_…), never a card number".into(),
            ));
        };
        let form = [("payment_method", pm.clone())];
        self.intent_call(&format!("/v1/payment_intents/{id}/confirm"), key, &form)
            .await
    }

    pub(super) async fn capture(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        self.intent_call(&format!("/v1/payment_intents/{id}/capture"), key, &[])
            .await
    }

    pub(super) async fn cancel(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        self.intent_call(&format!("/v1/payment_intents/{id}/cancel"), key, &[])
            .await
    }

    pub(super) async fn refund(
        &self,
        key: &str,
        id: &str,
        amount_minor: u64,
    ) -> Result<RefundOutcome, ProviderError> {
        let form = [
            ("payment_intent", id.to_string()),
            ("amount", amount_minor.to_string()),
        ];
        let (status, body) = self.send("POST", "/v1/refunds", Some(key), &form).await?;
        if status != 200 {
            return Err(self
                .fault(status, &body)
                .err()
                .unwrap_or_else(|| ProviderError::Refused(format!("refund answered {status}"))));
        }
        let r: RefundBody = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(format!("unreadable refund: {e}")))?;
        let status = match r.status.as_str() {
            "succeeded" => RefundStatus::Succeeded,
            "failed" | "canceled" => RefundStatus::Failed,
            _ => RefundStatus::Pending,
        };
        Ok(RefundOutcome { id: r.id, status })
    }

    pub(super) async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        let (status, body) = self
            .send("GET", &format!("/v1/payment_intents/{id}"), None, &[])
            .await?;
        self.intent_answer(status, &body)
    }

    async fn intent_call(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<Intent, ProviderError> {
        let (status, body) = self.send("POST", path, Some(key), form).await?;
        self.intent_answer(status, &body)
    }

    /// An intent from an answer: 200, or a 402 decline carrying the intent.
    fn intent_answer(&self, status: u16, body: &[u8]) -> Result<Intent, ProviderError> {
        if status == 200 {
            let i: IntentBody = serde_json::from_slice(body)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable intent: {e}")))?;
            return Ok(intent(i, None));
        }
        match self.fault(status, body)? {
            Some((i, code)) => Ok(intent(i, code)),
            None => Err(ProviderError::Refused(format!("answered {status}"))),
        }
    }

    /// Sorts an error answer: a decline with its intent (`Ok(Some)`), or
    /// the fault.
    fn fault(
        &self,
        status: u16,
        body: &[u8],
    ) -> Result<Option<(IntentBody, Option<String>)>, ProviderError> {
        let e = serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .map(|e| e.error);
        let message = e
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            402 => {
                let e = e.ok_or_else(|| ProviderError::Refused(message.clone()))?;
                let code = e.decline_code.or(e.code);
                match e.payment_intent {
                    Some(mut i) => {
                        // Stripe moves a declined intent back to
                        // requires_payment_method; here the attempt is over.
                        i.status = "failed".into();
                        Ok(Some((i, code)))
                    }
                    None => Err(ProviderError::Refused(message)),
                }
            }
            409 | 429 | 500..=599 => Err(ProviderError::Unavailable(message)),
            _ => Err(ProviderError::Refused(message)),
        }
    }

    /// One request; the status and body of the answer.
    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<(u16, Bytes), ProviderError> {
        let unavailable = |e: String| ProviderError::Unavailable(e);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.base.host)
            .header("authorization", format!("Bearer {}", self.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("stripe-version", "2024-06-20");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::Refused(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((self.base.host.as_str(), self.base.port))
            .await
            .map_err(|e| unavailable(format!("connecting to {}: {e}", self.base.host)))?;
        let _ = tcp.set_nodelay(true);
        let answer = match &self.tls {
            Some(tls) if self.base.https => {
                let name = rustls::pki_types::ServerName::try_from(self.base.host.clone())
                    .map_err(|e| ProviderError::Refused(e.to_string()))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unavailable(format!("TLS: {e}")))?;
                exchange(TokioIo::new(stream), req).await
            }
            _ => exchange(TokioIo::new(tcp), req).await,
        };
        answer.map_err(unavailable)
    }
}

async fn exchange<S>(
    io: TokioIo<S>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn intent(i: IntentBody, decline: Option<String>) -> Intent {
    let status = PaymentStatus::parse(&i.status).unwrap_or(PaymentStatus::Processing);
    let failure = decline.or_else(|| {
        i.last_payment_error
            .and_then(|l| l.decline_code.or(l.code))
            .filter(|_| status == PaymentStatus::Failed)
    });
    Intent {
        id: i.id,
        status,
        captured_minor: i.amount_received,
        failure,
    }
}
