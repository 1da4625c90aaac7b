//! The `hostile` nemesis: a client on a second loopback address
//! (`127.0.0.2`, which reaches a node listening on 127.0.0.1 like a second
//! host would) opens as many slowloris connections to one node as it can —
//! request heads that never end, one more header line a second — and
//! reopens every one the node closes. At the end of the window, with the
//! attacker's connections still open, a probe from the workload's address
//! asks the node for `/health`. What the node must do (checked by
//! [`crate::checkers::bounded`]): keep answering everybody else, and cut
//! every attacker connection off within its header timeout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use concord_node::http_client::Client;

use crate::checkers::bounded::AttackStats;

/// The attacker's address.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Connections the attacker tries to hold: more than a node's default cap
/// per address (256), so the cap is what stops it.
const WANT: usize = 400;

/// A running attack on one node.
pub struct Slowloris {
    stop: Arc<AtomicBool>,
    task: JoinHandle<AttackStats>,
}

/// One connection the attacker holds.
struct Held {
    stream: TcpStream,
    since: Instant,
    lines: u64,
}

async fn connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(ATTACKER, 0))?;
    s.connect(to).await
}

/// Whether the node has closed `s` (or reset it).
fn is_closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false, // an answer (408, say): the close follows
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

impl Slowloris {
    /// Starts the attack on the node serving HTTP at `to`.
    pub fn start(to: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut st = AttackStats::default();
            let mut held: Vec<Held> = Vec::new();
            let mut last_drip = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                // Reap what the node closed.
                held.retain(|h| {
                    if is_closed(&h.stream) {
                        st.closed_by_node += 1;
                        st.longest_ms = st.longest_ms.max(h.since.elapsed().as_millis() as u64);
                        false
                    } else {
                        true
                    }
                });
                // Top up, a bounded batch per round.
                for _ in 0..50 {
                    if held.len() >= WANT {
                        break;
                    }
                    let Ok(Ok(mut s)) =
                        tokio::time::timeout(Duration::from_millis(200), connect(to)).await
                    else {
                        break;
                    };
                    st.opened += 1;
                    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                        .await
                        .is_ok()
                    {
                        held.push(Held {
                            stream: s,
                            since: Instant::now(),
                            lines: 0,
                        });
                    } else {
                        st.closed_by_node += 1;
                    }
                }
                st.most_open = st.most_open.max(held.len() as u64);
                // One more header line a second on every connection.
                if last_drip.elapsed() >= Duration::from_secs(1) {
                    last_drip = Instant::now();
                    for h in &mut held {
                        h.lines += 1;
                        let line = format!("X-Slow-{}: 1\r\n", h.lines);
                        let _ = h.stream.try_write(line.as_bytes());
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            st.open_at_end = held.len() as u64;
            for h in &held {
                st.longest_ms = st.longest_ms.max(h.since.elapsed().as_millis() as u64);
            }
            st
        });
        Self { stop, task }
    }

    /// Stops the attack, closing its connections.
    pub async fn stop(self) -> AttackStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Asks `client` (from the workload's address) for `/health`, within 2 s.
pub async fn probe(client: &Client) -> (bool, u64) {
    let t = Instant::now();
    let ok = matches!(
        client.clone().with_timeout(Duration::from_secs(2)).get("/health").await,
        Ok(a) if a.status.is_success()
    );
    (ok, t.elapsed().as_millis() as u64)
}
