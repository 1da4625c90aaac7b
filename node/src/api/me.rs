//! The signed-in account's own resources: profile, password and address
//! book (`/api/v1/me*`). Audience: the account's own token only — the
//! subject of the token is the account, so nobody reaches another's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crdt_core::ops::AccountChange;
use crdt_core::{AccountId, AddressId, Op, Replica, SessionId};

use super::AppState;
use super::answer::{Answer, write_answer, write_or_current};
use super::dto::{self, AccountView, AddressDto, ChangePassword, PatchMe, SavedAddress};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller, get_param, path_param};
use crate::accounts;

/// The account and session the caller's token names, or 401/403.
pub(super) fn me(caller: &Caller) -> Result<(AccountId, Option<SessionId>), ApiError> {
    let c = caller.any()?;
    let id =
        c.sub.parse::<uuid::Uuid>().map(AccountId).map_err(|_| {
            ApiError::forbidden("this token belongs to no account (an operator token)")
        })?;
    let sid = c
        .sid
        .as_deref()
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .map(SessionId);
    Ok((id, sid))
}

fn view_in(r: &Replica, id: AccountId) -> Result<AccountView, ApiError> {
    r.account(&id)
        .map(|e| AccountView::new(id, e))
        .ok_or_else(|| {
            ApiError::not_found(
                "customer_not_found",
                "this account is not known on this node yet: retry shortly",
            )
        })
}

/// Writes an account change and answers the account it leaves.
async fn write_me(
    state: &AppState,
    id: AccountId,
    change: AccountChange,
) -> Result<Answer, ApiError> {
    let op = Op::Account { id, change };
    write_or_current(state, op, |r| {
        Answer::json(StatusCode::OK, &view_in(r, id)?)
    })
    .await
}

/// The caller's account, with its address book.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The account", body = AccountView)))]
pub async fn get_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AccountView>, ApiError> {
    let (id, _) = me(&caller)?;
    Ok(Json(state.engine.read_answer(|r| view_in(r, id)).await?))
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/api/v1/me", tag = "accounts", request_body = PatchMe, security(("bearer" = [])),
    responses((status = 200, description = "The account after the change", body = AccountView)))]
pub async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PatchMe>,
) -> Result<Answer, ApiError> {
    let (id, _) = me(&caller)?;
    let Some(name) = body.name else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "name: give a field to change",
        ));
    };
    let name = dto::text("name", &name, 100, false)?;
    write_me(&state, id, AccountChange::SetName(name)).await
}

/// Changes the password; every other session of the account is signed out.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "accounts", request_body = ChangePassword, security(("bearer" = [])),
    responses((status = 204, description = "Changed"),
        (status = 401, description = "`currentPassword` is wrong (`invalid_credentials`)", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Answer, ApiError> {
    let (id, sid) = me(&caller)?;
    if body.current_password.len() > accounts::MAX_PASSWORD_BYTES {
        return Err(ApiError::field(
            "currentPassword",
            "must be at most 256 bytes",
        ));
    }
    accounts::check_password(&body.new_password).map_err(|e| ApiError::field("newPassword", e))?;
    let hash = state.engine.peek(|r| {
        r.account(&id)
            .and_then(|e| e.password.as_ref().map(|p| p.value.clone()))
    });
    if !state
        .accounts
        .passwords
        .verify(body.current_password, hash)
        .await
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "currentPassword: wrong password",
        ));
    }
    let new_hash = state
        .accounts
        .passwords
        .hash(body.new_password)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let op = Op::Account {
        id,
        change: AccountChange::SetPassword {
            password_hash: new_hash,
            keep: sid,
        },
    };
    write_answer(&state, op, |_| Ok(Answer::empty(StatusCode::NO_CONTENT))).await?
}

