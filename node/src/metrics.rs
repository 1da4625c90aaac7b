//! `/metrics`: a Prometheus recorder installed once per process, and the
//! names of the series the node records.
//!
//! Series: HTTP requests and latency by route; writes by kind; flush batch
//! sizes; delta-log size; and, from replication, refused peers, pushed and
//! dropped deltas, bytes on the wire.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process; later calls reuse it) and
/// returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(FLUSH_BATCH.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
                    )
                });
            match builder {
                Ok(b) => match b.install_recorder() {
                    Ok(h) => h,
                    // Another recorder is installed (a test harness, say):
                    // render from a fresh one nobody writes to.
                    Err(_) => PrometheusBuilder::new().build_recorder().handle(),
                },
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Order e-mails the relay accepted, by notice.
pub const EMAILS_SENT: &str = "concord_emails_sent_total";
/// Writes answered from an idempotency record instead of running again.
pub const IDEMPOTENT_REPLAYS: &str = "concord_idempotent_replays_total";

/// HTTP requests, by route, method and status.
pub const HTTP_REQUESTS: &str = "concord_http_requests_total";
/// HTTP latency, by route and method.
pub const HTTP_LATENCY: &str = "concord_http_request_duration_seconds";
/// Local writes applied, by operation.
pub const WRITES: &str = "concord_writes_total";
/// Batches made durable per flush (group-commit size).
pub const FLUSH_BATCH: &str = "concord_flush_batch_size";
/// Flush latency.
pub const FLUSH_LATENCY: &str = "concord_flush_duration_seconds";
/// Requests refused by a rate limit, by limit (`address`, `token`, `route`).
pub const RATE_LIMITED: &str = "concord_http_rate_limited_total";
/// `fdatasync`/`fsync` calls made by group commits.
pub const STORE_SYNCS: &str = "concord_store_syncs_total";
/// Repairs started because two peers held equal vectors and different digests.
pub const DIVERGENCE_REPAIRED: &str = "concord_divergence_repaired_total";
/// Deltas in the delta log.
pub const DELTA_LOG_LEN: &str = "concord_delta_log_entries";
/// Bytes in the delta log.
pub const DELTA_LOG_BYTES: &str = "concord_delta_log_bytes";
/// Deltas merged from peers, by outcome.
pub const MERGED: &str = "concord_deltas_merged_total";
/// Peers refused at the handshake, by reason.
pub const PEER_REFUSED: &str = "concord_peer_refused_total";
/// Deltas pushed to peers.
pub const PUSHED: &str = "concord_deltas_pushed_total";
/// Deltas dropped from a slow peer's queue (left to anti-entropy).
pub const PUSH_DROPPED: &str = "concord_push_dropped_total";
/// Bytes sent to peers, by message kind.
pub const WIRE_BYTES: &str = "concord_wire_bytes_sent_total";
/// Messages sent to peers, by message kind.
pub const WIRE_MESSAGES: &str = "concord_wire_messages_sent_total";
/// Repairs (digest-tree full-state merges), by direction.
pub const REPAIRS: &str = "concord_repairs_total";
/// Stock-rights transfer requests, by outcome.
pub const RIGHTS_REQUESTS: &str = "concord_rights_requests_total";
/// Products in the search index.
pub const SEARCH_DOCS: &str = "concord_search_documents";
