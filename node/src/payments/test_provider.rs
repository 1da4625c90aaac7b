//! The `test` provider: in process, deterministic, and shaped like Stripe.
//!
//! The card number decides, as in Stripe's published test cards:
//! `4242424242424242` succeeds, `4000000000000002` is declined
//! (`card_declined`), `4000000000009995` has `insufficient_funds`, and
//! `4000002760003184` requires authentication (the next confirmation of
//! that intent — Stripe's manual-confirmation flow after the shopper
//! authenticated — succeeds). Any other valid number succeeds.
//!
//! It keeps its own ledger, as a real provider does, in a sled database of
//! its own beside the node's store: every answer under its idempotency key,
//! and every intent with the number of times money moved for it. A call
//! repeated with a key already answered gets that answer at once; a call
//! whose key is still being carried out gets `Unavailable` (Stripe's 409).
//! Calls run detached, so a caller that stops waiting (a timeout) does not
//! stop the charge — as with a remote provider. Latency and outages are
//! injectable (`[payments] test_latency_ms`, `test_fail_every`). The ledger
//! is flushed before each answer: it survives a process kill, though not
//! a power cut (sled's flush, see `notes/dependencies.md`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crdt_core::payment::{CaptureMode, PaymentStatus, RefundStatus};
use serde::{Deserialize, Serialize};

use super::provider::{Intent, NewIntent, PayMethod, ProviderError, RefundOutcome};

/// One intent in the ledger.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerIntent {
    /// The intent as a caller sees it.
    pub intent: Intent,
    /// Minor units asked for.
    pub amount_minor: u64,
    /// When to capture.
    pub capture: CaptureMode,
    /// The order, from the metadata.
    pub order: String,
    /// The attempt, from the metadata.
    pub attempt: String,
    /// Times money was captured for it (more than one is a double charge).
    pub charges: u32,
    /// Minor units refunded.
    pub refunded_minor: u64,
    /// Whether the card asked for authentication on the first confirmation.
    pub authenticating: bool,
}

/// The in-process provider.
pub struct TestProvider {
    db: sled::Db,
    latency: Duration,
    fail_every: u32,
    calls: AtomicU64,
    in_flight: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Calls are carried out one at a time, as a provider serialises the
    /// changes to one intent (a read-modify-write of the ledger).
    serial: Arc<std::sync::Mutex<()>>,
}

/// The answers the ledger stores under idempotency keys.
#[derive(Clone, Serialize, Deserialize)]
enum Answer {
    Intent(Intent),
    Refund(RefundOutcome),
    Refused(String),
}

const ANSWERS: &str = "answers";
const INTENTS: &str = "intents";

