//! Inspection endpoints: the digest tree and bucket contents of this node
//! (what `concord inspect diff` descends), and a fan-out view of every node
//! of `cluster.toml` for the console.
//!
//! Every one of them needs an admin token: a bucket holds whole entries —
//! orders with their shipping addresses, carts with their owners — and one
//! diff makes this node fan out requests to every node. The node's own
//! fan-out carries a short-lived admin token minted from the cluster secret.

use axum::Json;
use axum::extract::State;
use crdt_core::KeyspaceId;
use crdt_core::digest::{DEPTH, FANOUT, NodeRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use crate::inspect::{self, DiffReport, NodeView};

/// Query naming one node of the digest tree.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// `products`, `carts`, `stock` or `orders`.
    pub keyspace: String,
    /// Depth from the root (0–3).
    pub level: u8,
    /// Index within the level.
    pub index: u32,
}

/// The hashes of a tree node's 16 children.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TreeChildren {
    /// Hex hashes, child 0 first.
    pub children: Vec<String>,
}

/// Query naming one bucket.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BucketQuery {
    /// `products`, `carts`, `stock` or `orders`.
    pub keyspace: String,
    /// Bucket index (0–65535).
    pub bucket: u16,
}

/// One key of a bucket with its replicated entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketEntry {
    /// The key (a UUID, or a SKU).
    pub key: String,
    /// The entry's CRDT state, as JSON.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// The keys of a bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketEntries {
    /// Entries, in key order.
    pub entries: Vec<BucketEntry>,
}

/// Parses a keyspace name.
pub fn keyspace(name: &str) -> Result<KeyspaceId, ApiError> {
    KeyspaceId::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or_else(|| ApiError::field("keyspace", "must be products, carts, stock or orders"))
}

/// Children hashes of one digest-tree node of this node.
#[utoipa::path(get, path = "/api/v1/cluster/tree", tag = "cluster", params(TreeQuery), security(("bearer" = [])),
    responses((status = 200, description = "Children hashes", body = TreeChildren)))]
pub async fn tree(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TreeQuery>,
) -> Result<Json<TreeChildren>, ApiError> {
    caller.admin()?;
    let ks = keyspace(&q.keyspace)?;
    if usize::from(q.level) >= DEPTH
        || u64::from(q.index) >= (FANOUT as u64).pow(u32::from(q.level))
    {
        return Err(ApiError::field(
            "level",
            "no such tree node (level 0–3, index below 16^level)",
        ));
    }
    let children = state
        .engine
        .read(|r| {
            r.state()
                .tree(ks)
                .children(NodeRef {
                    level: q.level,
                    index: q.index,
                })
                .into_iter()
                .map(|h| format!("{h:032x}"))
                .collect()
        })
        .await;
    Ok(Json(TreeChildren { children }))
}

/// The keys and entries of one bucket of this node.
#[utoipa::path(get, path = "/api/v1/cluster/bucket", tag = "cluster", params(BucketQuery), security(("bearer" = [])),
    responses((status = 200, description = "Entries", body = BucketEntries)))]
pub async fn bucket(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<BucketQuery>,
) -> Result<Json<BucketEntries>, ApiError> {
    caller.admin()?;
    let ks = keyspace(&q.keyspace)?;
    let entries = state
        .engine
        .read(|r| {
            r.state()
                .keys_in_bucket(ks, q.bucket)
                .into_iter()
                .filter_map(|k| {
                    let value = match r.state().key_entry(&k)? {
                        crdt_core::state::KeyEntry::Product(_, e) => serde_json::to_value(e),
                        crdt_core::state::KeyEntry::Cart(_, e) => serde_json::to_value(e),
                        crdt_core::state::KeyEntry::Stock(_, e) => serde_json::to_value(e),
                        crdt_core::state::KeyEntry::Order(_, e) => serde_json::to_value(e),
                        crdt_core::state::KeyEntry::Idem(_, e) => serde_json::to_value(e),
                        // Admins see an account's fields, never its hash.
                        crdt_core::state::KeyEntry::Account(_, mut e) => {
                            if let Some(p) = e.password.as_mut() {
                                p.value = "(argon2id hash, not shown)".into();
                            }
                            serde_json::to_value(&e)
                        }
                    }
                    .ok()?;
                    Some(BucketEntry {
                        key: inspect::key_text(&k),
                        value,
                    })
                })
                .collect()
        })
        .await;
    Ok(Json(BucketEntries { entries }))
}

/// Every node of the configuration: reachable or not, and its status.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodesView {
    /// Nodes, in configuration order.
    pub nodes: Vec<NodeView>,
    /// Whether every node is reachable and all digests are equal.
    pub converged: bool,
}

/// Every node of `cluster.toml` as seen from here (each asked over HTTP).
#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster", security(("bearer" = [])),
    responses((status = 200, description = "All nodes", body = NodesView)))]
pub async fn nodes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NodesView>, ApiError> {
    caller.admin()?;
    let token = state.tokens.internal_admin(state.engine.id().as_str());
    let nodes = inspect::gather(
        &state.config,
        std::time::Duration::from_millis(800),
        Some(&token),
    )
    .await;
    let converged = inspect::converged(&nodes);
    Ok(Json(NodesView { nodes, converged }))
}

/// Query of the diff endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// One node id.
    pub a: String,
    /// The other node id.
    pub b: String,
}

/// Where two nodes differ: ranges, then keys, then both values.
#[utoipa::path(get, path = "/api/v1/cluster/diff", tag = "cluster", params(DiffQuery), security(("bearer" = [])),
    responses((status = 200, description = "The difference", body = DiffReport),
        (status = 404, description = "Unknown node", body = super::error::ErrorBody),
        (status = 503, description = "A node is unreachable", body = super::error::ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<DiffReport>, ApiError> {
    caller.admin()?;
    let find = |id: &str| {
        state
            .config
            .nodes
            .iter()
            .find(|n| n.id.as_str() == id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "node_not_found",
                    format!("no node {id} in the configuration"),
                )
            })
    };
    let (a, b) = (find(&q.a)?, find(&q.b)?);
    let token = state.tokens.internal_admin(state.engine.id().as_str());
    inspect::diff(a, b, &token)
        .await
        .map(Json)
        .map_err(|e| ApiError::unavailable("node_unreachable", e.to_string()))
}
