//! The HTTP API (axum 0.8), the same on every node: DESIGN §5.
//!
//! Handlers turn requests into valid operations (400/401/403 here), hand
//! them to the [`Engine`], and shape the answer; the OpenAPI document is
//! generated from the handlers' annotations, so it cannot drift from them.

pub mod answer;
pub mod auth;
pub mod carts;
pub mod catalog;
pub mod conditional;
pub mod cors;
pub mod customers;
pub mod dto;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod inspect;
pub mod inventory;
pub mod me;
pub mod middleware;
pub mod orders;
pub mod payments;
pub mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder, content::ContentBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::TokenKey;
use crate::config::ClusterConfig;
use crate::engine::Engine;
use crate::replication::Cluster;
use crate::search::SearchIndex;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The node's services every handler reaches: what [`router`] is given.
pub struct Services {
    /// The replica and store.
    pub engine: Arc<Engine>,
    /// The search index.
    pub search: Arc<SearchIndex>,
    /// Token checker.
    pub tokens: TokenKey,
    /// The cluster configuration.
    pub config: Arc<ClusterConfig>,
    /// The peers: liveness, rights transfers, forwarding.
    pub cluster: Arc<Cluster>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Server-sent events.
    pub events: Arc<crate::events::EventHub>,
    /// Rate limits (pruned by the node's housekeeping).
    pub limiter: Arc<middleware::Limits>,
    /// Password hashing and login limits.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// Payments and refunds.
    pub payments: Arc<crate::payments::Payments>,
}

/// The parts of [`AppState`]: the services, and what the router adds.
pub struct AppInner {
    /// The node's services (reached through `Deref`).
    pub services: Services,
    /// Request metrics handles.
    pub request_metrics: middleware::RequestMetrics,
    /// The OpenAPI document, rendered once.
    pub openapi: String,
    /// Idempotency keys whose first request is running here.
    pub in_flight: idempotency::InFlight,
}

impl std::ops::Deref for AppInner {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Concord", description = "A geo-replicated commerce store: the same API on every node."),
    tags(
        (name = "catalog", description = "Products"),
        (name = "search", description = "Semantic search over the local replica"),
        (name = "inventory", description = "Stock and stock rights"),
        (name = "carts", description = "Shopping carts"),
        (name = "accounts", description = "Customer and staff accounts, sessions, address books"),
        (name = "orders", description = "Checkout and order status"),
        (name = "payments", description = "Payments, refunds and provider webhooks"),
        (name = "cluster", description = "Replication status"),
        (name = "system", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme, and the error answers any endpoint can give, to
/// every operation.
struct CommonResponses;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, write) in ops
                .into_iter()
                .filter_map(|(o, w)| o.as_mut().map(|o| (o, w)))
            {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let r = &mut op.responses.responses;
                if !write {
                    r.entry("304".to_string()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description("Not modified: If-None-Match named the current ETag")
                                .build(),
                        )
                    });
                }
                let mut add = |code: &str, d: &str| {
                    r.entry(code.to_string())
                        .or_insert_with(|| error_response(d));
                };
                if write {
                    add(
                        "409",
                        "A request with this Idempotency-Key is still running (`idempotency_key_in_flight`)",
                    );
                    add(
                        "412",
                        "If-Match named an ETag the resource no longer has (`precondition_failed`)",
                    );
                    add(
                        "422",
                        "The Idempotency-Key was used with another request (`idempotency_key_reused`)",
                    );
                }
                add("400", "Malformed request: the message names the field");
                add("429", "Too many requests (per address, token or route)");
                add(
                    "503",
                    "The request took longer than the node allows (`timeout`), or a peer it needs is unreachable",
                );
                // Any route refuses a token that does not check out.
                add("401", "Missing, invalid or expired token");
                if secured {
                    add("403", "The token's role or customer may not do this");
                }
                if op.request_body.is_some() {
                    add("413", "Body larger than the limit");
                    add("415", "Body is not JSON");
                }
            }
        }
    }
}

/// The router and the OpenAPI document.
pub fn router(services: Services, extra: Router<AppState>) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(catalog::create_product, catalog::list_products))
        .routes(routes!(
            catalog::get_product,
            catalog::patch_product,
            catalog::delete_product
        ))
        .routes(routes!(catalog::set_price))
        .routes(routes!(catalog::price_history))
        .routes(routes!(catalog::search))
        .routes(routes!(inventory::restock))
        .routes(routes!(inventory::get_inventory))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::new_guest_cart))
        .routes(routes!(me::get_me, me::patch_me))
        .routes(routes!(me::change_password))
        .routes(routes!(me::list_addresses, me::add_address))
        .routes(routes!(
            me::get_address,
            me::patch_address,
            me::delete_address
        ))
        .routes(routes!(customers::list_customers))
        .routes(routes!(customers::get_customer))
        .routes(routes!(customers::disable_customer))
        .routes(routes!(customers::enable_customer))
        .routes(routes!(customers::create_staff))
        .routes(routes!(carts::list_carts))
        .routes(routes!(carts::get_cart))
        .routes(routes!(carts::add_item))
        .routes(routes!(carts::set_item, carts::remove_item))
        .routes(routes!(orders::checkout, orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::pay))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::deliver))
        .routes(routes!(orders::cancel))
        .routes(routes!(payments::pay_order))
        .routes(routes!(payments::refund_order))
        .routes(routes!(payments::provider_webhook))
        .routes(routes!(payments::test_ledger))
        .routes(routes!(system::cluster_status))
        .routes(routes!(crate::events::events))
        .routes(routes!(inspect::tree))
        .routes(routes!(inspect::bucket))
        .routes(routes!(inspect::nodes))
        .routes(routes!(inspect::diff))
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
        .split_for_parts();
    // The routes join the document after `ApiDoc::openapi()` ran its
    // modifiers, so the common answers are added here, to every operation.
    let mut api = api;
    CommonResponses.modify(&mut api);
    let openapi = api.to_pretty_json().unwrap_or_else(|_| "{}".into());
    let max_body = services.config.http.max_body_bytes;
    let state = AppState(Arc::new(AppInner {
        services,
        request_metrics: middleware::RequestMetrics::default(),
        openapi,
        in_flight: idempotency::InFlight::default(),
    }));
    let mut extra = extra;
    if std::env::var(system::TEST_HOOKS_ENV).is_ok_and(|v| v == "1") {
        extra = extra
            .route(
                "/api/v1/test/clock",
                axum::routing::post(system::set_clock_skew),
            )
            .route(
                "/api/v1/test/forget",
                axum::routing::post(system::forget_key),
            );
    }
    let routes = router
        .route("/openapi.json", axum::routing::get(system::openapi))
        .merge(extra)
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") });
    // The bare routes, for the conditional layer to read a resource's
    // current representation with (no limits: it is this node asking).
    let probe = routes.clone().with_state(state.clone());
    // Outermost first: CORS and request ids; the gate (limits, timeouts);
    // idempotency (a replay is answered before any precondition, which the
    // first attempt's own write would now fail); conditional requests.
    routes
        .layer(axum::middleware::from_fn(move |req, next| {
            conditional::layer(probe.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ))
        .with_state(state)
}
