//! Shapes of the inventory, cart and order endpoints.

use std::collections::BTreeMap;

use crdt_core::cart::CartEntry;
use crdt_core::counter::BoundedCounter;
use crdt_core::money::Money;
use crdt_core::order::{Address, OrderEntry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{money_json, text};
use crate::api::error::ApiError;
use crate::clock::rfc3339;

/// `POST /api/v1/inventory/{sku}/restock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Units to add.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub quantity: u64,
}

/// A SKU's stock and the rights each node holds. Public, like the stock a
/// product page shows; `restocked` and `liveSold` let anyone check that
/// stock = restocked − liveSold and that liveSold never exceeds restocked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryView {
    /// SKU.
    pub sku: String,
    /// Units on hand.
    pub stock: u64,
    /// Units ever restocked (initial quantities included).
    pub restocked: u64,
    /// Units in live orders: sold minus returned.
    pub live_sold: i64,
    /// Units each node (actor) may still sell.
    pub rights: BTreeMap<String, u64>,
}

impl InventoryView {
    /// The view of a counter.
    pub fn new(sku: &str, c: &BoundedCounter) -> Self {
        Self {
            sku: sku.to_string(),
            stock: c.stock(),
            restocked: c.total_restocked(),
            live_sold: c.live_sold().clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            rights: c
                .rights_by_actor()
                .into_iter()
                .map(|(a, r)| (a.to_string(), r))
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- carts

/// `POST /api/v1/carts/{cartId}/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddItem {
    /// The product.
    pub product_id: Uuid,
    /// Units to add.
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: u32,
}

/// `PUT /api/v1/carts/{cartId}/items/{productId}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetItem {
    /// The new quantity; 0 removes the item.
    #[schema(minimum = 0, maximum = 1000000)]
    pub quantity: u32,
}

/// One cart line.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItemView {
    /// The product.
    pub product_id: Uuid,
    /// Units.
    pub quantity: u32,
}

/// A cart.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    /// Cart id, as the client named it (a UUID or a name).
    pub id: String,
    /// The customer it belongs to (null until a customer writes to it).
    pub customer_id: Option<String>,
    /// Lines, in product order.
    pub items: Vec<CartItemView>,
}

