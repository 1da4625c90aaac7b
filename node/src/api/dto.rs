//! The API's JSON shapes (DESIGN §5), their validation, and the conversions
//! from the replicated state.
//!
//! Requests are parsed with `deny_unknown_fields` and then validated into
//! crdt-core operations here, so handlers only wire things together. Prices
//! are read from the JSON text itself — a number or a string — and never pass
//! through a float.

use std::collections::BTreeMap;

use crdt_core::cart::CartEntry;
use crdt_core::catalog::{Embedding, ProductRecord};
use crdt_core::counter::BoundedCounter;
use crdt_core::money::{Currency, Money};
use crdt_core::order::{Address, OrderEntry};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use crate::clock::rfc3339;

/// A decimal amount as the client wrote it: a JSON number (`2499.99`) or a
/// string (`"2499.99"`), kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct DecimalText(pub String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let t = raw.get().trim();
        if t.starts_with('"') {
            let s: String = serde_json::from_str(t).map_err(D::Error::custom)?;
            Ok(DecimalText(s))
        } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Ok(DecimalText(t.to_string()))
        } else {
            Err(D::Error::custom(format!(
                "expected a decimal number or string, found {t}"
            )))
        }
    }
}

fn decimal_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0.0)))
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[0-9]+(\.[0-9]+)?$")))
        .description(Some("A non-negative decimal in major units, as a JSON number or string; no more decimals than the currency has"))
        .build())
}

/// Writes an amount as an exact JSON number (`2499.99`).
fn money_json(m: &Money) -> Box<RawValue> {
    RawValue::from_string(m.to_decimal())
        .unwrap_or_else(|_| RawValue::from_string("0".into()).unwrap_or_default())
}

// ---------------------------------------------------------------- limits

/// Longest product name.
pub const MAX_NAME: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Longest category, tag, attribute key or value.
pub const MAX_SHORT: usize = 100;
/// Most tags.
pub const MAX_TAGS: usize = 32;
/// Most attributes.
pub const MAX_ATTRIBUTES: usize = 64;
/// Largest restock or initial quantity.
pub const MAX_STOCK_QUANTITY: u64 = 1_000_000_000;

fn text(field: &str, v: &str, max: usize, allow_empty: bool) -> Result<String, ApiError> {
    let t = v.trim();
    if !allow_empty && t.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ApiError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// Checks a SKU: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn sku(field: &str, v: &str) -> Result<String, ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(ApiError::field(
            field,
            "a SKU is 1–64 characters of A–Z, a–z, 0–9, '.', '_' or '-'",
        ))
    }
}

fn currency(field: &str, v: &str) -> Result<Currency, ApiError> {
    Currency::new(v).map_err(|e| ApiError::field(field, e))
}

/// Parses a price in a currency.
pub fn price(field: &str, v: &DecimalText, cur: Currency) -> Result<Money, ApiError> {
    Money::parse(&v.0, cur).map_err(|e| ApiError::field(field, e))
}

fn tags(field: &str, v: &[String]) -> Result<Vec<String>, ApiError> {
    if v.len() > MAX_TAGS {
        return Err(ApiError::field(field, format!("at most {MAX_TAGS} tags")));
    }
    v.iter()
        .enumerate()
        .map(|(i, t)| text(&format!("{field}[{i}]"), t, MAX_SHORT, false))
        .collect()
}

fn attributes(
    field: &str,
    v: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if v.len() > MAX_ATTRIBUTES {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    v.iter()
        .map(|(k, val)| {
            Ok((
                text(&format!("{field}.key"), k, MAX_SHORT, false)?,
                text(&format!("{field}.{k}"), val, MAX_SHORT * 10, true)?,
            ))
        })
        .collect()
}

fn embedding(field: &str, v: &[f32], dim: usize) -> Result<Embedding, ApiError> {
    simd_search::validate_embedding(v, dim).map_err(|e| ApiError::field(field, e))?;
    Ok(Embedding(v.to_vec()))
}

// ---------------------------------------------------------------- products

/// `POST /api/v1/products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProduct {
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Stock-keeping unit (inventory key).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// Price in major units.
    #[schema(schema_with = decimal_schema)]
    pub price: DecimalText,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
    /// Description.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Category.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub category: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Free attributes.
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    /// Initial stock, given to the node that creates the product.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub initial_quantity: Option<u64>,
    /// A client-supplied embedding (`embedding_dim` finite numbers).
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

impl CreateProduct {
    /// The validated new product and its initial stock.
    pub fn validate(self, dim: usize) -> Result<(crdt_core::catalog::NewProduct, u64), ApiError> {
        let cur = currency("currency", &self.currency)?;
        let q = self.initial_quantity.unwrap_or(0);
        if q > MAX_STOCK_QUANTITY {
            return Err(ApiError::field(
                "initialQuantity",
                format!("must be at most {MAX_STOCK_QUANTITY}"),
            ));
        }
        Ok((
            crdt_core::catalog::NewProduct {
                sku: sku("sku", &self.sku)?,
                name: text("name", &self.name, MAX_NAME, false)?,
                description: text(
                    "description",
                    self.description.as_deref().unwrap_or(""),
                    MAX_DESCRIPTION,
                    true,
                )?,
                price: price("price", &self.price, cur)?,
                category: text(
                    "category",
                    self.category.as_deref().unwrap_or(""),
                    MAX_SHORT,
                    true,
                )?,
                tags: tags("tags", self.tags.as_deref().unwrap_or(&[]))?,
                attributes: attributes("attributes", &self.attributes.unwrap_or_default())?,
                embedding: self
                    .embedding
                    .as_deref()
                    .map(|e| embedding("embedding", e, dim))
                    .transpose()?,
            },
            q,
        ))
    }
}

/// `PATCH /api/v1/products/{id}`: any subset of the fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchProduct {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price (in `currency`, or the product's current currency).
    #[schema(schema_with = decimal_schema)]
    pub price: Option<DecimalText>,
    /// New currency (requires `price`).
    pub currency: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New attributes.
    pub attributes: Option<BTreeMap<String, String>>,
    /// New embedding.
    pub embedding: Option<Vec<f32>>,
}

