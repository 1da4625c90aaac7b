//! Order endpoints: checkout (with stock-rights transfers when this node is
//! short), reads, and status moves (ship forwarded to the selling node).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use crdt_core::status::OrderStatus;
use crdt_core::{AddressId, CheckoutItems, Op, OpError, OrderId, ProductId, Replica};
use uuid::Uuid;

use super::AppState;
use super::answer::{Answer, write_answer};
use super::dto::{Checkout, ListOrders, OrderPage, OrderView, page_limit, take_page};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, cart_param, get_param, path_param};
use crate::auth::Role;
use crate::engine::WriteError;

/// The order as `customer` (None: an admin) may see it, read from `r`.
pub(super) fn order_view_in(
    r: &Replica,
    id: OrderId,
    customer: Option<&str>,
) -> Result<OrderView, ApiError> {
    let view = r
        .state()
        .orders
        .get(&id)
        .and_then(|e| OrderView::new(id.0, e))
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("order {id} not found")))?;
    // Another customer's order is as unknown to this caller as a missing
    // one: the answer reveals nothing of whether it exists.
    match customer {
        Some(c) if c != view.customer_id => Err(ApiError::not_found(
            "order_not_found",
            format!("order {id} not found"),
        )),
        _ => Ok(view),
    }
}

pub(super) async fn order_view(
    state: &AppState,
    id: OrderId,
    caller: &Caller,
) -> Result<OrderView, ApiError> {
    let customer = caller.customer()?;
    state
        .engine
        .read_answer(|r| order_view_in(r, id, customer.as_deref()))
        .await
}

/// The answer naming an order that a checkout made: `status`, the order,
/// and its `Location`.
fn placed(status: StatusCode, view: &OrderView) -> Result<Answer, ApiError> {
    Ok(Answer::json(status, view)?.at(format!("/api/v1/orders/{}", view.id)))
}

/// [`placed`] for an order read now (one placed earlier).
async fn placed_earlier(
    state: &AppState,
    order: OrderId,
    caller: &Caller,
) -> Result<Answer, ApiError> {
    placed(StatusCode::OK, &order_view(state, order, caller).await?)
}

/// An address from `customer`'s address book (400 naming the field when
/// there is no such address: the body is wrong, not the path).
fn saved_address(
    state: &AppState,
    customer: &str,
    aid: AddressId,
) -> Result<crdt_core::order::Address, ApiError> {
    let account = customer.parse::<Uuid>().ok().map(crdt_core::AccountId);
    state
        .engine
        .peek(|r| {
            account
                .and_then(|id| r.account(&id))
                .and_then(|e| e.address(&aid).cloned())
        })
        .ok_or_else(|| {
            ApiError::field(
                "shippingAddressId",
                format!("{aid} is not an address in {customer}'s address book"),
            )
        })
}

/// Places an order from a cart or from line items, selling against this
/// node's stock rights — asking peers for rights when short, and answering
/// 409 `insufficient_stock` rather than overselling or waiting on a partition.
///
/// With an `Idempotency-Key`, the order's id is derived from the customer
/// and the key, so a retry on any node names the same order: a node that
/// already holds it answers it (200) instead of selling again. Without a
/// key, checking out a cart that an earlier checkout emptied answers that
/// order (200) — the retry of a checkout whose answer was lost.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = Checkout, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key names the same order on every node")),
    responses((status = 201, description = "Placed", body = OrderView, headers(("Location" = String, description = "The order"))),
        (status = 200, description = "Placed earlier, by this checkout's first attempt", body = OrderView),
        (status = 403, description = "Another customer's cart or id", body = ErrorBody),
        (status = 404, description = "A product does not exist", body = ErrorBody),
        (status = 409, description = "Insufficient stock, empty order or mixed currencies", body = ErrorBody)))]