impl TestProvider {
    /// Opens (or creates) the ledger under `dir`.
    pub fn open(dir: &Path, latency: Duration, fail_every: u32) -> Result<Self, sled::Error> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(Self {
            db,
            latency,
            fail_every,
            calls: AtomicU64::new(0),
            in_flight: Arc::new(std::sync::Mutex::new(HashSet::new())),
            serial: Arc::new(std::sync::Mutex::new(())),
        })
    }

    /// Every intent in the ledger, for tests and the admin's view.
    pub fn ledger(&self) -> Vec<LedgerIntent> {
        self.db
            .open_tree(INTENTS)
            .map(|t| {
                t.iter()
                    .values()
                    .filter_map(|v| v.ok())
                    .filter_map(|v| postcard::from_bytes(&v).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) async fn create(&self, key: &str, new: &NewIntent) -> Result<Intent, ProviderError> {
        let new = new.clone();
        // The id follows from the key: the same create always names the
        // same intent.
        let id = format!("pi_test_{}", &blake3_hex(key)[..20]);
        self.run(key, move |l| {
            let intent = Intent {
                id,
                status: PaymentStatus::RequiresPaymentMethod,
                captured_minor: 0,
                failure: None,
            };
            l.put(&LedgerIntent {
                intent: intent.clone(),
                amount_minor: new.amount_minor,
                capture: new.capture,
                order: new.order.clone(),
                attempt: new.attempt.clone(),
                charges: 0,
                refunded_minor: 0,
                authenticating: false,
            })?;
            Ok(Answer::Intent(intent))
        })
        .await
        .and_then(intent)
    }

    pub(super) async fn confirm(
        &self,
        key: &str,
        id: &str,
        method: &PayMethod,
    ) -> Result<Intent, ProviderError> {
        let number = match method {
            PayMethod::Card(c) => c.number.clone(),
            PayMethod::Token(_) => {
                return Err(ProviderError::Refused(
                    "the test provider takes cards, not payment-method ids".into(),
                ));
            }
        };
        let id = id.to_string();
        self.run(key, move |l| {
            let mut i = l.get(&id)?;
            match i.intent.status {
                PaymentStatus::RequiresPaymentMethod => {}
                // The shopper authenticated: this confirmation completes it.
                PaymentStatus::RequiresAction if i.authenticating => {
                    authorise(&mut i);
                    l.put(&i)?;
                    return Ok(Answer::Intent(i.intent));
                }
                s => {
                    return Ok(Answer::Refused(format!(
                        "intent {id} is {} and cannot be confirmed",
                        s.as_str()
                    )));
                }
            }
            match number.as_str() {
                "4000000000000002" => decline(&mut i, "card_declined"),
                "4000000000009995" => decline(&mut i, "insufficient_funds"),
                "4000002760003184" => {
                    i.authenticating = true;
                    i.intent.status = PaymentStatus::RequiresAction;
                }
                _ => authorise(&mut i),
            }
            l.put(&i)?;
            Ok(Answer::Intent(i.intent))
        })
        .await
        .and_then(intent)
    }

    pub(super) async fn capture(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        let id = id.to_string();
        self.run(key, move |l| {
            let mut i = l.get(&id)?;
            if i.intent.status != PaymentStatus::RequiresCapture {
                return Ok(Answer::Refused(format!(
                    "intent {id} is {} and cannot be captured",
                    i.intent.status.as_str()
                )));
            }
            i.intent.status = PaymentStatus::Succeeded;
            i.intent.captured_minor = i.amount_minor;
            i.charges += 1;
            l.put(&i)?;
            Ok(Answer::Intent(i.intent))
        })
        .await
        .and_then(intent)
    }

    pub(super) async fn cancel(&self, key: &str, id: &str) -> Result<Intent, ProviderError> {
        let id = id.to_string();
        self.run(key, move |l| {
            let mut i = l.get(&id)?;
            if i.intent.status == PaymentStatus::Succeeded {
                return Ok(Answer::Refused(format!(
                    "intent {id} is captured: refund it instead"
                )));
            }
            if !i.intent.status.is_dead() {
                i.intent.status = PaymentStatus::Canceled;
            }
            l.put(&i)?;
            Ok(Answer::Intent(i.intent))
        })
        .await
        .and_then(intent)
    }

    pub(super) async fn refund(
        &self,
        key: &str,
        id: &str,
        amount_minor: u64,
    ) -> Result<RefundOutcome, ProviderError> {
        let id = id.to_string();
        let answer = self
            .run(key, move |l| {
                let mut i = l.get(&id)?;
                let left = i.intent.captured_minor - i.refunded_minor;
                if amount_minor == 0 || amount_minor > left {
                    return Ok(Answer::Refused(format!(
                        "a refund of {amount_minor} exceeds the {left} left of intent {id}"
                    )));
                }
                i.refunded_minor += amount_minor;
                let n = i.refunded_minor;
                l.put(&i)?;
                Ok(Answer::Refund(RefundOutcome {
                    id: format!("re_{}_{n}", &i.intent.id),
                    status: RefundStatus::Succeeded,
                }))
            })
            .await?;
        match answer {
            Answer::Refund(r) => Ok(r),
            Answer::Refused(m) => Err(ProviderError::Refused(m)),
            Answer::Intent(_) => Err(ProviderError::Refused("not a refund".into())),
        }
    }

    pub(super) async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        Ledger::new(&self.db)?.get(id).map(|i| i.intent)
    }

    /// Carries out `work` once per key: a repeated key gets the stored
    /// answer; a key in flight is refused; a new key waits the injected
    /// latency, may fail as an outage, then runs detached from the caller.
    async fn run(
        &self,
        key: &str,
        work: impl FnOnce(&Ledger) -> Result<Answer, ProviderError> + Send + 'static,
    ) -> Result<Answer, ProviderError> {
        let ledger = Ledger::new(&self.db)?;
        if let Some(a) = ledger.answer(key)? {
            return Ok(a);
        }
        {
            let mut flying = self.in_flight.lock().expect("in-flight lock");
            if !flying.insert(key.to_string()) {
                return Err(ProviderError::Unavailable(format!(
                    "a request with idempotency key {key} is still being processed"
                )));
            }
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every > 0 && n.is_multiple_of(u64::from(self.fail_every)) {
            self.in_flight.lock().expect("in-flight lock").remove(key);
            return Err(ProviderError::Unavailable("injected outage".into()));
        }
        let (latency, key, flying, db, serial) = (
            self.latency,
            key.to_string(),
            self.in_flight.clone(),
            self.db.clone(),
            self.serial.clone(),
        );
        let job = tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            let carried_out = async {
                let ledger = Ledger::new(&db)?;
                let answer = {
                    let _one = serial.lock().unwrap_or_else(|p| p.into_inner());
                    let answer = work(&ledger)?;
                    ledger.remember(&key, &answer)?;
                    answer
                };
                db.flush_async().await.map_err(fault)?;
                Ok(answer)
            }
            .await;
            // Whatever happened, the key is no longer in flight.
            flying.lock().expect("in-flight lock").remove(&key);
            carried_out
        });
        job.await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?
    }
}

