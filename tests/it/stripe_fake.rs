//! A small fake of Stripe's PaymentIntents API, of our own, speaking the
//! same shapes (form-encoded requests with a bearer secret key and an
//! `Idempotency-Key`, JSON answers, a 402 with the intent inside for a
//! decline, 409 while a key is still being processed), so the `stripe`
//! adapter runs against a real HTTP server. It counts how many times each
//! intent moved money.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const SECRET: &str = "sk_test_fake_0123456789";

#[derive(Default)]
pub struct Books {
    /// Answers by idempotency key.
    answers: HashMap<String, (u16, Value)>,
    in_flight: std::collections::HashSet<String>,
    /// Intents by id.
    pub intents: HashMap<String, Value>,
    /// Times money was captured, per intent.
    pub charges: HashMap<String, u32>,
    /// Requests that carried no or a wrong secret key.
    pub unauthorised: u32,
    /// Requests seen, by path.
    pub calls: Vec<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub books: Arc<Mutex<Books>>,
    /// Delay before a new (not replayed) call is carried out, ms.
    pub latency_ms: Arc<AtomicU64>,
    pub addr: SocketAddr,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            books: Arc::default(),
            latency_ms: Arc::default(),
            addr: listener.local_addr().unwrap(),
        };
        let app = Router::new()
            .route("/v1/payment_intents", post(create))
            .route("/v1/payment_intents/{id}", get(retrieve))
            .route("/v1/payment_intents/{id}/{action}", post(act))
            .route("/v1/refunds", post(refund))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn charges(&self) -> u32 {
        self.books.lock().unwrap().charges.values().sum()
    }
}

fn answer(status: u16, v: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(v)).into_response()
}

/// Runs `work` once per idempotency key: a repeat gets the first answer, a
/// key still in flight gets 409, and a new key waits the latency first.
async fn once(
    fake: &Fake,
    headers: &HeaderMap,
    path: String,
    work: impl FnOnce(&mut Books) -> (u16, Value) + Send + 'static,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let mut b = fake.books.lock().unwrap();
        b.calls.push(path.clone());
        if auth != Some(&format!("Bearer {SECRET}")) {
            b.unauthorised += 1;
            return answer(
                401,
                json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
            );
        }
        let Some(key) = &key else {
            return answer(
                400,
                json!({"error": {"type": "invalid_request_error", "message": "this fake wants an Idempotency-Key on every POST"}}),
            );
        };
        if let Some((s, v)) = b.answers.get(key) {
            return answer(*s, v.clone());
        }
        if !b.in_flight.insert(key.clone()) {
            return answer(
                409,
                json!({"error": {"type": "idempotency_error", "message": "a request with this key is in progress"}}),
            );
        }
    }
    let latency = fake.latency_ms.load(Ordering::Relaxed);
    let books = fake.books.clone();
    let key = key.unwrap_or_default();
    // Carried out even when the caller stops waiting, as at Stripe.
    let job = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(latency)).await;
        let mut b = books.lock().unwrap();
        let (s, v) = work(&mut b);
        b.answers.insert(key.clone(), (s, v.clone()));
        b.in_flight.remove(&key);
        (s, v)
    });
    let (s, v) = job.await.unwrap();
    answer(s, v)
}

async fn create(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    once(&fake, &headers, "create".into(), move |b| {
        let id = format!("pi_fake_{}", b.intents.len() + 1);
        let intent = json!({
            "id": id, "object": "payment_intent", "status": "requires_payment_method",
            "amount": f.get("amount").and_then(|a| a.parse::<u64>().ok()).unwrap_or(0),
            "amount_received": 0,
            "currency": f.get("currency").cloned().unwrap_or_default(),
            "capture_method": f.get("capture_method").cloned().unwrap_or_default(),
            "metadata": {"order": f.get("metadata[order]"), "attempt": f.get("metadata[attempt]")},
        });
        b.intents.insert(id, intent.clone());
        (200, intent)
    })
    .await
}

async fn retrieve(State(fake): State<Fake>, Path(id): Path<String>) -> Response {
    match fake.books.lock().unwrap().intents.get(&id) {
        Some(i) => answer(200, i.clone()),
        None => answer(
            404,
            json!({"error": {"type": "invalid_request_error", "message": "no such intent"}}),
        ),
    }
}

async fn act(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    once(&fake, &headers, action.clone(), move |b| {
        let Some(mut i) = b.intents.get(&id).cloned() else {
            return (404, json!({"error": {"type": "invalid_request_error", "message": "no such intent"}}));
        };
        let amount = i["amount"].as_u64().unwrap_or(0);
        let manual = i["capture_method"] == "manual";
        let status = i["status"].as_str().unwrap_or_default().to_string();
        let mut charge = false;
        let result = match (action.as_str(), status.as_str()) {
            ("confirm", "requires_payment_method") => match f.get("payment_method").map(String::as_str) {
                Some("pm_card_chargeDeclined") => {
                    let e = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                        "message": "Your card was declined.", "payment_intent": i.clone()}});
                    return (402, e);
                }
                Some("pm_card_authenticationRequired") => "requires_action",
                Some(pm) if pm.starts_with("pm_") => if manual { "requires_capture" } else { charge = true; "succeeded" },
                _ => return (400, json!({"error": {"type": "invalid_request_error", "message": "payment_method is required"}})),
            },
            ("confirm", "requires_action") => if manual { "requires_capture" } else { charge = true; "succeeded" },
            ("capture", "requires_capture") => { charge = true; "succeeded" }
            ("cancel", s) if s != "succeeded" && s != "canceled" => "canceled",
            _ => return (400, json!({"error": {"type": "invalid_request_error", "message": format!("cannot {action} an intent that is {status}")}})),
        };
        i["status"] = json!(result);
        if charge {
            i["amount_received"] = json!(amount);
            *b.charges.entry(id.clone()).or_default() += 1;
        }
        b.intents.insert(id.clone(), i.clone());
        (200, i)
    })
    .await
}

async fn refund(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    once(&fake, &headers, "refund".into(), move |b| {
        let pi = f.get("payment_intent").cloned().unwrap_or_default();
        let Some(mut i) = b.intents.get(&pi).cloned() else {
            return (404, json!({"error": {"type": "invalid_request_error", "message": "no such intent"}}));
        };
        let amount: u64 = f.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let left = i["amount_received"].as_u64().unwrap_or(0) - i["amount_refunded"].as_u64().unwrap_or(0);
        if amount == 0 || amount > left {
            return (400, json!({"error": {"type": "invalid_request_error", "message": "amount exceeds what remains"}}));
        }
        i["amount_refunded"] = json!(i["amount_refunded"].as_u64().unwrap_or(0) + amount);
        b.intents.insert(pi.clone(), i);
        (200, json!({"id": format!("re_{pi}_{amount}"), "object": "refund", "status": "succeeded", "amount": amount}))
    })
    .await
}

/// The Stripe fake's intents for `order`.
pub fn intents_of(fake: &Fake, order: &str) -> Vec<Value> {
    fake.books
        .lock()
        .unwrap()
        .intents
        .values()
        .filter(|i| i["metadata"]["order"] == order)
        .cloned()
        .collect()
}
