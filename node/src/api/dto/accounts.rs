//! The shapes of accounts, sessions and address books.

use crdt_core::account::{AccountEntry, AccountRole};
use crdt_core::{AccountId, AddressId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::commerce::AddressDto;

/// `POST /api/v1/auth/register`, and `POST /api/v1/staff`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Register {
    /// E-mail (compared trimmed and lower-cased).
    #[schema(max_length = 254)]
    pub email: String,
    /// 8–256 characters (bytes at most 256).
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// Display name.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A guest cart to bind to the new account.
    pub cart_id: Option<String>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Login {
    /// E-mail.
    #[schema(max_length = 254)]
    pub email: String,
    /// Password.
    #[schema(max_length = 256)]
    pub password: String,
    /// A guest cart to bind to the account.
    pub cart_id: Option<String>,
}

/// `POST /api/v1/auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Refresh {
    /// The current refresh token.
    pub refresh_token: String,
}

/// A signed-in session's tokens, with the account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The account.
    pub account: AccountView,
    /// Bearer token for the API (short-lived).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// Exchanged for a new pair at `/auth/refresh`; each is good once.
    pub refresh_token: String,
    /// The guest cart bound at this sign-in, if one was named and free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_id: Option<String>,
}

/// A new access and refresh token pair.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// Bearer token for the API.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives (from its issue).
    pub expires_in: u64,
    /// The next refresh token.
    pub refresh_token: String,
}

/// An account as its owner and admins see it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The account id: a customer token's subject, and orders' `customerId`.
    pub id: Uuid,
    /// E-mail, normalised.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `customer` or `admin` (staff).
    pub role: &'static str,
    /// Disabled by an admin.
    pub disabled: bool,
    /// Registered at, Unix ms.
    pub created_at: u64,
    /// The address book.
    pub addresses: Vec<SavedAddress>,
}

impl AccountView {
    /// The view of an account entry.
    pub fn new(id: AccountId, e: &AccountEntry) -> Self {
        Self {
            id: id.0,
            email: e.email().unwrap_or_default().to_string(),
            name: e.name().to_string(),
            role: match e.role() {
                AccountRole::Admin => "admin",
                AccountRole::Customer => "customer",
            },
            disabled: e.is_disabled(),
            created_at: e.registration.as_ref().map_or(0, |r| r.created.ms),
            addresses: e
                .live_addresses()
                .map(|(id, a)| SavedAddress::new(*id, a))
                .collect(),
        }
    }
}

/// An address in an address book.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedAddress {
    /// Its id: checkout's `shippingAddressId`.
    pub id: Uuid,
    /// The address.
    #[serde(flatten)]
    pub address: AddressDto,
}

impl SavedAddress {
    /// The view of one address.
    pub fn new(id: AddressId, a: &crdt_core::order::Address) -> Self {
        Self {
            id: id.0,
            address: AddressDto::from_address(a),
        }
    }
}

/// `PATCH /api/v1/me`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchMe {
    /// A new display name.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
}

/// `POST /api/v1/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePassword {
    /// The password now.
    #[schema(max_length = 256)]
    pub current_password: String,
    /// The new one (8–256 characters).
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// Listing parameters of `GET /api/v1/customers`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListCustomers {
    /// Page size (1–100, default 20).
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Only the account with this e-mail.
    pub email: Option<String>,
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPage {
    /// The accounts.
    pub items: Vec<AccountView>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<Uuid>,
}

/// `POST /api/v1/carts/guest`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestCart {
    /// An unguessable cart id: write to it without a token; sign in with it
    /// to make it yours.
    pub cart_id: String,
}
