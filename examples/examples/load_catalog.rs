//! Loads the sample catalog into a running cluster, spreading the products
//! (and so the stock rights) over every node.
//!
//! `cargo run -p concord-examples --example load_catalog -- cluster.toml`

use concord_node::auth::Role;
use concord_node::config::ClusterConfig;
use concord_node::http_client::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cluster.toml".into());
    let path = std::path::Path::new(&path);
    let cfg = ClusterConfig::load(path)?;
    let token = concord_examples::token(path, Role::Admin, "admin")?;
    let clients: Vec<Client> = cfg
        .nodes
        .iter()
        .map(|n| Client::new(n.http).with_token(token.clone()))
        .collect();
    let n = concord_node::sample::load(&clients).await?;
    println!(
        "created {n} products ({} already existed)",
        concord_node::sample::catalog().len() - n
    );
    Ok(())
}
