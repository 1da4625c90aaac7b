//! Sign-up, sign-in, token refresh and sign-out (`/api/v1/auth/*`), and
//! guest carts.
//!
//! Audience: anonymous callers (register, login, refresh, a guest cart id);
//! the session's own token (logout). Answers carry tokens, so they are never
//! recorded under an `Idempotency-Key` (the layer passes anonymous requests
//! through); each route is safe to retry as it is — a repeated registration
//! gets 409 `email_taken` and the client signs in, a repeated login opens
//! another session, a repeated refresh within the grace window gets the same
//! pair, a repeated logout changes nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use crdt_core::account::{AccountRole, RefreshVerdict, Rotation};
use crdt_core::ops::{AccountChange, AccountError};
use crdt_core::{AccountId, CartId, Op, OpError, SessionId};

use super::AppState;
use super::answer::Answer;
use super::dto::{self, AccountView, GuestCart, Login, Refresh, Register, Session, TokenPair};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller, ClientIp};
use crate::accounts::{self, RefreshToken};
use crate::clock;
use crate::engine::WriteError;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// A guest cart named in a sign-in body: it must be one a node minted.
fn guest_cart(state: &AppState, raw: Option<&str>) -> Result<Option<(String, CartId)>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    if !accounts::is_guest_cart(raw, &state.tokens) {
        return Err(ApiError::field(
            "cartId",
            "must be a guest cart id from POST /api/v1/carts/guest",
        ));
    }
    let id = CartId::from_client(raw).map_err(|e| ApiError::field("cartId", e))?;
    Ok(Some((raw.to_string(), id)))
}

/// The session answer for `account` at the session's first rotation.
fn session_answer(
    state: &AppState,
    account: AccountId,
    session: SessionId,
    cart: Option<(String, CartId)>,
) -> Result<Session, ApiError> {
    let (view, rotation, role, bound) = state
        .engine
        .peek(|r| {
            let e = r.account(&account)?;
            let s = e.sessions.get(&session)?;
            let bound = cart.as_ref().and_then(|(name, id)| {
                let owner = r.state().carts.get(id).and_then(|c| c.customer());
                (owner == Some(account.to_string().as_str())).then(|| name.clone())
            });
            Some((AccountView::new(account, e), s.rotation, e.role(), bound))
        })
        .ok_or_else(|| internal("the new session is not in the replica"))?;
    let pair = pair(state, account, role, session, rotation);
    Ok(Session {
        account: view,
        access_token: pair.access_token,
        token_type: "Bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token,
        cart_id: bound,
    })
}

fn pair(
    state: &AppState,
    account: AccountId,
    role: AccountRole,
    session: SessionId,
    rotation: Rotation,
) -> TokenPair {
    let cfg = &state.accounts.config;
    let (access_token, _) =
        accounts::access_token(&state.tokens, account, role, session, rotation, cfg);
    TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: cfg.access_token.as_secs(),
        refresh_token: RefreshToken {
            account,
            session,
            generation: rotation.generation,
        }
        .encode(&state.tokens),
    }
}

/// Validates a registration body into (e-mail, name).
pub(super) fn registration(body: &Register) -> Result<(String, String), ApiError> {
    let email = accounts::normalize_email(&body.email).map_err(|e| ApiError::field("email", e))?;
    accounts::check_password(&body.password).map_err(|e| ApiError::field("password", e))?;
    let name = dto::text("name", &body.name, 100, false)?;
    Ok((email, name))
}

/// Creates an account with `role`; answers its id and first session.
pub(super) async fn create_account(
    state: &AppState,
    email: String,
    name: String,
    password: String,
    role: AccountRole,
    session: Option<SessionId>,
    cart: Option<CartId>,
) -> Result<AccountId, ApiError> {
    // Refuse a taken e-mail before paying for a hash (the op checks again).
    if state.engine.peek(|r| r.account_by_email(&email).is_some()) {
        return Err(OpError::Account(AccountError::EmailTaken).into());
    }
    let hash = state
        .accounts
        .passwords
        .hash(password)
        .await
        .map_err(internal)?;
    let id = AccountId(uuid::Uuid::new_v4());
    let op = Op::Account {
        id,
        change: AccountChange::Register {
            email,
            name,
            password_hash: hash,
            role,
            session,
            cart,
        },
    };
    state.engine.write(op).await.map_err(ApiError::from)?;
    Ok(id)
}

