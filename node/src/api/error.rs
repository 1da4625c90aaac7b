//! API errors: one type, one JSON shape (`{"error": {"code", "message"}}`),
//! one place that maps every failure to its HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crdt_core::OpError;

use crate::engine::WriteError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human-readable message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: `invalid_body`, `insufficient_stock` …
    pub code: String,
    /// What went wrong, naming the field when a field is at fault.
    pub message: String,
}

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed; `message` names the field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 for one field.
    pub fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::bad_request("invalid_field", format!("{field}: {problem}"))
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 429 with the seconds before a retry can succeed.
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// 503 with a retry hint.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            OpError::ProductExists(_) => Self::new(S::CONFLICT, "product_exists", msg),
            OpError::ProductNotFound(_) => Self::not_found("product_not_found", msg),
            OpError::SkuTaken { .. } => Self::new(S::CONFLICT, "sku_exists", msg),
            OpError::CartOwned(_) => Self::forbidden(msg),
            OpError::NotInCart { .. } => Self::not_found("item_not_found", msg),
            OpError::EmptyOrder => Self::new(S::CONFLICT, "empty_order", msg),
            OpError::MixedCurrency(..) => Self::new(S::CONFLICT, "mixed_currency", msg),
            OpError::InsufficientStock { .. } => Self::new(S::CONFLICT, "insufficient_stock", msg),
            OpError::OrderNotFound(_) => Self::not_found("order_not_found", msg),
            OpError::OrderExists(_) => Self::new(S::CONFLICT, "order_exists", msg),
            OpError::IllegalMove(_) => Self::new(S::CONFLICT, "illegal_transition", msg),
            OpError::NotSeller { .. } => Self::unavailable("seller_unreachable", msg),
            OpError::NothingToReturn(_) => Self::new(S::CONFLICT, "nothing_to_return", msg),
            OpError::TooLarge(_) => Self::bad_request("too_large", msg),
            OpError::Unchanged => Self::new(S::CONFLICT, "unchanged", msg),
            OpError::CartFull(_) => Self::new(S::CONFLICT, "cart_full", msg),
            OpError::Account(a) => {
                use crdt_core::ops::AccountError as A;
                match a {
                    A::EmailTaken => Self::new(S::CONFLICT, "email_taken", msg),
                    A::NotFound(_) => Self::not_found("customer_not_found", msg),
                    A::SessionEnded | A::StaleGeneration => Self::unauthorized(msg),
                    A::AddressNotFound(_) => Self::not_found("address_not_found", msg),
                    A::AddressBookFull(_) => Self::new(S::CONFLICT, "address_book_full", msg),
                }
            }
            OpError::Payment(p) => {
                use crdt_core::ops::PaymentError as P;
                let code = match p {
                    P::AlreadyPaid(_) => "already_paid",
                    P::InProgress { .. } => "payment_in_progress",
                    P::NotPayable { .. } => "not_payable",
                    P::TooManyAttempts(_) => "too_many_attempts",
                    P::NothingCaptured(_) => "nothing_captured",
                    P::ExceedsCapture { .. } => "refund_exceeds_capture",
                    P::TooManyRefunds(_) => "too_many_refunds",
                    P::EventSeen(_) => "event_seen",
                };
                Self::new(S::CONFLICT, code, msg)
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Op(op) => op.into(),
            WriteError::Storage(s) => {
                tracing::error!(error = %s, "write failed in storage");
                Self::unavailable(
                    "storage_unavailable",
                    "the store cannot take writes right now",
                )
            }
        }
    }
}