pub async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Checkout>,
) -> Result<Answer, ApiError> {
    let claims = caller.any()?;
    let customer = match (&body.customer_id, claims.role) {
        (Some(c), _) => super::dto::text("customerId", c, 100, false)?,
        (None, Role::Customer) => claims.sub.clone(),
        (None, Role::Admin) => {
            return Err(ApiError::field(
                "customerId",
                "is required with an admin token",
            ));
        }
    };
    if claims.role == Role::Customer && claims.sub != customer {
        return Err(ApiError::forbidden(
            "a customer token can only place its own orders",
        ));
    }
    let items = match (body.cart_id, body.line_items) {
        (Some(c), None) => CheckoutItems::Cart(cart_param("cartId", &c)?),
        (None, Some(lines)) => {
            if lines.is_empty() || lines.len() > 100 {
                return Err(ApiError::field("lineItems", "must hold 1–100 lines"));
            }
            let mut out = Vec::with_capacity(lines.len());
            for (i, l) in lines.iter().enumerate() {
                if l.quantity == 0 || l.quantity > crdt_core::ops::MAX_LINE_QUANTITY {
                    return Err(ApiError::field(
                        &format!("lineItems[{i}].quantity"),
                        "must be between 1 and 1000000",
                    ));
                }
                out.push((ProductId(l.product_id), l.quantity));
            }
            CheckoutItems::Lines(out)
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give exactly one of cartId and lineItems",
            ));
        }
    };
    let shipping = match (&body.shipping_address, body.shipping_address_id) {
        (Some(a), None) => a.validate(&customer)?,
        (None, Some(aid)) => saved_address(&state, &customer, AddressId(aid))?,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give exactly one of shippingAddress and shippingAddressId",
            ));
        }
    };
    let email = match &body.email {
        Some(e) => {
            Some(crate::accounts::normalize_email(e).map_err(|why| ApiError::field("email", why))?)
        }
        None => None,
    };
    let key = super::idempotency::key_of(&headers)?;
    let order = match &key {
        Some(k) => OrderId::for_checkout(&customer, k),
        None => OrderId(Uuid::now_v7()),
    };
    // A retry that reaches a node holding the order (its own sale, or a
    // peer's under the same key) answers it; a customer never learns of
    // another's order this way, since the id is derived from their own id.
    if key.is_some()
        && state
            .engine
            .peek(|r| r.state().orders.get(&order).is_some())
    {
        return placed_earlier(&state, order, &caller).await;
    }
    let max_open = state.config.limits.max_open_orders_per_customer;
    let open = state.engine.peek(|r| r.open_orders_of(&customer));
    if open >= max_open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_open_orders",
            format!(
                "{customer} has {open} unpaid orders open, the most allowed: pay or cancel one first"
            ),
        ));
    }
    let cart = match &items {
        CheckoutItems::Cart(c) => Some(*c),
        CheckoutItems::Lines(_) => None,
    };
    let op = Op::Checkout {
        order,
        customer: customer.clone(),
        items,
        shipping,
        email,
    };
    // Each round either succeeds, fails for good, or obtains rights for one
    // short SKU; an order has at most 100 lines.
    let own = caller.customer()?;
    for _ in 0..=100 {
        let render = |r: &Replica| {
            placed(
                StatusCode::CREATED,
                &order_view_in(r, order, own.as_deref())?,
            )
        };
        match write_answer(&state, op.clone(), render).await {
            Ok(answer) => return answer,
            Err(WriteError::Op(OpError::OrderExists(_))) if key.is_some() => {
                return placed_earlier(&state, order, &caller).await;
            }
            Err(WriteError::Op(OpError::EmptyOrder)) => {
                // The cart was emptied by a checkout of this customer: that
                // is the order this request is asking for again.
                let earlier = cart.and_then(|c| {
                    state.engine.peek(|r| {
                        r.last_order_of_cart(&c).filter(|o| {
                            r.state()
                                .orders
                                .get(o)
                                .and_then(|e| e.header())
                                .is_some_and(|h| h.customer == customer)
                        })
                    })
                });
                return match earlier {
                    Some(o) => placed_earlier(&state, o, &caller).await,
                    None => Err(OpError::EmptyOrder.into()),
                };
            }
            // Ask peers even when this node's view of the stock says too
            // little: a restock elsewhere may not have arrived yet.
            Err(WriteError::Op(OpError::InsufficientStock {
                sku,
                needed,
                held,
                stock,
            })) => {
                let sku = crdt_core::Sku(sku);
                if !state.cluster.acquire_rights(&sku, needed).await {
                    return Err(OpError::InsufficientStock {
                        sku: sku.0,
                        needed,
                        held,
                        stock,
                    }
                    .into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "insufficient_stock",
        "could not gather the stock rights for this order",
    ))
}

/// One order.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order", body = OrderView),
        (status = 403, description = "Another customer's order", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = OrderId(get_param(&id, "order_not_found", "order")?);
    Ok(Json(order_view(&state, id, &caller).await?))
}

/// A page of orders, oldest first (by the time each was placed, then id);
/// customers see only their own.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListOrders), security(("bearer" = [])),
    responses((status = 200, description = "A page of orders", body = OrderPage)))]
