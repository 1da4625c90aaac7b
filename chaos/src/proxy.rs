//! A UDP fault proxy: one in front of each node's gossip port (peers dial it
//! through `advertise`), applying per-link faults — partition (drop all),
//! loss, duplication, delay with jitter (which also reorders) — in both
//! directions.
//!
//! Each proxy relays for one target node. It gives every client (a peer's
//! gossip socket) its own upstream socket, so the target sees one address per
//! peer and answers reach the right client. Links are identified by node id
//! through the gossip addresses, so a fault is set once per pair of nodes and
//! applies on whichever proxy carries that pair's traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Faults on one direction of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    /// Drop everything (a partition).
    pub cut: bool,
    /// Probability of dropping a datagram, 0–1.
    pub loss: f64,
    /// Probability of sending a datagram twice, 0–1.
    pub duplicate: f64,
    /// Added delay, ms.
    pub delay_ms: u64,
    /// Uniform extra delay up to this, ms (reorders datagrams).
    pub jitter_ms: u64,
}

impl LinkFault {
    /// No fault.
    pub fn is_clear(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// The fault table shared by every proxy: (from node, to node) → fault.
#[derive(Clone, Default)]
pub struct Faults {
    table: Arc<Mutex<HashMap<(String, String), LinkFault>>>,
    counters: Arc<Mutex<Counters>>,
}

/// What the proxies did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Datagrams relayed.
    pub relayed: u64,
    /// Datagrams dropped by a fault.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Bytes relayed.
    pub bytes: u64,
}

impl Faults {
    /// Sets the fault on the direction `from → to`.
    pub fn set(&self, from: &str, to: &str, f: LinkFault) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_clear() {
            t.remove(&(from.to_string(), to.to_string()));
        } else {
            t.insert((from.to_string(), to.to_string()), f);
        }
    }

    /// Sets the fault on both directions of a link.
    pub fn set_both(&self, a: &str, b: &str, f: LinkFault) {
        self.set(a, b, f);
        self.set(b, a, f);
    }

    /// Cuts (or heals) both directions between every node of `left` and every
    /// node of `right`.
    pub fn partition(&self, left: &[String], right: &[String]) {
        for a in left {
            for b in right {
                self.set_both(
                    a,
                    b,
                    LinkFault {
                        cut: true,
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The fault on `from → to`.
    pub fn get(&self, from: &str, to: &str) -> LinkFault {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(from.to_string(), to.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// What the proxies have done so far.
    pub fn counters(&self) -> Counters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// One relay decision for a datagram: how many copies, after what delays.
fn plan(f: LinkFault) -> Vec<Duration> {
    if f.cut {
        return Vec::new();
    }
    let mut rng = rand::rng();
    if f.loss > 0.0 && rng.random_bool(f.loss.clamp(0.0, 1.0)) {
        return Vec::new();
    }
    let copies = if f.duplicate > 0.0 && rng.random_bool(f.duplicate.clamp(0.0, 1.0)) {
        2
    } else {
        1
    };
    (0..copies)
        .map(|_| {
            let j = if f.jitter_ms > 0 {
                rng.random_range(0..=f.jitter_ms)
            } else {
                0
            };
            Duration::from_millis(f.delay_ms + j)
        })
        .collect()
}

async fn relay(sock: Arc<UdpSocket>, to: SocketAddr, data: Vec<u8>, f: LinkFault, faults: &Faults) {
    let delays = plan(f);
    if delays.is_empty() {
        faults.count(|c| c.dropped += 1);
        return;
    }
    faults.count(|c| {
        c.relayed += 1;
        c.bytes += data.len() as u64;
        c.duplicated += delays.len() as u64 - 1;
    });
    for d in delays {
        if d.is_zero() {
            let _ = sock.send_to(&data, to).await;
        } else {
            let (sock, data) = (sock.clone(), data.clone());
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = sock.send_to(&data, to).await;
            });
        }
    }
}

/// A proxy in front of one node.
pub struct Proxy {
    /// Where peers dial (the node's `advertise`).
    pub listen: SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    /// Starts a proxy for `target` (its id and gossip address) on `listen`.
    /// `names` maps every node's gossip address to its id.
    pub async fn start(
        target: String,
        target_addr: SocketAddr,
        listen: SocketAddr,
        names: HashMap<SocketAddr, String>,
        faults: Faults,
    ) -> std::io::Result<Proxy> {
        let front = Arc::new(UdpSocket::bind(listen).await?);
        let listen = front.local_addr()?;
        let mut tasks = JoinSet::new();
        let names = Arc::new(names);
        let uplinks: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        let front2 = front.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 65_536];
            let mut children = JoinSet::new();
            loop {
                let Ok((n, client)) = front2.recv_from(&mut buf).await else {
                    break;
                };
                let data = buf[..n].to_vec();
                let from = names
                    .get(&client)
                    .cloned()
                    .unwrap_or_else(|| client.to_string());
                let up = {
                    let u = uplinks.lock().unwrap_or_else(|p| p.into_inner());
                    u.get(&client).cloned()
                };
                let up = match up {
                    Some(u) => u,
                    None => {
                        let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        let s = Arc::new(s);
                        uplinks
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(client, s.clone());
                        // Answers from the target go back to this client.
                        let (s2, front3, faults2, target2, from2) = (
                            s.clone(),
                            front2.clone(),
                            faults.clone(),
                            target.clone(),
                            from.clone(),
                        );
                        children.spawn(async move {
                            let mut b = vec![0u8; 65_536];
                            while let Ok((n, _)) = s2.recv_from(&mut b).await {
                                let f = faults2.get(&target2, &from2);
                                relay(front3.clone(), client, b[..n].to_vec(), f, &faults2).await;
                            }
                        });
                        s
                    }
                };
                let f = faults.get(&from, &target);
                relay(up, target_addr, data, f, &faults).await;
            }
        });
        Ok(Proxy { listen, tasks })
    }

    /// Stops the proxy.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
