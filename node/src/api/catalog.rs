//! Catalog and search endpoints.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crdt_core::{Op, OpError, ProductId, Replica};
use uuid::Uuid;

use super::AppState;
use super::answer::{Answer, write_answer};
use super::dto::{
    CreateProduct, ListProducts, PatchProduct, PriceHistory, ProductPage, ProductView,
    SearchHitView, SearchQuery, SearchResults, SetPrice, page_limit, take_page,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, get_param, path_param};
use crate::engine::WriteError;

fn product_view(r: &Replica, id: &ProductId) -> Option<ProductView> {
    let rec = r.product(id)?;
    let stock = r
        .state()
        .stock
        .get(&crdt_core::Sku(rec.sku.value.clone()))
        .map(|c| c.stock())
        .unwrap_or(0);
    Some(ProductView::new(id.0, &rec, stock))
}

fn view_or_404_in(r: &Replica, id: ProductId) -> Result<ProductView, ApiError> {
    product_view(r, &id)
        .ok_or_else(|| ApiError::not_found("product_not_found", format!("product {id} not found")))
}

async fn view_or_404(state: &AppState, id: ProductId) -> Result<ProductView, ApiError> {
    state.engine.read_answer(|r| view_or_404_in(r, id)).await
}

/// Carries out a product write and answers the product it leaves with
/// `status`, rendered under the write's lock (see [`super::answer`]);
/// `unchanged_ok` answers the product as it is when nothing changes.
async fn write_product(
    state: &AppState,
    op: Op,
    id: ProductId,
    status: StatusCode,
    unchanged_ok: bool,
) -> Result<Answer, ApiError> {
    let render = |r: &Replica| Answer::json(status, &view_or_404_in(r, id)?);
    match write_answer(state, op, render).await {
        Ok(answer) => answer,
        Err(WriteError::Op(OpError::Unchanged)) if unchanged_ok => {
            Answer::json(status, &view_or_404(state, id).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates a product.
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = CreateProduct,
    security(("bearer" = [])),
    responses((status = 201, description = "Created", body = ProductView),
        (status = 409, description = "A product with this SKU exists", body = ErrorBody)))]
pub async fn create_product(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProduct>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let (product, initial_stock) = body.validate(state.search.dim())?;
    let id = ProductId(Uuid::now_v7());
    let op = Op::CreateProduct {
        id,
        product,
        initial_stock,
    };
    write_product(&state, op, id, StatusCode::CREATED, false).await
}

/// One product with its stock.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = ProductView),
        (status = 404, description = "No such product", body = ErrorBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let id = ProductId(get_param(&id, "product_not_found", "product")?);
    Ok(Json(view_or_404(&state, id).await?))
}

/// A product's price history (each change that won, oldest first).
#[utoipa::path(get, path = "/api/v1/products/{id}/history", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    responses((status = 200, description = "Price history", body = PriceHistory),
        (status = 404, description = "No such product", body = ErrorBody)))]
pub async fn price_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PriceHistory>, ApiError> {
    let id = ProductId(get_param(&id, "product_not_found", "product")?);
    state
        .engine
        .read_answer(|r| r.product(&id).map(|rec| PriceHistory::new(&rec)))
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found("product_not_found", format!("product {id} not found")))
}

/// A page of products, optionally of one category.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListProducts),
    responses((status = 200, description = "A page of products", body = ProductPage)))]
pub async fn list_products(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListProducts>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    let cursor = q.cursor.map(ProductId);
    let page = state
        .engine
        .read_answer(|r| {
            // A category listing walks its index; either way a page costs
            // O(page), whatever the size of the catalog.
            let (items, next_cursor) = match q.category.as_deref() {
                Some(c) => take_page(
                    r.products_in_category(c, cursor.as_ref())
                        .filter_map(|id| product_view(r, id)),
                    limit,
                    |v| v.id,
                ),
                None => take_page(
                    r.state()
                        .products
                        .iter_after(cursor.as_ref())
                        .filter_map(|(id, _)| product_view(r, id)),
                    limit,
                    |v| v.id,
                ),
            };
            ProductPage { items, next_cursor }
        })
        .await;
    Ok(Json(page))
}

/// Changes some fields of a product (last writer wins, field by field).
#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "catalog", request_body = PatchProduct,
    params(("id" = Uuid, Path, description = "Product id")), security(("bearer" = [])),
    responses((status = 200, description = "The product after the change", body = ProductView),
        (status = 404, description = "No such product", body = ErrorBody)))]
pub async fn patch_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchProduct>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let id = ProductId(path_param("id", &id)?);
    let current = state
        .engine
        .read_answer(|r| r.product(&id).map(|p| p.price.value.currency))
        .await
        .ok_or_else(|| {
            ApiError::not_found("product_not_found", format!("product {id} not found"))
        })?;
    let patch = body.validate(current, state.search.dim())?;
    let op = Op::UpdateProduct { id, patch };
    write_product(&state, op, id, StatusCode::OK, true).await
}

/// Sets a product's price, with a reason for the price history.
#[utoipa::path(put, path = "/api/v1/products/{id}/price", tag = "catalog", request_body = SetPrice,
    params(("id" = Uuid, Path, description = "Product id")), security(("bearer" = [])),
    responses((status = 200, description = "The product after the change", body = ProductView),
        (status = 404, description = "No such product", body = ErrorBody)))]
pub async fn set_price(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetPrice>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let id = ProductId(path_param("id", &id)?);
    let (price, reason) = body.validate()?;
    let patch = crdt_core::catalog::ProductPatch {
        price: Some((price, reason)),
        ..Default::default()
    };
    let op = Op::UpdateProduct { id, patch };
    write_product(&state, op, id, StatusCode::OK, false).await
}

/// Removes a product (observed-remove: a concurrent edit elsewhere keeps it).
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such product", body = ErrorBody)))]
pub async fn delete_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let id = ProductId(path_param("id", &id)?);
    let op = Op::DeleteProduct { id };
    write_answer(&state, op, |_| Ok(Answer::empty(StatusCode::NO_CONTENT))).await?
}

/// Semantic search over this node's replica of the catalog, fused with a
/// lexical ranking so exact names and SKUs come first.
#[utoipa::path(get, path = "/api/v1/search/products", tag = "search", params(SearchQuery),
    responses((status = 200, description = "Hits, best first", body = SearchResults),
        (status = 503, description = "The index is still loading", body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    let text = q.q.trim();
    if text.is_empty() || text.chars().count() > 500 {
        return Err(ApiError::field("q", "must be 1–500 characters"));
    }
    let k = match q.k {
        None => 10,
        Some(k) if (1..=100).contains(&k) => k as usize,
        Some(_) => return Err(ApiError::field("k", "must be between 1 and 100")),
    };
    if !state.search.is_ready() {
        return Err(ApiError::unavailable(
            "index_loading",
            "the search index is still loading",
        ));
    }
    let hits = state.search.search(text, k, q.category.as_deref());
    let views = state
        .engine
        .read_answer(|r| {
            hits.iter()
                .filter_map(|h| {
                    product_view(r, &h.id).map(|product| SearchHitView {
                        id: h.id.0,
                        score: h.score,
                        product,
                    })
                })
                .collect()
        })
        .await;
    Ok(Json(SearchResults { hits: views }))
}
