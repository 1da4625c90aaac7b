//! Push: every applied delta — local, or merged from a peer that a target
//! cannot hear directly — goes to each connected peer's bounded queue, and
//! each peer's sender writes what its queue holds onto one uni stream at a
//! time (at once when the link is idle; batched while a push is in flight).
//! A full queue or a failed push drops the deltas: anti-entropy carries them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::Cluster;
use super::peer::Peer;
use super::wire::{self, Msg};
use crate::engine::{Event, Origin};
use crate::metrics as m;
use crate::shutdown::Shutdown;

impl Cluster {
    /// Routes applied deltas to the peers' queues.
    pub(super) async fn fanout(self: Arc<Self>, shutdown: Shutdown) {
        let mut rx = self.engine.subscribe();
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.wait() => break,
            };
            match ev {
                Ok(Event::Applied(a, origin)) => {
                    let writer = a.delta.dot.actor.node;
                    for p in self.peers.values() {
                        let send = match origin {
                            Origin::Local => true,
                            // Forward only to peers that cannot hear the
                            // writer directly (a bridged partition); the
                            // others got it from the writer.
                            Origin::Remote(from) => {
                                p.id != writer
                                    && Some(p.id) != from
                                    && !p.lock().connected_to.contains(&writer)
                            }
                        };
                        if send
                            && p.conn().is_some()
                            && p.queue.try_send(a.logged.bytes.clone()).is_err()
                        {
                            ::metrics::counter!(m::PUSH_DROPPED, "peer" => p.id.to_string())
                                .increment(1);
                        }
                    }
                }
                Ok(Event::Repaired(_)) => {}
                Err(RecvError::Lagged(n)) => {
                    ::metrics::counter!(m::PUSH_DROPPED, "peer" => "all").increment(n);
                    tracing::warn!(
                        missed = n,
                        "push fan-out fell behind; anti-entropy will carry the rest"
                    );
                }
                Err(RecvError::Closed) => break,
            }
        }
    }

    /// Batches a peer's queue onto uni streams.
    pub(super) async fn sender(
        self: Arc<Self>,
        peer: Arc<Peer>,
        mut rx: tokio::sync::mpsc::Receiver<Arc<[u8]>>,
        shutdown: Shutdown,
    ) {
        loop {
            let first = tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => break },
                _ = shutdown.wait() => break,
            };
            // No timer: a delta goes out at once when the link is idle, and
            // whatever queued up while the previous push was in flight goes
            // out together with it — batches grow with load, never with delay.
            let mut batch = vec![first.to_vec()];
            let mut size = batch[0].len();
            while size < 512 << 10 {
                match rx.try_recv() {
                    Ok(d) => {
                        size += d.len();
                        batch.push(d.to_vec());
                    }
                    Err(_) => break,
                }
            }
            let Some(conn) = peer.conn() else {
                ::metrics::counter!(m::PUSH_DROPPED, "peer" => peer.id.to_string())
                    .increment(batch.len() as u64);
                continue;
            };
            let n = batch.len() as u64;
            let push = async {
                let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
                let bytes = wire::write_msg(&mut s, &Msg::Push { deltas: batch })
                    .await
                    .map_err(|e| e.to_string())?;
                s.finish().map_err(|e| e.to_string())?;
                Ok::<usize, String>(bytes)
            };
            match tokio::time::timeout(Duration::from_secs(2), push).await {
                Ok(Ok(bytes)) => {
                    ::metrics::counter!(m::PUSHED).increment(n);
                    ::metrics::counter!(m::WIRE_BYTES, "kind" => "push").increment(bytes as u64);
                    ::metrics::counter!(m::WIRE_MESSAGES, "kind" => "push").increment(1);
                }
                _ => {
                    ::metrics::counter!(m::PUSH_DROPPED, "peer" => peer.id.to_string())
                        .increment(n);
                }
            }
        }
    }
}