fn authorise(i: &mut LedgerIntent) {
    match i.capture {
        CaptureMode::Immediate => {
            i.intent.status = PaymentStatus::Succeeded;
            i.intent.captured_minor = i.amount_minor;
            i.charges += 1;
        }
        CaptureMode::OnShip => i.intent.status = PaymentStatus::RequiresCapture,
    }
}

fn decline(i: &mut LedgerIntent, code: &str) {
    i.intent.status = PaymentStatus::Failed;
    i.intent.failure = Some(code.to_string());
}

fn intent(a: Answer) -> Result<Intent, ProviderError> {
    match a {
        Answer::Intent(i) => Ok(i),
        Answer::Refused(m) => Err(ProviderError::Refused(m)),
        Answer::Refund(_) => Err(ProviderError::Refused("not an intent".into())),
    }
}

fn fault(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("test provider ledger: {e}"))
}

fn blake3_hex(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

/// The ledger's two trees.
struct Ledger {
    answers: sled::Tree,
    intents: sled::Tree,
}

impl Ledger {
    fn new(db: &sled::Db) -> Result<Self, ProviderError> {
        Ok(Self {
            answers: db.open_tree(ANSWERS).map_err(fault)?,
            intents: db.open_tree(INTENTS).map_err(fault)?,
        })
    }

    fn answer(&self, key: &str) -> Result<Option<Answer>, ProviderError> {
        match self.answers.get(key).map_err(fault)? {
            Some(v) => Ok(Some(postcard::from_bytes(&v).map_err(fault)?)),
            None => Ok(None),
        }
    }

    fn remember(&self, key: &str, a: &Answer) -> Result<(), ProviderError> {
        let v = postcard::to_allocvec(a).map_err(fault)?;
        self.answers.insert(key, v).map_err(fault)?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<LedgerIntent, ProviderError> {
        let v = self
            .intents
            .get(id)
            .map_err(fault)?
            .ok_or_else(|| ProviderError::Refused(format!("no such intent: {id}")))?;
        postcard::from_bytes(&v).map_err(fault)
    }

    fn put(&self, i: &LedgerIntent) -> Result<(), ProviderError> {
        let v = postcard::to_allocvec(i).map_err(fault)?;
        self.intents
            .insert(i.intent.id.as_str(), v)
            .map_err(fault)?;
        Ok(())
    }
}
