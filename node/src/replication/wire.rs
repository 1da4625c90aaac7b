//! The cluster protocol's messages and their framing on QUIC streams.
//!
//! Every message travels as one frame: a little-endian `u32` length, then a
//! [`Msg`] in the project's versioned envelope. Readers cap the length before
//! allocating and refuse anything that does not decode — a malformed peer
//! costs a logged error and a closed stream, never a panic.

use crdt_core::codec::{self, DecodeError, Kind, Versioned};
use crdt_core::repair::RepairMode;
use crdt_core::state::KeyEntry;
use crdt_core::status::OrderStatus;
use crdt_core::{Actor, CausalContext, KeyspaceId, NodeId, OrderId, Sku, VersionVector};
use serde::{Deserialize, Serialize};

/// Protocol version exchanged in the hello. 3: order entries carry payments
/// (repair snapshots hold revision-3 entries). 2: repairs carry a mode and the
/// receiver's vector, a divergence repair carries the sender's newer deltas,
/// and rights replies stream what the asker lacks before the grant.
pub const PROTOCOL_VERSION: u16 = 3;
/// Largest frame accepted, bytes (the largest a node sends is a 2 MiB
/// repair chunk; deltas go in chunks of 1 MiB).
pub const MAX_FRAME: usize = 8 << 20;
/// A frame's buffer grows by at most this much per read, so a length prefix
/// alone never makes a node allocate: memory follows the bytes that arrive.
const READ_STEP: usize = 64 << 10;

/// A node of a digest tree: keyspace, level, index.
pub type TreeNode = (KeyspaceId, u8, u32);

/// One message of the cluster protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Msg {
    /// The dialler introduces itself.
    Hello {
        /// Cluster name.
        cluster: String,
        /// Node id (must match the certificate).
        node: NodeId,
        /// The node's current actor.
        actor: Actor,
        /// [`PROTOCOL_VERSION`].
        version: u16,
    },
    /// The acceptor agrees.
    HelloOk {
        /// Cluster name.
        cluster: String,
        /// Node id.
        node: NodeId,
        /// The node's current actor.
        actor: Actor,
    },
    /// The acceptor refuses, and says why.
    Refused {
        /// Why.
        reason: String,
    },
    /// New deltas (envelopes), pushed as they are applied.
    Push {
        /// The deltas.
        deltas: Vec<Vec<u8>>,
    },
    /// Anti-entropy: "this is what I have; send me what I lack".
    Pull {
        /// The puller's version vector.
        vv: VersionVector,
        /// The puller's state digest.
        digest: [u8; 32],
        /// Peers the puller is connected to (for forwarding decisions).
        connected: Vec<NodeId>,
    },
    /// A chunk of the deltas the puller lacks, in causal order.
    Deltas {
        /// The sender's version vector.
        vv: VersionVector,
        /// The sender's state digest.
        digest: [u8; 32],
        /// Peers the sender is connected to.
        connected: Vec<NodeId>,
        /// The deltas.
        deltas: Vec<Vec<u8>>,
        /// Whether more follow on this stream.
        more: bool,
    },
    /// The sender's log no longer holds what the puller needs: repair.
    Truncated {
        /// The sender's version vector.
        vv: VersionVector,
    },
    /// Repair: the receiver's keyspace roots (from its frozen base).
    RepairStart {
        /// One root per keyspace, in tag order.
        roots: Vec<u128>,
        /// Catch-up or divergence.
        mode: RepairMode,
        /// The receiver's version vector at its base.
        vv: VersionVector,
    },
    /// Repair: the sender asks for the children of these nodes.
    Descend {
        /// Tree nodes whose hashes differ.
        nodes: Vec<TreeNode>,
    },
    /// Repair: the children's hashes, one list of 16 per requested node.
    Hashes {
        /// Children hashes.
        children: Vec<Vec<u128>>,
    },
    /// Repair: whole entries of the differing buckets.
    SnapshotChunk {
        /// Entries.
        entries: Vec<KeyEntry>,
    },
    /// Repair: the end, with the contexts the snapshot was taken under.
    SnapshotEnd {
        /// Causal context.
        cc: CausalContext,
        /// Version vector.
        applied: VersionVector,
        /// The buckets the snapshot covers.
        buckets: Vec<(KeyspaceId, u16)>,
        /// For a divergence repair: the sender's deltas beyond the
        /// receiver's vector (`None` when its log no longer holds them, and
        /// the repair cannot be joined).
        newer: Option<Vec<Vec<u8>>>,
    },
    /// A node short of stock rights asks for some.
    RightsRequest {
        /// The SKU.
        sku: Sku,
        /// Units wanted.
        units: u64,
        /// The asker's vector, so the answer can carry what it lacks.
        vv: VersionVector,
    },
    /// Rights granted (maybe 0), with the transfer delta and what else the
    /// asker lacked.
    RightsReply {
        /// Units granted.
        granted: u64,
        /// Deltas to merge.
        deltas: Vec<Vec<u8>>,
    },
    /// Move an order sold by the receiver (ship, usually).
    MoveRequest {
        /// The order.
        order: OrderId,
        /// The status asked for.
        to: OrderStatus,
        /// The asker's vector.
        vv: VersionVector,
    },
    /// The move's result.
    MoveReply {
        /// HTTP status the forwarding node should answer (200 on success).
        status: u16,
        /// Empty on success, else the API error code.
        code: String,
        /// Human-readable message.
        message: String,
        /// Deltas to merge.
        deltas: Vec<Vec<u8>>,
    },
    /// "Run a divergence repair from me": sent by a node that just
    /// repaired from the receiver, so that the repair runs both ways.
    RepairInvite,
    /// A payment or refund for an order the receiver sold (answered with
    /// [`Msg::Working`] at once, then a [`Msg::MoveReply`]).
    SellerCall {
        /// The order.
        order: OrderId,
        /// What to do.
        call: crate::payments::SellerCall,
        /// The asker's vector.
        vv: VersionVector,
    },
    /// The seller took a [`Msg::SellerCall`] and is working on it.
    Working,
}

