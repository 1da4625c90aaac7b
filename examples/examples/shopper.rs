//! A shopper against a running cluster: search on one node, add the best hit
//! to a cart on another, check out on a third, and watch the order.
//!
//! `cargo run -p concord-examples --example shopper -- cluster.toml espresso`

use concord_node::auth::Role;
use concord_node::config::ClusterConfig;
use concord_node::http_client::Client;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "cluster.toml".into());
    let query = args.next().unwrap_or_else(|| "espresso".into());
    let path = std::path::Path::new(&path);
    let cfg = ClusterConfig::load(path)?;
    let token = concord_examples::token(path, Role::Customer, "ada")?;
    let node =
        |i: usize| Client::new(cfg.nodes[i % cfg.nodes.len()].http).with_token(token.clone());

    let found: Value = node(0)
        .get(&format!(
            "/api/v1/search/products?q={}&k=3",
            query.replace(' ', "%20")
        ))
        .await?
        .json()?;
    let hit = &found["hits"][0];
    anyhow::ensure!(hit.is_object(), "nothing found for {query:?}: {found}");
    println!(
        "n1 found {} ({} {}), score {:.4}",
        hit["product"]["name"], hit["product"]["price"], hit["product"]["currency"], hit["score"]
    );

    let cart = uuid::Uuid::new_v4();
    let a = node(1)
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": hit["id"], "quantity": 1}),
        )
        .await?;
    anyhow::ensure!(a.status.is_success(), "add to cart: {}", a.text());
    println!("n2 cart {cart}: {}", a.text());

    let order = node(2)
        .post(
            "/api/v1/orders",
            &json!({"cartId": cart, "customerId": "ada",
                    "shippingAddress": {"name": "Ada", "line1": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"}}),
        )
        .await?;
    println!("n3 checkout: {} {}", order.status, order.text());
    Ok(())
}
