//! Accounts as admins see them (`/api/v1/customers*`, `/api/v1/staff`).
//! Audience: admin tokens (the cluster's, or a staff account's) only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crdt_core::account::AccountRole;
use crdt_core::ops::AccountChange;
use crdt_core::{AccountId, Op, Replica};

use super::AppState;
use super::answer::{Answer, write_or_current};
use super::auth::{create_account, registration};
use super::dto::{AccountView, CustomerPage, ListCustomers, Register, page_limit, take_page};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller, get_param, path_param};
use crate::accounts;

fn view_in(r: &Replica, id: AccountId) -> Result<AccountView, ApiError> {
    r.account(&id)
        .map(|e| AccountView::new(id, e))
        .ok_or_else(|| {
            ApiError::not_found("customer_not_found", format!("customer {id} not found"))
        })
}

/// A page of accounts, or the one with an e-mail (admin).
#[utoipa::path(get, path = "/api/v1/customers", tag = "accounts", params(ListCustomers), security(("bearer" = [])),
    responses((status = 200, description = "A page of accounts", body = CustomerPage)))]
pub async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListCustomers>,
) -> Result<Json<CustomerPage>, ApiError> {
    caller.admin()?;
    let limit = page_limit(q.limit)?;
    let email = q
        .email
        .as_deref()
        .map(accounts::normalize_email)
        .transpose()
        .map_err(|e| ApiError::field("email", e))?;
    let cursor = q.cursor.map(AccountId);
    let page = state
        .engine
        .read_answer(|r| {
            if let Some(email) = &email {
                let items = r
                    .account_by_email(email)
                    .map(|(id, e)| AccountView::new(id, e))
                    .into_iter()
                    .collect();
                return CustomerPage {
                    items,
                    next_cursor: None,
                };
            }
            let all = r
                .accounts_after(cursor.as_ref())
                .map(|(id, e)| AccountView::new(*id, e));
            let (items, next_cursor) = take_page(all, limit, |v| v.id);
            CustomerPage { items, next_cursor }
        })
        .await;
    Ok(Json(page))
}

/// One account (admin).
#[utoipa::path(get, path = "/api/v1/customers/{customerId}", tag = "accounts", security(("bearer" = [])),
    params(("customerId" = Uuid, Path, description = "Account id")),
    responses((status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such account (`customer_not_found`)", body = ErrorBody)))]
pub async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    caller.admin()?;
    let id = AccountId(get_param(&id, "customer_not_found", "customer")?);
    Ok(Json(state.engine.read_answer(|r| view_in(r, id)).await?))
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    disabled: bool,
) -> Result<Answer, ApiError> {
    caller.admin()?;
    let id = AccountId(path_param("customerId", id)?);
    let op = Op::Account {
        id,
        change: AccountChange::SetDisabled(disabled),
    };
    write_or_current(state, op, |r| {
        Answer::json(StatusCode::OK, &view_in(r, id)?)
    })
    .await
}

/// Disables an account on every node: its tokens are refused at once and
/// its sessions end (admin).
#[utoipa::path(post, path = "/api/v1/customers/{customerId}/disable", tag = "accounts", security(("bearer" = [])),
    params(("customerId" = Uuid, Path, description = "Account id")),
    responses((status = 200, description = "The account, disabled", body = AccountView),
        (status = 404, description = "No such account (`customer_not_found`)", body = ErrorBody)))]
pub async fn disable_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    set_disabled(&state, &caller, &id, true).await
}

/// Enables a disabled account; it signs in again (admin).
#[utoipa::path(post, path = "/api/v1/customers/{customerId}/enable", tag = "accounts", security(("bearer" = [])),
    params(("customerId" = Uuid, Path, description = "Account id")),
    responses((status = 200, description = "The account, enabled", body = AccountView),
        (status = 404, description = "No such account (`customer_not_found`)", body = ErrorBody)))]
pub async fn enable_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Answer, ApiError> {
    set_disabled(&state, &caller, &id, false).await
}

/// Creates a staff account with the admin role (admin): operators sign in
/// instead of minting tokens with the CLI.
#[utoipa::path(post, path = "/api/v1/staff", tag = "accounts", request_body = Register, security(("bearer" = [])),
    responses((status = 201, description = "The staff account", body = AccountView),
        (status = 409, description = "The e-mail has an account (`email_taken`)", body = ErrorBody)))]
pub async fn create_staff(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    caller.admin()?;
    if body.cart_id.is_some() {
        return Err(ApiError::field("cartId", "a staff account takes no cart"));
    }
    let (email, name) = registration(&body)?;
    let id = create_account(
        &state,
        email,
        name,
        body.password,
        AccountRole::Admin,
        None,
        None,
    )
    .await?;
    let v = state.engine.read_answer(|r| view_in(r, id)).await?;
    Ok((StatusCode::CREATED, Json(v)))
}