impl Versioned for Msg {
    const KIND: Kind = Kind(Kind::NODE_BASE);
    const REVISION: u8 = 1;
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream failed or ended early.
    #[error("stream: {0}")]
    Stream(String),
    /// The peer announced a frame above [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The frame did not decode.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The peer sent a message that does not fit the conversation.
    #[error("unexpected message: {0}")]
    Unexpected(String),
}

impl WireError {
    /// A message that does not fit the conversation, named in short.
    pub fn unexpected(m: &Msg) -> Self {
        Self::Unexpected(format!("{m:?}").chars().take(80).collect())
    }
}

/// Encodes a message as a frame.
pub fn frame(msg: &Msg) -> Vec<u8> {
    let body = codec::encode(msg);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes one message.
pub async fn write_msg(send: &mut quinn::SendStream, msg: &Msg) -> Result<usize, WireError> {
    let f = frame(msg);
    send.write_all(&f)
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    Ok(f.len())
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read_msg(recv: &mut quinn::RecvStream) -> Result<Option<Msg>, WireError> {
    Ok(read_frame(recv).await?.map(|(m, _)| m))
}

/// Reads one message and the size of its frame; `Ok(None)` at a clean end
/// of stream. The buffer grows as bytes arrive (`READ_STEP` at a time), up
/// to [`MAX_FRAME`].
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<(Msg, usize)>, WireError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(WireError::Stream(e.to_string())),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(WireError::TooLarge(n));
    }
    let mut buf = Vec::with_capacity(n.min(READ_STEP));
    while buf.len() < n {
        let want = (n - buf.len()).min(READ_STEP);
        let start = buf.len();
        buf.resize(start + want, 0);
        recv.read_exact(&mut buf[start..])
            .await
            .map_err(|e| WireError::Stream(e.to_string()))?;
    }
    Ok(Some((codec::decode::<Msg>(&buf)?, 4 + n)))
}

/// Reads one message within `timeout`; an end of stream is an error here.
pub async fn expect_msg(
    recv: &mut quinn::RecvStream,
    timeout: std::time::Duration,
) -> Result<Msg, WireError> {
    match tokio::time::timeout(timeout, read_msg(recv)).await {
        Err(_) => Err(WireError::Timeout),
        Ok(Ok(Some(m))) => Ok(m),
        Ok(Ok(None)) => Err(WireError::Stream("the stream ended".into())),
        Ok(Err(e)) => Err(e),
    }
}
