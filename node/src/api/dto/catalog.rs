//! Shapes of the catalog and search endpoints.

use std::collections::BTreeMap;

use crdt_core::catalog::ProductRecord;
use crdt_core::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    DecimalText, MAX_DESCRIPTION, MAX_NAME, MAX_SHORT, MAX_STOCK_QUANTITY, attributes, currency,
    decimal_schema, embedding, money_json, price, sku, tags, text,
};
use crate::api::error::ApiError;
use crate::clock::rfc3339;

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
