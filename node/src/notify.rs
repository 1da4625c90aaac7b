//! Order e-mails: the customer hears when an order is placed, shipped or
//! cancelled, through the SMTP relay of `[notifications]` (off by default).
//!
//! The order's seller sends them — the node that already decides its
//! ships and cancels — to the account's e-mail (or the `email` given at
//! checkout for a customer without an account). The notices an order calls
//! for follow from its replicated state ([`OrderEntry::notices`]); the ones
//! sent are recorded in it (`Op::Notified`) once the relay accepted them.
//! So the outbox is the order itself: durable, replicated, and complete
//! after a restart. A crash between the relay's acceptance and the record
//! sends that notice again — at least once — with the same `Message-ID`
//! (`<order.notice@concord>`), by which mail clients drop the duplicate.
//! Orders placed more than [`WINDOW`] ago are left alone, so turning the
//! e-mails on does not mail every old customer.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crdt_core::order::OrderEntry;
use crdt_core::{Key, Op, OpError, OrderId, Replica};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::broadcast;

use crate::config::NotificationsConfig;
use crate::engine::{Engine, Event, WriteError};
use crate::shutdown::Shutdown;

/// Orders placed longer ago than this get no e-mails.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest wait between tries of an order whose mail keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The e-mail sender of one node.
pub struct Notifier {
    engine: Arc<Engine>,
    relay: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// One e-mail to send.
struct Mail {
    to: String,
    notice: &'static str,
    subject: String,
    body: String,
}

impl Notifier {
    /// The sender for `config`, or `None` when e-mails are off.
    pub fn new(config: &NotificationsConfig, engine: Arc<Engine>) -> anyhow::Result<Option<Self>> {
        let Some((host, port)) = &config.relay else {
            return Ok(None);
        };
        let relay = if config.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?
                .port(*port)
                .build()
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
                .port(*port)
                .build()
        };
        Ok(Some(Self {
            engine,
            relay,
            from: config.from.parse()?,
        }))
    }

    /// Sends what is due until shutdown: at start for every recent order,
    /// then whenever a change touches an order.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut rx = self.engine.subscribe();
        let mut pending: BTreeSet<OrderId> = self.engine.peek(|r| {
            let now = crate::clock::now_ms();
            r.state()
                .orders
                .iter()
                .filter(|(id, _)| !self.due(r, id, now).is_empty())
                .map(|(id, _)| *id)
                .collect()
        });
        let mut backoff: HashMap<OrderId, (Instant, Duration)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(Event::Applied(a, _)) => pending.extend(order_keys(&a.changed)),
                    Ok(Event::Repaired(keys)) => pending.extend(order_keys(&keys)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        pending.extend(self.engine.peek(|r| r.state().orders.iter().map(|(id, _)| *id).collect::<Vec<_>>()));
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {}
                _ = shutdown.wait() => break,
            }
            let now = Instant::now();
            let ready: Vec<OrderId> = pending
                .iter()
                .filter(|o| backoff.get(o).is_none_or(|(at, _)| *at <= now))
                .copied()
                .collect();
            for order in ready {
                match self.deliver(order).await {
                    Ok(()) => {
                        pending.remove(&order);
                        backoff.remove(&order);
                    }
                    Err(e) => {
                        let delay = backoff
                            .get(&order)
                            .map_or(Duration::from_secs(1), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                        tracing::warn!(%order, error = %e, retry_in_ms = delay.as_millis() as u64, "an order e-mail was not sent; will retry");
                        backoff.insert(order, (now + delay, delay));
                    }
                }
            }
        }
    }

    /// The mails `order` calls for that this node must send and has not.
    fn due(&self, r: &Replica, order: &OrderId, now_ms: u64) -> Vec<Mail> {
        let Some(e) = r.state().orders.get(order) else {
            return Vec::new();
        };
        let Some(h) = e.header() else {
            return Vec::new();
        };
        if h.seller != r.actor() || now_ms.saturating_sub(h.created_ms) > WINDOW.as_millis() as u64
        {
            return Vec::new();
        }
        let Some(to) = recipient(r, e) else {
            return Vec::new();
        };
        e.notices()
            .into_iter()
            .filter(|n| !e.notified.contains(*n))
            .map(|notice| compose(*order, e, notice, &to))
            .collect()
    }

    /// Sends the due mails of `order`, recording each once the relay took it.
    async fn deliver(&self, order: OrderId) -> Result<(), String> {
        let mails = self
            .engine
            .read(|r| self.due(r, &order, crate::clock::now_ms()))
            .await;
        for m in mails {
            let to: Mailbox =
                m.to.parse()
                    .map_err(|e| format!("recipient {}: {e}", m.to))?;
            let msg = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(m.subject)
                .message_id(Some(format!("<{order}.{}@concord>", m.notice)))
                .header(ContentType::TEXT_PLAIN)
                .body(m.body)
                .map_err(|e| e.to_string())?;
            self.relay.send(msg).await.map_err(|e| e.to_string())?;
            ::metrics::counter!(crate::metrics::EMAILS_SENT, "notice" => m.notice).increment(1);
            match self
                .engine
                .write(Op::Notified {
                    order,
                    notice: m.notice.to_string(),
                })
                .await
            {
                Ok(_) | Err(WriteError::Op(OpError::Unchanged)) => {}
                Err(e) => return Err(e.to_string()),
            }
            tracing::info!(%order, notice = m.notice, "order e-mail sent");
        }
        Ok(())
    }
}

