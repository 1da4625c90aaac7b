//! Extractors that turn requests into typed, valid input — or a 400/401/415
//! in the API's JSON error shape, never axum's plain-text 422.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Claims, Role};
use crate::clock;

/// A JSON body, parsed strictly: wrong content type → 415; bad JSON, unknown
/// fields, wrong types → 400 naming the field (`lineItems[0].quantity`);
/// too large → 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !(mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        e.status(),
                        "body_too_large",
                        "the request body is larger than the limit",
                    )
                } else {
                    ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::bad_request("invalid_body", message)
    })?;
    Ok(value)
}

/// A path parameter parsed from text, with a 400 naming it on failure.
pub fn path_param<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse::<T>()
        .map_err(|e| ApiError::bad_request("invalid_path", format!("path parameter {name}: {e}")))
}

/// A cart id from the path or a body: a UUID or a client-chosen name
/// (see [`crdt_core::CartId::from_client`]); 400 naming `field` otherwise.
pub fn cart_param(field: &str, raw: &str) -> Result<crdt_core::CartId, ApiError> {
    crdt_core::CartId::from_client(raw).map_err(|e| ApiError::field(field, e))
}

/// An id in a GET's path: one of the wrong shape names nothing, so it is
/// answered like any unknown id — 404 with the resource's `code`.
pub fn get_param<T: std::str::FromStr>(
    raw: &str,
    code: &'static str,
    what: &str,
) -> Result<T, ApiError> {
    raw.parse::<T>().map_err(|_| {
        ApiError::not_found(code, format!("{what} {:.80} not found", raw.escape_debug()))
    })
}

/// Query parameters, parsed strictly (unknown parameters → 400).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("query parameter {}: {}", e.path(), e.inner()),
                )
            })
    }
}

/// Who is calling: the claims of a valid bearer token, or nobody.
pub struct Caller(pub Option<Claims>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = match parts.extensions.get::<Verified>() {
            Some(Verified(c)) => Some(c.clone()),
            None => claims_of(&parts.headers, state)?,
        };
        if let Some(c) = &claims {
            state
                .engine
                .peek(|r| crate::accounts::standing(r, c))
                .map_err(|e| match e {
                    crate::accounts::Standing::Disabled => ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "account_disabled",
                        e.to_string(),
                    ),
                    _ => ApiError::unauthorized(e.to_string()),
                })?;
        }
        Ok(Caller(claims))
    }
}

/// Claims a layer already verified for this request (the idempotency layer
/// needs the subject first), so the handler does not verify the token
/// again. Only the server sets request extensions: a client cannot.
#[derive(Clone, Debug)]
pub struct Verified(pub Claims);

/// The claims of the request's bearer token: `None` without one, 401 for
/// one that does not check out.
pub fn claims_of(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Result<Option<Claims>, ApiError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = h
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    state
        .tokens
        .verify(token.trim(), clock::now_secs())
        .map(Some)
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

impl Caller {
    /// The claims, or 401.
    pub fn any(&self) -> Result<&Claims, ApiError> {
        self.0
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("this endpoint needs a bearer token"))
    }

    /// The claims of an admin, or 401/403.
    pub fn admin(&self) -> Result<&Claims, ApiError> {
        let c = self.any()?;
        if c.role == Role::Admin {
            Ok(c)
        } else {
            Err(ApiError::forbidden("this endpoint needs an admin token"))
        }
    }

    /// The customer id a customer token acts as (`None` for an admin).
    pub fn customer(&self) -> Result<Option<String>, ApiError> {
        let c = self.any()?;
        Ok(match c.role {
            Role::Admin => None,
            Role::Customer => Some(c.sub.clone()),
        })
    }
}

/// The client's address, as the rate limits count it (see
/// [`super::middleware::client_ip`]); loopback when the connection's peer is
/// unknown (requests the node makes to itself).
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        Ok(ClientIp(super::middleware::client_ip(
            peer,
            &parts.headers,
            state.limiter.trusted(),
        )))
    }
}
