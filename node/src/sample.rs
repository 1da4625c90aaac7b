//! The sample catalog `concord up` loads into an empty cluster: a few
//! hundred real-looking products across twelve categories, created round-robin
//! on every node so that each node holds stock rights to sell from.

use serde::Deserialize;

use crate::http_client::Client;

/// One product of the sample catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleProduct {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Price, decimal text.
    pub price: String,
    /// Currency.
    pub currency: String,
    /// Initial stock.
    pub stock: u64,
}

/// The embedded sample catalog.
pub fn catalog() -> Vec<SampleProduct> {
    serde_json::from_str(include_str!("sample_catalog.json")).unwrap_or_default()
}

/// Loads the sample catalog through the API of the given nodes (admin
/// clients), product `i` on node `i mod n`. Returns how many were created.
pub async fn load(clients: &[Client]) -> anyhow::Result<usize> {
    anyhow::ensure!(!clients.is_empty(), "no node to load the catalog into");
    let mut created = 0;
    for (i, p) in catalog().into_iter().enumerate() {
        let c = &clients[i % clients.len()];
        let body = serde_json::json!({
            "sku": p.sku, "name": p.name, "description": p.description, "category": p.category,
            "tags": p.tags, "price": p.price, "currency": p.currency, "initialQuantity": p.stock,
        });
        let a = c.post("/api/v1/products", &body).await?;
        if a.status.as_u16() == 201 {
            created += 1;
        } else if a.status.as_u16() != 409 {
            anyhow::bail!(
                "creating sample product {} failed: {} {}",
                p.sku,
                a.status,
                a.text()
            );
        }
    }
    Ok(created)
}
