//! The API's JSON shapes (DESIGN §5), their validation, and the conversions
//! from the replicated state.
//!
//! Requests are parsed with `deny_unknown_fields` and then validated into
//! crdt-core operations here, so handlers only wire things together. Prices
//! are read from the JSON text itself — a number or a string — and never pass
//! through a float.

mod accounts;
mod catalog;
mod commerce;
mod country;
mod payments;

pub use accounts::*;
pub use catalog::*;
pub use commerce::*;
pub use payments::*;

use std::collections::BTreeMap;

use crdt_core::catalog::Embedding;
use crdt_core::money::{Currency, Money};
use serde::Deserialize;
use serde::Deserializer;
use serde::de::Error as _;
use serde_json::value::RawValue;

use super::error::ApiError;

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

pub(crate) fn decimal_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    Schema::OneOf(OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0.0)))
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[0-9]+(\.[0-9]+)?$")))
        .description(Some("A non-negative decimal in major units, as a JSON number or string; no more decimals than the currency has"))
        .build())
}

/// Writes an amount as an exact JSON number (`2499.99`).
pub(crate) fn money_json(m: &Money) -> Box<RawValue> {
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

pub(crate) fn text(
    field: &str,
    v: &str,
    max: usize,
    allow_empty: bool,
) -> Result<String, ApiError> {
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
    if t.chars().any(deceptive) {
        return Err(ApiError::field(
            field,
            "must not contain bidirectional overrides or invisible characters",
        ));
    }
    Ok(t.to_string())
}

/// Characters that make text display as something else: bidirectional
/// embeddings, overrides and isolates (the "Trojan Source" characters),
/// zero-width spaces and joiners, and the byte-order mark.
fn deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
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

pub(crate) fn currency(field: &str, v: &str) -> Result<Currency, ApiError> {
    Currency::new(v).map_err(|e| ApiError::field(field, e))
}

/// Parses a price in a currency.
pub fn price(field: &str, v: &DecimalText, cur: Currency) -> Result<Money, ApiError> {
    Money::parse(&v.0, cur).map_err(|e| ApiError::field(field, e))
}

pub(crate) fn tags(field: &str, v: &[String]) -> Result<Vec<String>, ApiError> {
    if v.len() > MAX_TAGS {
        return Err(ApiError::field(field, format!("at most {MAX_TAGS} tags")));
    }
    v.iter()
        .enumerate()
        .map(|(i, t)| text(&format!("{field}[{i}]"), t, MAX_SHORT, false))
        .collect()
}

pub(crate) fn attributes(
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

pub(crate) fn embedding(field: &str, v: &[f32], dim: usize) -> Result<Embedding, ApiError> {
    simd_search::validate_embedding(v, dim).map_err(|e| ApiError::field(field, e))?;
    Ok(Embedding(v.to_vec()))
}

/// Page size from a query, within 1–100.
pub fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(20),
        Some(l) if (1..=100).contains(&l) => Ok(l as usize),
        Some(_) => Err(ApiError::field("limit", "must be between 1 and 100")),
    }
}

/// Takes one page from `items` (already in key order, after the cursor):
/// at most `limit` of them, and the next page's cursor — the last item's
/// key — only when more remain.
pub fn take_page<T, K>(
    mut items: impl Iterator<Item = T>,
    limit: usize,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<K>) {
    let page: Vec<T> = items.by_ref().take(limit).collect();
    let next = if items.next().is_some() {
        page.last().map(key)
    } else {
        None
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::parse_json;

    #[test]
    fn a_page_has_a_cursor_only_when_more_remain() {
        assert_eq!(take_page(1..=5, 2, |v| *v), (vec![1, 2], Some(2)));
        assert_eq!(take_page(1..=4, 4, |v| *v), (vec![1, 2, 3, 4], None));
        assert_eq!(
            take_page(std::iter::empty::<u8>(), 3, |v| *v),
            (vec![], None)
        );
    }

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
