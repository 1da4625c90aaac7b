//! Cart endpoints. A customer token reaches only its own carts: the first
//! write by a customer binds the cart to them, and anyone else gets 403.
//!
//! Ownership is checked before anything else — before the body's values,
//! before the line's existence — so another customer's cart answers 403
//! whatever the request, and status codes reveal nothing of its contents.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crdt_core::{CartId, Op, OpError, ProductId, Replica};

use super::AppState;
use super::answer::{Answer, write_answer};
use super::dto::{AddItem, CartPage, CartView, ListCarts, SetItem, page_limit, take_page};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, cart_param, path_param};
use crate::engine::WriteError;

/// Who acts on a cart: the token's customer (`None` for an admin) — or,
/// without a token, a guest, on a guest cart id a node minted (see
/// [`crate::accounts::tokens`]) that no account has bound yet (403 once one
/// has: sign in). A guest acts like an admin on that one cart, with no
/// owner to bind; signing in with the cart's id binds it.
async fn cart_caller(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    cart: CartId,
) -> Result<Option<String>, ApiError> {
    if caller.0.is_some() || !crate::accounts::is_guest_cart(raw, &state.tokens) {
        return caller.customer();
    }
    let bound = state.engine.peek(|r| {
        r.state()
            .carts
            .get(&cart)
            .and_then(|e| e.customer())
            .is_some()
    });
    if bound {
        return Err(ApiError::forbidden(
            "this guest cart now belongs to an account: sign in to use it",
        ));
    }
    Ok(None)
}

/// 403 when a customer acts on a cart bound to another customer.
async fn check_owner(
    state: &AppState,
    cart: CartId,
    customer: Option<&str>,
) -> Result<(), ApiError> {
    let Some(me) = customer else { return Ok(()) };
    let owner = state
        .engine
        .read_answer(|r| {
            r.state()
                .carts
                .get(&cart)
                .and_then(|e| e.customer().map(str::to_string))
        })
        .await;
    match owner {
        Some(o) if o != me => Err(ApiError::forbidden(format!(
            "cart {cart} belongs to another customer"
        ))),
        _ => Ok(()),
    }
}

/// The cart as `customer` may see it, read from `r`.
fn cart_view_in(
    r: &Replica,
    id: CartId,
    name: &str,
    customer: Option<&str>,
) -> Result<CartView, ApiError> {
    let e = r.state().carts.get(&id);
    match (customer, e.and_then(|e| e.customer())) {
        (Some(c), Some(owner)) if owner != c => Err(ApiError::forbidden(format!(
            "cart {id} belongs to another customer"
        ))),
        // A cart no customer has written (an admin's) shows a customer
        // nothing, exactly as a missing cart does.
        (Some(_), None) => Ok(CartView::new(name.to_string(), None)),
        _ => Ok(CartView::new(name.to_string(), e)),
    }
}

async fn cart_view(
    state: &AppState,
    id: CartId,
    name: &str,
    customer: Option<&str>,
) -> Result<CartView, ApiError> {
    state
        .engine
        .read_answer(|r| cart_view_in(r, id, name, customer))
        .await
}

/// Carries out a cart write and answers the cart it leaves (200), rendered
/// under the write's lock (see [`super::answer`]); `unchanged_ok` answers
/// the cart as it is when the write changes nothing.
async fn write_cart(
    state: &AppState,
    op: Op,
    id: CartId,
    name: &str,
    customer: Option<&str>,
    unchanged_ok: bool,
) -> Result<Answer, ApiError> {
    let render = |r: &Replica| Answer::json(StatusCode::OK, &cart_view_in(r, id, name, customer)?);
    match write_answer(state, op, render).await {
        Ok(answer) => answer,
        Err(WriteError::Op(OpError::Unchanged)) if unchanged_ok => {
            Answer::json(StatusCode::OK, &cart_view(state, id, name, customer).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The cart (empty if nothing was ever added).
#[utoipa::path(get, path = "/api/v1/carts/{cartId}", tag = "carts",
    params(("cartId" = String, Path, description = "Cart id: a UUID or 1–64 of A–Z a–z 0–9 . _ -; a guest cart id needs no token")), security(("bearer" = []), ()),
    responses((status = 200, description = "The cart", body = CartView),
        (status = 403, description = "Another customer's cart", body = ErrorBody),
        (status = 404, description = "Not a cart id (`cart_not_found`): neither a UUID nor a valid name", body = ErrorBody)))]
pub async fn get_cart(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CartView>, ApiError> {
    let cart = CartId::from_client(&id).map_err(|_| {
        ApiError::not_found(
            "cart_not_found",
            format!("cart {:.80} not found", id.escape_debug()),
        )
    })?;
    let customer = cart_caller(&state, &caller, &id, cart).await?;
    Ok(Json(
        cart_view(&state, cart, &id, customer.as_deref()).await?,
    ))
}

/// Adds units of a product to a cart (a cart holds no stock).
#[utoipa::path(post, path = "/api/v1/carts/{cartId}/items", tag = "carts", request_body = AddItem,
    params(("cartId" = String, Path, description = "Cart id: a UUID or 1–64 of A–Z a–z 0–9 . _ -; a guest cart id needs no token")), security(("bearer" = []), ()),
    responses((status = 200, description = "The cart after the change", body = CartView),
        (status = 403, description = "Another customer's cart", body = ErrorBody),
        (status = 404, description = "No such product", body = ErrorBody),
        (status = 409, description = "The cart holds as many lines as allowed (`cart_full`)", body = ErrorBody)))]
pub async fn add_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddItem>,
) -> Result<Answer, ApiError> {
    let cart = cart_param("cartId", &id)?;
    let customer = cart_caller(&state, &caller, &id, cart).await?;
    check_owner(&state, cart, customer.as_deref()).await?;
    if body.quantity == 0 || body.quantity > crdt_core::ops::MAX_LINE_QUANTITY {
        return Err(ApiError::field("quantity", "must be between 1 and 1000000"));
    }
    let op = Op::AddToCart {
        cart,
        product: ProductId(body.product_id),
        quantity: body.quantity,
        customer: customer.clone(),
    };
    write_cart(&state, op, cart, &id, customer.as_deref(), false).await
}