/// Registers a customer and signs them in.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "accounts", request_body = Register,
    responses((status = 201, description = "The account and its first session", body = Session),
        (status = 409, description = "The e-mail has an account (`email_taken`)", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`too_many_registrations`)", body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let (email, name) = registration(&body)?;
    let cart = guest_cart(&state, body.cart_id.as_deref())?;
    state.accounts.guard.register(ip).map_err(|wait| {
        ApiError::too_many(
            "too_many_registrations",
            "too many registrations from this address: try again later",
            wait,
        )
    })?;
    let session = SessionId(uuid::Uuid::new_v4());
    let id = create_account(
        &state,
        email,
        name,
        body.password,
        AccountRole::Customer,
        Some(session),
        cart.as_ref().map(|c| c.1),
    )
    .await?;
    metrics::counter!("concord_accounts_registered_total").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(session_answer(&state, id, session, cart)?),
    ))
}

/// Signs in with e-mail and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "accounts", request_body = Login,
    responses((status = 200, description = "A new session", body = Session),
        (status = 401, description = "Wrong e-mail or password (`invalid_credentials`)", body = ErrorBody),
        (status = 409, description = "The password is that of a registration that lost its e-mail to a concurrent one on another node (`account_superseded`)", body = ErrorBody),
        (status = 403, description = "The account is disabled (`account_disabled`)", body = ErrorBody),
        (status = 429, description = "Too many logins from this address, or the account is locked after failed attempts (`account_locked`)", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<Session>, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong e-mail or password",
        )
    };
    if body.password.len() > accounts::MAX_PASSWORD_BYTES {
        return Err(ApiError::field("password", "must be at most 256 bytes"));
    }
    let email = accounts::normalize_email(&body.email).map_err(|e| ApiError::field("email", e))?;
    let cart = guest_cart(&state, body.cart_id.as_deref())?;
    state.accounts.guard.login(ip).map_err(|wait| {
        ApiError::too_many(
            "too_many_logins",
            "too many logins from this address: try again later",
            wait,
        )
    })?;
    let cfg = &state.accounts.config;
    let now = clock::now_ms();
    let window = crate::config::accounts::LOCKOUT_WINDOW;
    let found = state.engine.peek(|r| {
        r.account_by_email(&email).map(|(id, e)| {
            (
                id,
                e.password.as_ref().map(|p| p.value.clone()),
                e.failures_since(now, window.as_millis() as u64),
                e.is_disabled(),
            )
        })
    });
    let account_failures = found.as_ref().map_or(0, |f| f.2);
    let ip_failures = state.accounts.guard.failures(ip, now);
    if account_failures >= cfg.lockout_failures || ip_failures >= cfg.lockout_failures * 2 {
        return Err(ApiError::too_many(
            "account_locked",
            "too many failed logins: try again in 15 minutes",
            window.as_secs(),
        ));
    }
    let delay =
        accounts::guard::delay_for(account_failures.max(ip_failures), cfg.delay_after_failures);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let hash = found.as_ref().and_then(|f| f.1.clone());
    let password = body.password;
    let ok = state
        .accounts
        .passwords
        .verify(password.clone(), hash)
        .await;
    let Some((id, _, _, disabled)) = found.clone().filter(|_| ok) else {
        state.accounts.guard.failed(ip, now);
        metrics::counter!("concord_logins_total", "outcome" => "failed").increment(1);
        if let Some((id, ..)) = found {
            let op = Op::Account {
                id,
                change: AccountChange::FailedLogin,
            };
            state.engine.write(op).await.map_err(ApiError::from)?;
        }
        if let Some(e) = superseded_match(&state, &email, &password).await {
            return Err(e);
        }
        return Err(wrong());
    };
    if disabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "this account is disabled",
        ));
    }
    let session = SessionId(uuid::Uuid::new_v4());
    let op = Op::Account {
        id,
        change: AccountChange::StartSession {
            session,
            cart: cart.as_ref().map(|c| c.1),
        },
    };
    state.engine.write(op).await.map_err(ApiError::from)?;
    metrics::counter!("concord_logins_total", "outcome" => "ok").increment(1);
    Ok(Json(session_answer(&state, id, session, cart)?))
}

/// After a wrong password on an e-mail's owner: whether the password was
/// that of a registration the owner superseded — the shopper who lost a
/// concurrent registration is told so, instead of "wrong password".
async fn superseded_match(state: &AppState, email: &str, password: &str) -> Option<ApiError> {
    let losers: Vec<String> = state.engine.peek(|r| {
        r.accounts_with_email(email)
            .iter()
            .skip(1)
            .filter_map(|id| r.account(id)?.password.as_ref().map(|p| p.value.clone()))
            .collect()
    });
    for hash in losers {
        if state
            .accounts
            .passwords
            .verify(password.to_string(), Some(hash))
            .await
        {
            return Some(ApiError::new(
                StatusCode::CONFLICT,
                "account_superseded",
                "this e-mail was registered twice at the same time, on two nodes that could not reach each other, and the other registration owns it: your registration is closed: sign in with the password of the registration that owns the e-mail, or contact the store",
            ));
        }
    }
    None
}