impl PatchProduct {
    /// The validated patch, given the product's current currency.
    pub fn validate(
        self,
        current: Currency,
        dim: usize,
    ) -> Result<crdt_core::catalog::ProductPatch, ApiError> {
        let price = match (&self.price, &self.currency) {
            (Some(p), c) => {
                let cur = match c {
                    Some(c) => currency("currency", c)?,
                    None => current,
                };
                Some((price("price", p, cur)?, None))
            }
            (None, Some(_)) => {
                return Err(ApiError::field(
                    "currency",
                    "can only change together with price",
                ));
            }
            (None, None) => None,
        };
        Ok(crdt_core::catalog::ProductPatch {
            name: self
                .name
                .as_deref()
                .map(|v| text("name", v, MAX_NAME, false))
                .transpose()?,
            description: self
                .description
                .as_deref()
                .map(|v| text("description", v, MAX_DESCRIPTION, true))
                .transpose()?,
            price,
            category: self
                .category
                .as_deref()
                .map(|v| text("category", v, MAX_SHORT, true))
                .transpose()?,
            tags: self.tags.as_deref().map(|v| tags("tags", v)).transpose()?,
            attributes: self
                .attributes
                .as_ref()
                .map(|v| attributes("attributes", v))
                .transpose()?,
            embedding: self
                .embedding
                .as_deref()
                .map(|e| embedding("embedding", e, dim).map(Some))
                .transpose()?,
        })
    }
}

/// `PUT /api/v1/products/{id}/price`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetPrice {
    /// The new price.
    #[schema(schema_with = decimal_schema)]
    pub price: DecimalText,
    /// Its currency.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Why, for the price history.
    #[schema(max_length = 200)]
    pub reason: Option<String>,
}

impl SetPrice {
    /// The validated price and reason.
    pub fn validate(self) -> Result<(Money, Option<String>), ApiError> {
        let cur = currency("currency", &self.currency)?;
        let reason = self
            .reason
            .as_deref()
            .map(|r| text("reason", r, 200, true))
            .transpose()?;
        Ok((
            price("price", &self.price, cur)?,
            reason.filter(|r| !r.is_empty()),
        ))
    }
}

/// A product as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// Id.
    pub id: Uuid,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in major units, exact.
    #[schema(value_type = f64)]
    pub price: Box<RawValue>,
    /// ISO 4217 code.
    pub currency: String,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Units on hand across the cluster, as this node sees them.
    pub stock: u64,
    /// When any field last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl ProductView {
    /// The view of a product record with its stock.
    pub fn new(id: Uuid, r: &ProductRecord, stock: u64) -> Self {
        Self {
            id,
            sku: r.sku.value.clone(),
            name: r.name.value.clone(),
            description: r.description.value.clone(),
            price: money_json(&r.price.value),
            currency: r.price.value.currency.code().to_string(),
            category: r.category.value.clone(),
            tags: r.tags.value.clone(),
            attributes: r.attributes.value.clone(),
            stock,
            updated_at: rfc3339(r.updated().hlc.ms),
        }
    }
}

/// One price a product had.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricePointView {
    /// The price.
    #[schema(value_type = f64)]
    pub price: Box<RawValue>,
    /// Its currency.
    pub currency: String,
    /// Why it changed.
    pub reason: Option<String>,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// The node that wrote it.
    pub node: String,
}

/// `GET /api/v1/products/{id}/history`: the price history (LWW winners).
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceHistory {
    /// Oldest first.
    pub prices: Vec<PricePointView>,
}

impl PriceHistory {
    /// The history of a record.
    pub fn new(r: &ProductRecord) -> Self {
        Self {
            prices: r
                .price_history
                .iter()
                .map(|(s, p)| PricePointView {
                    price: money_json(&p.price),
                    currency: p.price.currency.code().to_string(),
                    reason: p.reason.clone(),
                    at: rfc3339(s.hlc.ms),
                    node: s.actor.to_string(),
                })
                .collect(),
        }
    }
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    /// The products.
    pub items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Query of `GET /api/v1/products`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListProducts {
    /// Only this category.
    pub category: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Query of `GET /api/v1/search/products`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The query text.
    #[param(min_length = 1, max_length = 500)]
    pub q: String,
    /// How many hits, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub k: Option<u32>,
    /// Only this category.
    pub category: Option<String>,
}

/// One search hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHitView {
    /// Product id.
    pub id: Uuid,
    /// Fused relevance score (higher is better).
    pub score: f32,
    /// The product.
    pub product: ProductView,
}