/// The caller's address book.
#[utoipa::path(get, path = "/api/v1/me/addresses", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The addresses", body = [SavedAddress])))]
pub async fn list_addresses(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SavedAddress>>, ApiError> {
    let (id, _) = me(&caller)?;
    let v = state.engine.read_answer(|r| view_in(r, id)).await?;
    Ok(Json(v.addresses))
}

fn address_in(r: &Replica, id: AccountId, aid: AddressId) -> Result<SavedAddress, ApiError> {
    r.account(&id)
        .and_then(|e| e.address(&aid))
        .map(|a| SavedAddress::new(aid, a))
        .ok_or_else(|| ApiError::not_found("address_not_found", format!("address {aid} not found")))
}

/// Adds an address to the caller's address book.
#[utoipa::path(post, path = "/api/v1/me/addresses", tag = "accounts", request_body = AddressDto, security(("bearer" = [])),
    responses((status = 201, description = "The new address", body = SavedAddress),
        (status = 409, description = "The address book is full (`address_book_full`)", body = ErrorBody)))]
pub async fn add_address(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AddressDto>,
) -> Result<Answer, ApiError> {
    let (id, _) = me(&caller)?;
    let recipient = state
        .engine
        .peek(|r| r.account(&id).map(|e| e.name().to_string()))
        .unwrap_or_default();
    let address = body.validate_at("", &recipient)?;
    let aid = AddressId(uuid::Uuid::now_v7());
    let op = Op::Account {
        id,
        change: AccountChange::PutAddress {
            id: aid,
            address: Some(address),
        },
    };
    write_answer(&state, op, |r| {
        Ok(Answer::json(StatusCode::CREATED, &address_in(r, id, aid)?)?
            .at(format!("/api/v1/me/addresses/{aid}")))
    })
    .await?
}

/// One address of the caller's address book.
#[utoipa::path(get, path = "/api/v1/me/addresses/{addressId}", tag = "accounts", security(("bearer" = [])),
    params(("addressId" = Uuid, Path, description = "Address id")),
    responses((status = 200, description = "The address", body = SavedAddress),
        (status = 404, description = "No such address (`address_not_found`)", body = ErrorBody)))]
pub async fn get_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(aid): Path<String>,
) -> Result<Json<SavedAddress>, ApiError> {
    let (id, _) = me(&caller)?;
    let aid = AddressId(get_param(&aid, "address_not_found", "address")?);
    Ok(Json(
        state.engine.read_answer(|r| address_in(r, id, aid)).await?,
    ))
}

/// Replaces an address of the caller's address book.
#[utoipa::path(patch, path = "/api/v1/me/addresses/{addressId}", tag = "accounts", request_body = AddressDto, security(("bearer" = [])),
    params(("addressId" = Uuid, Path, description = "Address id")),
    responses((status = 200, description = "The address after the change", body = SavedAddress),
        (status = 404, description = "No such address (`address_not_found`)", body = ErrorBody)))]
pub async fn patch_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(aid): Path<String>,
    ApiJson(body): ApiJson<AddressDto>,
) -> Result<Answer, ApiError> {
    let (id, _) = me(&caller)?;
    let aid = AddressId(path_param("addressId", &aid)?);
    let recipient = state
        .engine
        .peek(|r| r.account(&id).map(|e| e.name().to_string()))
        .unwrap_or_default();
    let address = body.validate_at("", &recipient)?;
    let op = Op::Account {
        id,
        change: AccountChange::PutAddress {
            id: aid,
            address: Some(address),
        },
    };
    write_or_current(&state, op, |r| {
        Answer::json(StatusCode::OK, &address_in(r, id, aid)?)
    })
    .await
}

/// Deletes an address from the caller's address book.
#[utoipa::path(delete, path = "/api/v1/me/addresses/{addressId}", tag = "accounts", security(("bearer" = [])),
    params(("addressId" = Uuid, Path, description = "Address id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such address (`address_not_found`)", body = ErrorBody)))]
pub async fn delete_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(aid): Path<String>,
) -> Result<Answer, ApiError> {
    let (id, _) = me(&caller)?;
    let aid = AddressId(path_param("addressId", &aid)?);
    let op = Op::Account {
        id,
        change: AccountChange::PutAddress {
            id: aid,
            address: None,
        },
    };
    write_answer(&state, op, |_| Ok(Answer::empty(StatusCode::NO_CONTENT))).await?
}