/// Exchanges a refresh token for a new pair (the old one is then spent).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "accounts", request_body = Refresh,
    responses((status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused token (a reuse signs the whole session out)", body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<TokenPair>, ApiError> {
    let refused = |m: &str| ApiError::unauthorized(m.to_string());
    let token = RefreshToken::decode(body.refresh_token.trim(), &state.tokens)
        .ok_or_else(|| ApiError::field("refreshToken", "is not a refresh token of this cluster"))?;
    let cfg = state.accounts.config.clone();
    for _ in 0..4 {
        let now = clock::now_ms();
        let found = state.engine.peek(|r| {
            let id = token.account;
            r.account(&id).map(|e| {
                let verdict = e.refresh_verdict(
                    &token.session,
                    token.generation,
                    now,
                    cfg.refresh_grace.as_millis() as u64,
                    cfg.refresh_token.as_millis() as u64,
                );
                (id, e.role(), verdict, accounts::account_standing(r, &id, e))
            })
        });
        let Some((id, role, verdict, standing)) = found else {
            return Err(refused(
                "this session is unknown here or has ended: sign in again",
            ));
        };
        standing.map_err(|e| ApiError::unauthorized(e.to_string()))?;
        match verdict {
            RefreshVerdict::Rotate { .. } => {
                let op = Op::Account {
                    id,
                    change: AccountChange::Rotate {
                        session: token.session,
                        from: token.generation,
                    },
                };
                match state.engine.write(op).await {
                    Ok(_) => {}
                    // Rotated meanwhile (a concurrent retry): decide again.
                    Err(WriteError::Op(OpError::Account(AccountError::StaleGeneration))) => {
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                let rotation = state
                    .engine
                    .peek(|r| {
                        r.account(&id)
                            .and_then(|e| e.sessions.get(&token.session))
                            .map(|s| s.rotation)
                    })
                    .ok_or_else(|| internal("the rotated session is not in the replica"))?;
                return Ok(Json(pair(&state, id, role, token.session, rotation)));
            }
            RefreshVerdict::Replay(rotation) => {
                // The answer must not leave before the rotation it shows is
                // durable here.
                state.engine.read(|_| ()).await;
                return Ok(Json(pair(&state, id, role, token.session, rotation)));
            }
            RefreshVerdict::Reused => {
                tracing::warn!(account = %id, session = %token.session, "a rotated refresh token was reused: the session is revoked");
                metrics::counter!("concord_refresh_reuse_total").increment(1);
                let op = Op::Account {
                    id,
                    change: AccountChange::Revoke {
                        sessions: vec![token.session],
                    },
                };
                match state.engine.write(op).await {
                    Ok(_) | Err(WriteError::Op(OpError::Unchanged)) => {}
                    Err(e) => return Err(e.into()),
                }
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "refresh_token_reused",
                    "this refresh token was already used: the session is signed out everywhere",
                ));
            }
            RefreshVerdict::Refused => {
                return Err(refused(
                    "this refresh token has expired or its session has ended",
                ));
            }
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "refresh_in_flight",
        "the session is being refreshed concurrently: retry",
    ))
}

/// Signs the calling session out, on every node.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Signed out (also when already signed out)")))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Answer, ApiError> {
    let claims = caller.any()?;
    let (Ok(id), Some(Ok(sid))) = (
        claims.sub.parse::<uuid::Uuid>(),
        claims.sid.as_deref().map(str::parse::<uuid::Uuid>),
    ) else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "this token belongs to no session (an operator token): nothing to sign out",
        ));
    };
    let op = Op::Account {
        id: AccountId(id),
        change: AccountChange::Revoke {
            sessions: vec![SessionId(sid)],
        },
    };
    match state.engine.write(op).await {
        Ok(_)
        | Err(WriteError::Op(OpError::Unchanged))
        | Err(WriteError::Op(OpError::Account(AccountError::NotFound(_)))) => {
            Ok(Answer::empty(StatusCode::NO_CONTENT))
        }
        Err(e) => Err(e.into()),
    }
}

/// Mints a guest cart id: write to the cart without a token, then sign in
/// (or register) with `cartId` to make it yours.
#[utoipa::path(post, path = "/api/v1/carts/guest", tag = "carts",
    responses((status = 201, description = "A new guest cart id", body = GuestCart)))]
pub async fn new_guest_cart(State(state): State<AppState>) -> (StatusCode, Json<GuestCart>) {
    (
        StatusCode::CREATED,
        Json(GuestCart {
            cart_id: accounts::mint_guest_cart(&state.tokens),
        }),
    )
}