pub async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListOrders>,
) -> Result<Json<OrderPage>, ApiError> {
    let own = caller.customer()?;
    let limit = page_limit(q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            ApiError::field(
                "status",
                "must be placed, paid, cancelled, shipped or delivered",
            )
        })?),
    };
    let who = match (own, q.customer_id) {
        (Some(c), Some(asked)) if c != asked => {
            return Err(ApiError::forbidden(
                "a customer token lists only its own orders",
            ));
        }
        (Some(c), _) => Some(c),
        (None, asked) => asked,
    };
    let cursor = q.cursor.map(OrderId);
    let page = state
        .engine
        .read_answer(|r| {
            // From the customer or status index, in id (time) order: a page
            // costs O(page), never a scan of every order.
            let matching = r
                .orders_after(who.as_deref(), status, cursor.as_ref())
                .filter_map(|id| {
                    r.state()
                        .orders
                        .get(&id)
                        .and_then(|e| OrderView::new(id.0, e))
                });
            let (items, next_cursor) = take_page(matching, limit, |v| v.id);
            OrderPage { items, next_cursor }
        })
        .await;
    Ok(Json(page))
}

fn parse_status(s: &str) -> Option<OrderStatus> {
    use OrderStatus::*;
    [Placed, Paid, Cancelled, Shipped, Delivered]
        .into_iter()
        .find(|x| x.as_str() == s)
}

async fn move_order(
    state: &AppState,
    caller: &Caller,
    id: &str,
    to: OrderStatus,
) -> Result<Answer, ApiError> {
    let claims = caller.any()?;
    let id = OrderId(path_param("id", id)?);
    // Customers may pay and cancel their own orders; shipping and delivery
    // are the merchant's.
    order_view(state, id, caller).await?;
    if claims.role == Role::Customer && matches!(to, OrderStatus::Shipped | OrderStatus::Delivered)
    {
        return Err(ApiError::forbidden(
            "only an admin ships or delivers orders",
        ));
    }
    // With payments configured, a customer pays through the provider; the
    // status-only move stays for admins (offline payments).
    if claims.role == Role::Customer && to == OrderStatus::Paid && state.config.payments.configured
    {
        return Err(ApiError::forbidden(
            "pay with POST /api/v1/orders/{id}/payments: marking an order paid is for admins",
        ));
    }
    // The seller captures a payment authorised for the ship before the goods
    // leave (on another node this does nothing: the seller does it when the
    // ship is forwarded to it).
    if to == OrderStatus::Shipped {
        state.payments.before_ship(id).await?;
    }
    let own = caller.customer()?;
    let render = |r: &Replica| Answer::json(StatusCode::OK, &order_view_in(r, id, own.as_deref())?);
    match write_answer(state, Op::MoveOrder { order: id, to }, render).await {
        Ok(answer) => return answer,
        Err(WriteError::Op(OpError::Unchanged)) => {}
        Err(WriteError::Op(OpError::NotSeller { seller, .. })) => {
            state.cluster.forward_move(seller, id, to).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Answer::json(StatusCode::OK, &order_view(state, id, caller).await?)
}

macro_rules! move_endpoint {
    ($name:ident, $path:literal, $status:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "orders",
            params(("id" = Uuid, Path, description = "Order id")), security(("bearer" = [])),
            responses((status = 200, description = "The order after the move", body = OrderView),
                (status = 403, description = "Not allowed for this caller", body = ErrorBody),
                (status = 404, description = "No such order", body = ErrorBody),
                (status = 409, description = "The order's status does not allow this move", body = ErrorBody),
                (status = 503, description = "The selling node is unreachable", body = ErrorBody)))]
        pub async fn $name(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Answer, ApiError> {
            move_order(&state, &caller, &id, $status).await
        }
    };
}

move_endpoint!(
    pay,
    "/api/v1/orders/{id}/pay",
    OrderStatus::Paid,
    "Marks an order paid without a provider (an offline payment). Once `[payments]` is configured, customers pay with `POST /orders/{id}/payments` instead, and this is for admins."
);
move_endpoint!(
    ship,
    "/api/v1/orders/{id}/ship",
    OrderStatus::Shipped,
    "Ships an order (on the selling node; forwarded there from others)."
);
move_endpoint!(
    deliver,
    "/api/v1/orders/{id}/deliver",
    OrderStatus::Delivered,
    "Marks a shipped order delivered."
);
move_endpoint!(
    cancel,
    "/api/v1/orders/{id}/cancel",
    OrderStatus::Cancelled,
    "Cancels an order; the selling node returns its units."
);
