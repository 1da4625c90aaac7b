//! Inventory endpoints: stock per SKU and the rights each node holds.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crdt_core::{Op, Replica, Sku};

use super::AppState;
use super::answer::{Answer, write_answer};
use super::dto::{InventoryView, MAX_STOCK_QUANTITY, Restock, sku};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller};

fn inventory_in(r: &Replica, s: &Sku) -> Result<InventoryView, ApiError> {
    let known = r.products_with_sku(&s.0).next().is_some();
    match r.state().stock.get(s) {
        Some(c) => Ok(InventoryView::new(&s.0, c)),
        None if known => Ok(InventoryView::new(&s.0, &Default::default())),
        None => Err(ApiError::not_found(
            "sku_not_found",
            format!("no product or stock with SKU {}", s.0),
        )),
    }
}

async fn inventory(state: &AppState, s: &Sku) -> Result<InventoryView, ApiError> {
    state.engine.read_answer(|r| inventory_in(r, s)).await
}

/// Adds stock to a SKU; the rights to sell it go to this node.
#[utoipa::path(post, path = "/api/v1/inventory/{sku}/restock", tag = "inventory", request_body = Restock,
    params(("sku" = String, Path, description = "SKU")), security(("bearer" = [])),
    responses((status = 200, description = "Stock after the restock", body = InventoryView),
        (status = 404, description = "No product has this SKU", body = ErrorBody)))]
pub async fn restock(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<Restock>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let s = Sku(sku("sku", &raw)?);
    if body.quantity == 0 || body.quantity > MAX_STOCK_QUANTITY {
        return Err(ApiError::field(
            "quantity",
            format!("must be between 1 and {MAX_STOCK_QUANTITY}"),
        ));
    }
    let known = state
        .engine
        .read_answer(|r| r.products_with_sku(&s.0).next().is_some())
        .await;
    if !known {
        return Err(ApiError::not_found(
            "sku_not_found",
            format!("no product has SKU {}", s.0),
        ));
    }
    let op = Op::Restock {
        sku: s.clone(),
        quantity: body.quantity,
    };
    write_answer(&state, op, |r| {
        Answer::json(StatusCode::OK, &inventory_in(r, &s)?)
    })
    .await?
}

/// A SKU's stock and the rights per node.
#[utoipa::path(get, path = "/api/v1/inventory/{sku}", tag = "inventory",
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, description = "Stock and rights", body = InventoryView),
        (status = 404, description = "Unknown SKU", body = ErrorBody)))]
pub async fn get_inventory(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<InventoryView>, ApiError> {
    let s = Sku(sku("sku", &raw)?);
    Ok(Json(inventory(&state, &s).await?))
}
