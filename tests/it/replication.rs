//! Replication between real node processes: writes reach every node,
//! concurrent writes converge, paused, killed and wiped nodes catch up,
//! foreign peers are refused, and a partition never oversells.

use std::process::{Command, Stdio};
use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::auth::Role;
use concord_node::http_client::Client;
use concord_tests::{CLUSTER_LOCK, create, eventually};
use serde_json::{Value, json};

async fn cluster(spec: Spec) -> ProcessCluster {
    ProcessCluster::start(spec).await.expect("cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_anywhere_reach_everyone_and_concurrent_writes_converge() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec::default()).await;
    // A write on any node is readable on the others.
    let pid = create(&c.client(0), "R-1", 3).await;
    for i in 1..3 {
        eventually(
            &c.client(i),
            &format!("/api/v1/products/{pid}"),
            "product",
            |v| v["sku"] == "R-1",
        )
        .await;
    }
    let p2 = create(&c.client(1), "R-2", 0).await;
    let p3 = create(&c.client(2), "R-3", 0).await;
    for i in 0..3 {
        eventually(
            &c.client(i),
            &format!("/api/v1/products/{p3}"),
            "product",
            |v| v["sku"] == "R-3",
        )
        .await;
        eventually(
            &c.client(i),
            &format!("/api/v1/products/{p2}"),
            "product",
            |v| v["sku"] == "R-2",
        )
        .await;
    }
    // Concurrent adds of different products to one cart on three nodes all survive.
    let cart = "/api/v1/carts/0193bbbb-0000-4000-8000-000000000001";
    let (c0, c1, c2) = (c.client(0), c.client(1), c.client(2));
    let items = format!("{cart}/items");
    let (b0, b1, b2) = (
        json!({"productId": pid, "quantity": 1}),
        json!({"productId": p2, "quantity": 2}),
        json!({"productId": p3, "quantity": 3}),
    );
    let (a, b, d) = tokio::join!(
        c0.post(&items, &b0),
        c1.post(&items, &b1),
        c2.post(&items, &b2)
    );
    for x in [a, b, d] {
        assert_eq!(x.unwrap().status.as_u16(), 200);
    }
    for i in 0..3 {
        eventually(&c.client(i), cart, "all three items", |v| {
            v["items"].as_array().is_some_and(|a| a.len() == 3)
        })
        .await;
    }
    // Concurrent price edits end as one value everywhere.
    let path = format!("/api/v1/products/{pid}/price");
    let (q0, q2) = (
        json!({"price": "11.00", "currency": "USD"}),
        json!({"price": "12.00", "currency": "USD"}),
    );
    let (x, y) = tokio::join!(c0.put(&path, &q0), c2.put(&path, &q2));
    assert_eq!(x.unwrap().status.as_u16(), 200);
    assert_eq!(y.unwrap().status.as_u16(), 200);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(15))
        .await
        .expect("converges");
    let mut prices = Vec::new();
    for i in 0..3 {
        let a = c
            .client(i)
            .get(&format!("/api/v1/products/{pid}"))
            .await
            .unwrap();
        let t = a.text();
        let at = t.find("\"price\":").expect("a price");
        prices.push(t[at + 8..].split(',').next().unwrap_or("").to_string());
    }
    assert!(
        prices.windows(2).all(|w| w[0] == w[1]),
        "prices differ: {prices:?}"
    );
    assert!(prices[0] == "11.00" || prices[0] == "12.00", "{prices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_killed_nodes_catch_up() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = cluster(Spec::default()).await;
    let pid = create(&c.client(0), "P-1", 0).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    c.pause(2).unwrap();
    c.kill9(1).unwrap();
    let n1 = c.client(0);
    let mut carts = Vec::new();
    for chunk in 0..30 {
        let mut hs = Vec::new();
        for k in 0..10 {
            let cart = format!("0193cccc-0000-4000-8000-{:012}", chunk * 10 + k);
            let n1 = n1.clone();
            let pid = pid.clone();
            carts.push(cart.clone());
            hs.push(tokio::spawn(async move {
                n1.post(
                    &format!("/api/v1/carts/{cart}/items"),
                    &json!({"productId": pid, "quantity": 1}),
                )
                .await
            }));
        }
        for h in hs {
            assert_eq!(h.await.unwrap().unwrap().status.as_u16(), 200);
        }
    }
    c.resume(2).unwrap();
    c.restart(1).await.unwrap();
    let took = c
        .wait_converged(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("everyone catches up");
    eprintln!("caught up {took:?} after resume/restart");
    for i in 1..3 {
        let st: Value = c
            .client(i)
            .get("/api/v1/cluster/status")
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(st["keys"]["carts"], 300, "node {i}: {st}");
        let v: Value = c
            .client(i)
            .get(&format!("/api/v1/carts/{}", carts[299]))
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["items"][0]["quantity"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_data_directory_resyncs_the_whole_state() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = cluster(Spec::default()).await;
    for i in 0..30 {
        create(&c.client(i % 3), &format!("W-{i}"), 5).await;
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    c.stop(2).await.unwrap();
    c.wipe(2).unwrap();
    c.restart(2).await.unwrap();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("the wiped node resyncs");
    let st: Value = c
        .client(2)
        .get("/api/v1/cluster/status")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["keys"]["products"], 30, "{st}");
    assert_eq!(
        st["actor"], "n3.1",
        "a wiped node comes back as a new incarnation: {st}"
    );
    // It takes writes as its new self, and they replicate.
    let pid = create(&c.client(2), "AFTER-WIPE", 1).await;
    eventually(
        &c.client(0),
        &format!("/api/v1/products/{pid}"),
        "write after wipe",
        |v| v["sku"] == "AFTER-WIPE",
    )
    .await;
}

/// Starts a rogue node process from `dir` (its own cluster.toml and pki),
/// creates a product on it, and returns the process.
async fn rogue(dir: &std::path::Path, id: &str, http: std::net::SocketAddr) -> std::process::Child {
    let bin = concord_chaos::procs::concord_bin().unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.join("cluster.toml"))
        .args(["node", "--id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("rogue.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let secret = concord_node::pki::load_token_key(&concord_node::pki::PkiPaths::new(
        dir.join("data").join("pki"),
    ))
    .unwrap();
    let key = secret;
    let token = key.issue(&concord_node::auth::Claims {
        sub: "admin".into(),
        role: Role::Admin,
        exp: concord_node::clock::now_secs() + 600,
        iat: 0,
        sid: None,
    });
    let rc = Client::new(http).with_token(token);
    let t = std::time::Instant::now();
    while !rc
        .get("/ready")
        .await
        .map(|a| a.status.is_success())
        .unwrap_or(false)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "rogue did not start: {}",
            std::fs::read_to_string(dir.join("rogue.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    create(&rc, &format!("ROGUE-{id}"), 100).await;
    child
}

fn free() -> (std::net::SocketAddr, std::net::SocketAddr) {
    (
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    )
}

fn refused(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("concord_peer_refused_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_impostor_peers_cannot_inject_data() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec::default()).await;
    let real_nodes: String = c
        .nodes
        .iter()
        .map(|n| {
            format!(
                "[[node]]\nid = \"{}\"\nhttp = \"{}\"\ngossip = \"{}\"\n\n",
                n.id, n.http, n.gossip
            )
        })
        .collect();
    let bin = concord_chaos::procs::concord_bin().unwrap();
    // Certificates for n0 and n5 from the real CA (as `concord init` would make).
    let (h0, g0) = free();
    let extra = format!(
        "[cluster]\nname = \"test\"\ndata_dir = \"data\"\nembedding_dim = 64\n\n{real_nodes}[[node]]\nid = \"n0\"\nhttp = \"{h0}\"\ngossip = \"{g0}\"\n"
    );
    std::fs::write(c.dir().join("with-n0.toml"), extra).unwrap();
    assert!(
        Command::new(&bin)
            .arg("--config")
            .arg(c.dir().join("with-n0.toml"))
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    let bundle = c.dir().join("data").join("bundles").join("n0").join("pki");

    struct Case {
        name: &'static str,
        cluster: &'static str,
        id: &'static str,
        real_ca: bool,
        reason: &'static str,
    }
    let cases = [
        Case {
            name: "foreign CA",
            cluster: "test",
            id: "n0",
            real_ca: false,
            reason: "tls",
        },
        Case {
            name: "other cluster",
            cluster: "other",
            id: "n0",
            real_ca: true,
            reason: "cluster",
        },
        Case {
            name: "unknown node",
            cluster: "test",
            id: "n0",
            real_ca: true,
            reason: "unknown_node",
        },
        Case {
            name: "wrong node id",
            cluster: "test",
            id: "m0",
            real_ca: true,
            reason: "node_id",
        },
    ];
    for case in cases {
        let dir = c.dir().join(format!("rogue-{}", case.reason));
        let (h, g) = free();
        let toml = format!(
            "[cluster]\nname = \"{}\"\ndata_dir = \"data\"\nembedding_dim = 64\n\n[[node]]\nid = \"{}\"\nhttp = \"{h}\"\ngossip = \"{g}\"\n\n{real_nodes}",
            case.cluster, case.id
        );
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cluster.toml"), toml).unwrap();
        if case.real_ca {
            // The real CA, and n0's certificate (filed under the rogue's id).
            let pki = dir.join("data").join("pki");
            std::fs::create_dir_all(&pki).unwrap();
            for (from, to) in [
                ("ca.pem", "ca.pem".to_string()),
                ("cluster.secret", "cluster.secret".to_string()),
                ("n0.pem", format!("{}.pem", case.id)),
                ("n0.key", format!("{}.key", case.id)),
            ] {
                std::fs::copy(bundle.join(from), pki.join(to)).unwrap();
            }
        } else {
            assert!(
                Command::new(&bin)
                    .arg("--config")
                    .arg(dir.join("cluster.toml"))
                    .arg("init")
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let before = refused(
            &c.anonymous(0).get("/metrics").await.unwrap().text(),
            case.reason,
        );
        let mut child = rogue(&dir, case.id, h).await;
        // Give it time to dial (n0 and m0 sort before n1, so they dial everyone).
        let t = std::time::Instant::now();
        loop {
            let now = refused(
                &c.anonymous(0).get("/metrics").await.unwrap().text(),
                case.reason,
            );
            if now > before {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{}: no refusal counted for reason {}",
                case.name,
                case.reason
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..3 {
            let st: Value = c
                .client(i)
                .get("/api/v1/cluster/status")
                .await
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(
                st["keys"]["products"], 0,
                "{}: node {i} took data from a rogue: {st}",
                case.name
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_never_oversells() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec {
        proxies: true,
        ..Default::default()
    })
    .await;
    let pid = create(&c.client(0), "LIMITED", 0).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    for i in [0, 2] {
        let a = c
            .client(i)
            .post("/api/v1/inventory/LIMITED/restock", &json!({"quantity": 5}))
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let ids = c.ids();
    c.faults.partition(&ids[..1], &ids[1..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut hs = Vec::new();
    for k in 0..24 {
        let node = if k % 2 == 0 { 0 } else { 2 };
        let client =
            Client::new(c.nodes[node].http).with_token(c.token(Role::Customer, &format!("c{k}")));
        let pid = pid.clone();
        hs.push(tokio::spawn(async move {
            let body = json!({"customerId": format!("c{k}"), "lineItems": [{"productId": pid, "quantity": 1}],
                "shippingAddress": {"name": "A", "line1": "1 St", "city": "X", "postalCode": "1", "country": "US"}});
            let a = client.post("/api/v1/orders", &body).await.unwrap();
            (node, a.status.as_u16(), a.text())
        }));
    }
    let mut sold = [0u64; 3];
    for h in hs {
        let (node, status, text) = h.await.unwrap();
        match status {
            201 => sold[node] += 1,
            409 => assert!(text.contains("insufficient_stock"), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    let total: u64 = sold.iter().sum();
    assert!(total <= 10, "oversold: {sold:?}");
    assert!(
        sold[0] > 0 && sold[2] > 0,
        "both sides of the partition keep selling: {sold:?}"
    );
    c.faults.heal();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("converges after the heal");
    for i in 0..3 {
        let inv: Value = c
            .client(i)
            .get("/api/v1/inventory/LIMITED")
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(inv["stock"].as_u64(), Some(10 - total), "node {i}: {inv}");
    }
}