/// Search results, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Hits.
    pub hits: Vec<SearchHitView>,
}

// ---------------------------------------------------------------- inventory

/// `POST /api/v1/inventory/{sku}/restock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Units to add.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub quantity: u64,
}

/// A SKU's stock and the rights each node holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryView {
    /// SKU.
    pub sku: String,
    /// Units on hand.
    pub stock: u64,
    /// Units each node (actor) may still sell.
    pub rights: BTreeMap<String, u64>,
}

impl InventoryView {
    /// The view of a counter.
    pub fn new(sku: &str, c: &BoundedCounter) -> Self {
        Self {
            sku: sku.to_string(),
            stock: c.stock(),
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
    /// Cart id.
    pub id: Uuid,
    /// The customer it belongs to (null until a customer writes to it).
    pub customer_id: Option<String>,
    /// Lines, in product order.
    pub items: Vec<CartItemView>,
}

impl CartView {
    /// The view of a cart entry (or of an empty cart).
    pub fn new(id: Uuid, e: Option<&CartEntry>) -> Self {
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

/// A shipping address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressDto {
    /// Recipient.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Street and number.
    #[schema(min_length = 1, max_length = 100)]
    pub line1: String,
    /// More of the street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100)]
    pub line2: Option<String>,
    /// City.
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100)]
    pub region: Option<String>,
    /// Postal code.
    #[schema(min_length = 1, max_length = 20)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

impl AddressDto {
    /// The validated address.
    pub fn validate(&self) -> Result<Address, ApiError> {
        let f = |n: &str| format!("shippingAddress.{n}");
        let country = self.country.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::field(
                &f("country"),
                "must be an ISO 3166-1 alpha-2 code such as \"GB\"",
            ));
        }
        let opt = |n: &str, v: &Option<String>, max: usize| -> Result<Option<String>, ApiError> {
            v.as_deref()
                .map(|x| text(&f(n), x, max, true))
                .transpose()
                .map(|o| o.filter(|s| !s.is_empty()))
        };
        Ok(Address {
            name: text(&f("name"), &self.name, 100, false)?,
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
            name: a.name.clone(),
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
    /// Check out this cart (exclusive with `lineItems`).
    pub cart_id: Option<Uuid>,
    /// Or buy these lines.
    pub line_items: Option<Vec<LineItemRequest>>,
    /// Who buys.
    #[schema(min_length = 1, max_length = 100)]
    pub customer_id: String,
    /// Where it ships.
    pub shipping_address: AddressDto,
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
}

impl OrderView {
    /// The view of an order, if its header has arrived.
    pub fn new(id: Uuid, e: &OrderEntry) -> Option<Self> {
        let h = e.header.as_ref()?;
        let m = |minor| Money {
            minor,
            currency: h.currency,
        };
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

/// Page size from a query, within 1–100.
pub fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(20),
        Some(l) if (1..=100).contains(&l) => Ok(l as usize),
        Some(_) => Err(ApiError::field("limit", "must be between 1 and 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::parse_json;

    #[test]
    fn prices_are_read_from_text_as_numbers_or_strings() {
        let p: SetPrice = parse_json(br#"{"price": 2499.99, "currency": "USD"}"#).unwrap();
        assert_eq!(p.validate().unwrap().0.minor, 249_999);
        let p: SetPrice = parse_json(br#"{"price": "0.10", "currency": "USD"}"#).unwrap();
        assert_eq!(p.validate().unwrap().0.minor, 10);
        let p: SetPrice = parse_json(br#"{"price": 1e3, "currency": "USD"}"#).unwrap();
        assert!(p.validate().is_err());
        let p: SetPrice = parse_json(br#"{"price": -1, "currency": "USD"}"#).unwrap();
        assert!(p.validate().unwrap_err().message.contains("price"));
        let p: SetPrice = parse_json(br#"{"price": "1.999", "currency": "USD"}"#).unwrap();
        assert!(p.validate().unwrap_err().message.contains("price"));
        assert!(
            parse_json::<SetPrice>(br#"{"price": true, "currency": "USD"}"#)
                .unwrap_err()
                .message
                .contains("price")
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let e = parse_json::<AddItem>(
            br#"{"productId": "0192f0a0-0000-7000-8000-000000000001", "quantity": 1, "qty": 2}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("qty"), "{}", e.message);
        let e = parse_json::<Checkout>(
            br#"{"customerId": "a", "lineItems": [{"productId": "0192f0a0-0000-7000-8000-000000000001", "quantity": "x"}], "shippingAddress": {}}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("lineItems[0].quantity"), "{}", e.message);
        let e = parse_json::<AddItem>(b"{not json").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