impl CartView {
    /// The view of a cart entry (or of an empty cart).
    pub fn new(id: String, e: Option<&CartEntry>) -> Self {
        Self {
            id,
            customer_id: e.and_then(|e| e.customer().map(str::to_string)),
            items: e
                .map(|e| {
                    e.lines()
                        .map(|(p, q)| CartItemView {
                            product_id: p.0,
                            quantity: q,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------- orders

/// A shipping address. Besides our names, the shapes other shops and
/// seed data send are read: `street` (or `address1`) for `line1`,
/// `address2` for `line2`, `state` (or `province`) for `region`, `zip`,
/// `zipCode` or `postcode` for `postalCode`, and a country as alpha-2 or
/// alpha-3 (`US` or `USA`, stored as `US`). Without a `name`, the order's
/// customer id is the recipient.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressDto {
    /// Recipient (default: the customer id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Street and number (also read as `street` or `address1`).
    #[serde(alias = "street", alias = "address1")]
    #[schema(min_length = 1, max_length = 100)]
    pub line1: String,
    /// More of the street address (also read as `address2`).
    #[serde(default, alias = "address2", skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100)]
    pub line2: Option<String>,
    /// City.
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    /// State or region (also read as `state` or `province`).
    #[serde(
        default,
        alias = "state",
        alias = "province",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(max_length = 100)]
    pub region: Option<String>,
    /// Postal code (also read as `zip`, `zipCode` or `postcode`).
    #[serde(alias = "zip", alias = "zipCode", alias = "postcode")]
    #[schema(min_length = 1, max_length = 20)]
    pub postal_code: String,
    /// ISO 3166-1 country code, alpha-2 or alpha-3 (answered as alpha-2).
    #[schema(pattern = "^[A-Za-z]{2,3}$")]
    pub country: String,
}

impl AddressDto {
    /// The validated address; `recipient` names it when the body does not.
    pub fn validate(&self, recipient: &str) -> Result<Address, ApiError> {
        self.validate_at("shippingAddress.", recipient)
    }

    /// Like [`AddressDto::validate`], naming fields under `prefix`.
    pub fn validate_at(&self, prefix: &str, recipient: &str) -> Result<Address, ApiError> {
        let f = |n: &str| format!("{prefix}{n}");
        let country = super::country::alpha2(&self.country).ok_or_else(|| {
            ApiError::field(
                &f("country"),
                "must be an ISO 3166-1 code such as \"US\" or \"USA\"",
            )
        })?;
        let opt = |n: &str, v: &Option<String>, max: usize| -> Result<Option<String>, ApiError> {
            v.as_deref()
                .map(|x| text(&f(n), x, max, true))
                .transpose()
                .map(|o| o.filter(|s| !s.is_empty()))
        };
        Ok(Address {
            name: text(
                &f("name"),
                self.name.as_deref().unwrap_or(recipient),
                100,
                false,
            )?,
            line1: text(&f("line1"), &self.line1, 100, false)?,
            line2: opt("line2", &self.line2, 100)?,
            city: text(&f("city"), &self.city, 100, false)?,
            region: opt("region", &self.region, 100)?,
            postal_code: text(&f("postalCode"), &self.postal_code, 20, false)?,
            country: country.to_string(),
        })
    }

    /// The DTO of a stored address.
    pub fn from_address(a: &Address) -> Self {
        Self {
            name: Some(a.name.clone()),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

/// One requested order line.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LineItemRequest {
    /// The product.
    pub product_id: Uuid,
    /// Units.
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: u32,
}

/// `POST /api/v1/orders`: from a cart, or from explicit line items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Checkout {
    /// Check out this cart (exclusive with `lineItems`): a UUID or a name
    /// of 1–64 of `A–Z a–z 0–9 . _ -`.
    pub cart_id: Option<String>,
    /// Or buy these lines.
    pub line_items: Option<Vec<LineItemRequest>>,
    /// Who buys: required with an admin token; a customer's own id (the
    /// default) with a customer token.
    #[schema(min_length = 1, max_length = 100)]
    pub customer_id: Option<String>,
    /// Where it ships (exclusive with `shippingAddressId`).
    pub shipping_address: Option<AddressDto>,
    /// Or an address of the customer's address book.
    pub shipping_address_id: Option<Uuid>,
    /// Where to send the order's e-mails when the customer has no account
    /// (an account's own e-mail is used otherwise).
    #[schema(max_length = 254)]
    pub email: Option<String>,
}

/// One order line as placed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineItemView {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU at checkout.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Price per unit at checkout.
    #[schema(value_type = f64)]
    pub unit_price: Box<RawValue>,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Order id (UUIDv7).
    pub id: Uuid,
    /// The customer.
    pub customer_id: String,
    /// `placed`, `paid`, `cancelled`, `shipped` or `delivered`.
    pub status: String,
    /// Lines.
    pub line_items: Vec<LineItemView>,
    /// Σ quantity × unit price.
    #[schema(value_type = f64)]
    pub total: Box<RawValue>,
    /// ISO 4217 code.
    pub currency: String,
    /// Where it ships.
    pub shipping_address: AddressDto,
    /// The node that sold it (the only one that ships it).
    pub node: String,
    /// When it was placed.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The current payment attempt, if one was made.
    pub payment: Option<super::PaymentView>,
    /// Refunds, oldest first.
    pub refunds: Vec<super::RefundView>,
    /// Captured, over every attempt.
    #[schema(value_type = f64)]
    pub captured: Box<RawValue>,
    /// Refunded.
    #[schema(value_type = f64)]
    pub refunded: Box<RawValue>,
}

impl OrderView {
    /// The view of an order, if its header has arrived.
    pub fn new(id: Uuid, e: &OrderEntry) -> Option<Self> {
        let h = e.header()?;
        let m = |minor| Money {
            minor,
            currency: h.currency,
        };
        let pay = super::PaymentParts::new(&e.payments, h.currency);
        Some(Self {
            id,
            customer_id: h.customer.clone(),
            status: e.status.0.as_str().to_string(),
            line_items: h
                .lines
                .iter()
                .map(|l| LineItemView {
                    product_id: l.product.0,
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: money_json(&m(l.unit_minor)),
                })
                .collect(),
            total: money_json(&m(h.total_minor)),
            currency: h.currency.code().to_string(),
            shipping_address: AddressDto::from_address(&h.shipping),
            node: h.seller.to_string(),
            created_at: rfc3339(h.created_ms),
            payment: pay.payment,
            refunds: pay.refunds,
            captured: pay.captured,
            refunded: pay.refunded,
        })
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    /// Orders.
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Query of `GET /api/v1/orders`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListOrders {
    /// Only this customer's orders (a customer token sees only its own).
    pub customer_id: Option<String>,
    /// Only orders in this status.
    pub status: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A page of carts (admin).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartPage {
    /// Carts.
    pub items: Vec<CartView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Query of `GET /api/v1/carts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCarts {
    /// The `nextCursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}