fn order_keys(keys: &[Key]) -> impl Iterator<Item = OrderId> + '_ {
    keys.iter().filter_map(|k| match k {
        Key::Order(id) => Some(*id),
        _ => None,
    })
}

/// Where an order's mails go: its account's e-mail, else the checkout's.
fn recipient(r: &Replica, e: &OrderEntry) -> Option<String> {
    let h = e.header()?;
    h.customer
        .parse::<uuid::Uuid>()
        .ok()
        .and_then(|id| r.account(&crdt_core::AccountId(id)))
        .and_then(|a| a.email().map(str::to_string))
        .or_else(|| e.email.0.clone())
}

/// The plain-text mail of one notice.
fn compose(order: OrderId, e: &OrderEntry, notice: &'static str, to: &str) -> Mail {
    let Some(h) = e.header() else {
        return Mail {
            to: to.to_string(),
            notice,
            subject: String::new(),
            body: String::new(),
        };
    };
    let money = |minor| {
        crdt_core::money::Money {
            minor,
            currency: h.currency,
        }
        .to_decimal()
    };
    let short = &order.to_string()[..8];
    let (subject, opening) = match notice {
        "placed" => (
            format!("Your order {short} is placed"),
            "Thank you: we have your order.",
        ),
        "shipped" => (
            format!("Your order {short} has shipped"),
            "Your order is on its way.",
        ),
        _ => (
            format!("Your order {short} is cancelled"),
            "Your order was cancelled; anything you paid is refunded.",
        ),
    };
    let mut body = format!("Hello {},\n\n{opening}\n\nOrder {order}\n", h.shipping.name);
    for l in &h.lines {
        body.push_str(&format!(
            "  {} × {}  {} {}\n",
            l.quantity,
            l.sku,
            money(l.unit_minor * u64::from(l.quantity)),
            h.currency.code()
        ));
    }
    body.push_str(&format!(
        "Total: {} {}\n\nShips to:\n  {}\n  {}\n  {} {}\n  {}\n",
        money(h.total_minor),
        h.currency.code(),
        h.shipping.name,
        h.shipping.line1,
        h.shipping.postal_code,
        h.shipping.city,
        h.shipping.country
    ));
    Mail {
        to: to.to_string(),
        notice,
        subject,
        body,
    }
}
