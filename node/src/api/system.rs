//! Operational endpoints: liveness, readiness, metrics, cluster status and
//! the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::replication::PeerStatus;

/// `/health` and `/ready` bodies.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is not ready yet.
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store is open and the search index is loaded.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, description = "Ready", body = Health), (status = 503, description = "Not ready yet", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.search.is_ready() {
        Ok(Json(Health {
            status: "ok".into(),
        }))
    } else {
        Err(ApiError::unavailable(
            "index_loading",
            "the search index is still loading",
        ))
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// This node's view of the cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// This node's id.
    pub id: String,
    /// This node's actor (id, plus `.incarnation` after its store was lost).
    pub actor: String,
    /// Every other node of `cluster.toml`.
    pub peers: Vec<PeerStatus>,
    /// Deltas applied, per actor.
    pub version_vector: BTreeMap<String, u64>,
    /// Digest of the whole state: two nodes are converged exactly when equal.
    pub digest: String,
    /// Root hash of each keyspace's digest tree.
    pub keyspaces: BTreeMap<String, String>,
    /// Keys held, per keyspace.
    pub keys: BTreeMap<String, usize>,
    /// Deltas held in the delta log.
    pub delta_log: usize,
    /// Bytes held in the delta log.
    pub delta_log_bytes: usize,
    /// Deltas waiting for an earlier one of their actor.
    pub pending: usize,
    /// Divergence repairs this node ran (equal vectors, different digests).
    pub divergence: crate::replication::DivergenceStatus,
}

/// Hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// This node: id, peers and their liveness, version vector, digest, delta log.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster",
    responses((status = 200, description = "Status", body = ClusterStatus)))]
pub async fn cluster_status(
    State(state): State<AppState>,
    caller: super::extract::Caller,
) -> Json<ClusterStatus> {
    let peers = state.cluster.peer_statuses();
    let mut divergence = state.cluster.divergence_status();
    // The keys a repair changed are cart and order ids: admins only.
    if caller.admin().is_err()
        && let Some(last) = divergence.last.as_mut()
    {
        last.keys.clear();
    }
    let status = state
        .engine
        .read(|r| {
            let roots = r.state().roots();
            let sizes = r.state().sizes();
            ClusterStatus {
                id: state.engine.id().to_string(),
                actor: state.engine.actor().to_string(),
                peers,
                version_vector: r
                    .version_vector()
                    .dots
                    .iter()
                    .map(|(a, s)| (a.to_string(), *s))
                    .collect(),
                digest: hex(&r.digest()),
                keyspaces: crdt_core::KeyspaceId::ALL
                    .iter()
                    .zip(roots)
                    .map(|(k, h)| (k.as_str().to_string(), format!("{h:032x}")))
                    .collect(),
                keys: crdt_core::KeyspaceId::ALL
                    .iter()
                    .zip(sizes)
                    .map(|(k, n)| (k.as_str().to_string(), n))
                    .collect(),
                delta_log: r.log().len(),
                delta_log_bytes: r.log().bytes(),
                pending: r.pending_len(),
                divergence,
            }
        })
        .await;
    Json(status)
}

/// The OpenAPI document of this API.
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
}

/// The environment variable that enables test hooks (the clock-skew knob the
/// chaos harness turns). Off in production: the route does not exist.
pub const TEST_HOOKS_ENV: &str = "CONCORD_TEST_HOOKS";

/// `POST /api/v1/test/clock`: sets this node's clock offset.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClockSkew {
    /// Milliseconds added to the system clock (negative: behind).
    pub offset_ms: i64,
}

/// Sets the node's clock offset (test hook; admin only).
pub async fn set_clock_skew(
    caller: super::extract::Caller,
    super::extract::ApiJson(body): super::extract::ApiJson<ClockSkew>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.admin()?;
    if body.offset_ms.unsigned_abs() > 24 * 3_600_000 {
        return Err(ApiError::field("offsetMs", "must be within a day"));
    }
    crate::clock::set_offset_ms(body.offset_ms);
    tracing::warn!(offset_ms = body.offset_ms, "clock skew set by a test hook");
    Ok(Json(serde_json::json!({"offsetMs": body.offset_ms})))
}

/// `POST /api/v1/test/forget`: a key whose entry this node forgets.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForgetKey {
    /// `products`, `carts`, `stock` or `orders`.
    pub keyspace: String,
    /// The key: a UUID, or a SKU for `stock`.
    pub key: String,
}

/// Forgets one key's entry on this node, in memory and on disk, leaving its
/// causal context as it is — a disk that lost a write (test hook; admin
/// only). Digest-driven anti-entropy must bring it back.
pub async fn forget_key(
    State(state): State<AppState>,
    caller: super::extract::Caller,
    super::extract::ApiJson(body): super::extract::ApiJson<ForgetKey>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crdt_core::{CartId, IdemKey, Key, KeyspaceId, OrderId, ProductId, Sku};
    caller.admin()?;
    let ks = super::inspect::keyspace(&body.keyspace)?;
    let uuid = || {
        uuid::Uuid::parse_str(body.key.trim()).map_err(|_| ApiError::field("key", "must be a UUID"))
    };
    let key = match ks {
        KeyspaceId::Products => Key::Product(ProductId(uuid()?)),
        KeyspaceId::Carts => Key::Cart(CartId(uuid()?)),
        KeyspaceId::Orders => Key::Order(OrderId(uuid()?)),
        KeyspaceId::Stock => Key::Stock(Sku(body.key.clone())),
        KeyspaceId::Idempotency => Key::Idem(IdemKey(uuid()?)),
        KeyspaceId::Accounts => Key::Account(crdt_core::AccountId(uuid()?)),
    };
    let had = state
        .engine
        .forget_key(&key)
        .await
        .map_err(crate::engine::WriteError::from)?;
    tracing::warn!(keyspace = %body.keyspace, key = %body.key, had, "test hook: forgot a key's entry");
    Ok(Json(serde_json::json!({"forgotten": had})))
}
