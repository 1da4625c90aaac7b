//! Replication (placeholder until the QUIC transport lands): the view of the
//! peers that the API needs.

use std::sync::Arc;

use crdt_core::status::OrderStatus;
use crdt_core::{Actor, OrderId, Sku};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::config::NodeConfig;

/// One peer as this node sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// Peer id.
    pub id: String,
    /// The address this node dials.
    pub address: String,
    /// Whether a connection (past the hello) is up.
    pub alive: bool,
    /// Milliseconds since the peer was last heard from (null: never).
    pub last_seen_ms: Option<u64>,
}

/// The peers of this node.
pub struct Cluster {
    peers: Vec<NodeConfig>,
}

impl Cluster {
    /// A cluster view with these peers.
    pub fn new(peers: Vec<NodeConfig>) -> Arc<Self> {
        Arc::new(Self { peers })
    }

    /// Liveness of every peer.
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| PeerStatus {
                id: p.id.to_string(),
                address: p.dial.to_string(),
                alive: false,
                last_seen_ms: None,
            })
            .collect()
    }

    /// Asks peers for `units` of stock rights on `sku`; true once some arrived.
    pub async fn acquire_rights(&self, _sku: &Sku, _units: u64) -> bool {
        false
    }

    /// Forwards an order move to the node that sold it.
    pub async fn forward_move(
        &self,
        seller: Actor,
        order: OrderId,
        _to: OrderStatus,
    ) -> Result<(), ApiError> {
        Err(ApiError::unavailable(
            "seller_unreachable",
            format!("order {order} was sold by {seller}, which is unreachable"),
        ))
    }
}
