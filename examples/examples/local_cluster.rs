//! Three nodes in one process: a throwaway cluster for experiments, on
//! ports the OS picks, in a temporary directory. Prints the URLs; Ctrl-C
//! stops it. (`concord up` does the same with separate processes.)

use std::sync::Arc;

use concord_node::config::ClusterConfig;
use concord_node::server::{self, NodeOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("concord-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut toml =
        String::from("[cluster]\nname = \"example\"\ndata_dir = \"data\"\nembedding_dim = 64\n\n");
    let mut listeners = Vec::new();
    for i in 1..=3 {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gossip = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        toml.push_str(&format!(
            "[[node]]\nid = \"n{i}\"\nhttp = \"{}\"\ngossip = \"{gossip}\"\n\n",
            http.local_addr()?
        ));
        listeners.push(http);
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, toml)?;
    let config = Arc::new(ClusterConfig::load(&path)?);
    concord_node::pki::init(&config, &Default::default())?;
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = crdt_core::NodeId::new(&format!("n{}", i + 1))?;
        nodes.push(
            server::start(NodeOptions {
                config: config.clone(),
                id,
                http: Some(l),
            })
            .await?,
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        println!("n{}  http://{}", i + 1, n.http_addr);
    }
    println!("config: {}\nCtrl-C stops the cluster.", path.display());
    tokio::signal::ctrl_c().await?;
    for n in nodes {
        n.stop().await;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