/// Sets a line's quantity; 0 removes the line.
#[utoipa::path(put, path = "/api/v1/carts/{cartId}/items/{productId}", tag = "carts", request_body = SetItem,
    params(("cartId" = String, Path, description = "Cart id: a UUID or 1–64 of A–Z a–z 0–9 . _ -; a guest cart id needs no token"), ("productId" = Uuid, Path, description = "Product id")),
    security(("bearer" = []), ()),
    responses((status = 200, description = "The cart after the change", body = CartView),
        (status = 403, description = "Another customer's cart", body = ErrorBody),
        (status = 404, description = "No such product or line", body = ErrorBody),
        (status = 409, description = "The cart holds as many lines as allowed (`cart_full`)", body = ErrorBody)))]
pub async fn set_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, product)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetItem>,
) -> Result<Answer, ApiError> {
    let cart = cart_param("cartId", &id)?;
    let customer = cart_caller(&state, &caller, &id, cart).await?;
    check_owner(&state, cart, customer.as_deref()).await?;
    let product = ProductId(path_param("productId", &product)?);
    if body.quantity > crdt_core::ops::MAX_LINE_QUANTITY {
        return Err(ApiError::field("quantity", "must be between 0 and 1000000"));
    }
    let op = Op::SetCartItem {
        cart,
        product,
        quantity: body.quantity,
        customer: customer.clone(),
    };
    write_cart(&state, op, cart, &id, customer.as_deref(), true).await
}

/// Removes a line from a cart.
#[utoipa::path(delete, path = "/api/v1/carts/{cartId}/items/{productId}", tag = "carts",
    params(("cartId" = String, Path, description = "Cart id: a UUID or 1–64 of A–Z a–z 0–9 . _ -; a guest cart id needs no token"), ("productId" = Uuid, Path, description = "Product id")),
    security(("bearer" = []), ()),
    responses((status = 200, description = "The cart after the change", body = CartView),
        (status = 403, description = "Another customer's cart", body = ErrorBody),
        (status = 404, description = "The product is not in the cart", body = ErrorBody)))]
pub async fn remove_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, product)): Path<(String, String)>,
) -> Result<Answer, ApiError> {
    let cart = cart_param("cartId", &id)?;
    let customer = cart_caller(&state, &caller, &id, cart).await?;
    check_owner(&state, cart, customer.as_deref()).await?;
    let product = ProductId(path_param("productId", &product)?);
    let op = Op::RemoveCartItem {
        cart,
        product,
        customer: customer.clone(),
    };
    write_cart(&state, op, cart, &id, customer.as_deref(), false).await
}

/// A page of carts (admin).
#[utoipa::path(get, path = "/api/v1/carts", tag = "carts", params(ListCarts), security(("bearer" = [])),
    responses((status = 200, description = "A page of carts", body = CartPage)))]
pub async fn list_carts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListCarts>,
) -> Result<Json<CartPage>, ApiError> {
    caller.admin()?;
    let limit = page_limit(q.limit)?;
    let cursor = q.cursor.map(CartId);
    let page = state
        .engine
        .read_answer(|r| {
            let all = r
                .state()
                .carts
                .iter_after(cursor.as_ref())
                .map(|(id, e)| (id.0, CartView::new(id.to_string(), Some(e))));
            let (items, next_cursor) = take_page(all, limit, |c| c.0);
            let items = items.into_iter().map(|(_, v)| v).collect();
            CartPage { items, next_cursor }
        })
        .await;
    Ok(Json(page))
}
