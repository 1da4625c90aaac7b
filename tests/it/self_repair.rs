//! The cluster repairs itself, staged with real processes: a node whose
//! syncs are slow and which is killed never leaves a peer ahead of its own
//! history (the durable frontier); a write lost at equal version vectors is
//! found by the digests and repaired; a cancel learned by a reconnect pull
//! returns its units; effects of a write outlive the client that asked for
//! it; a node without peers keeps no delta log; a replaced store's orders
//! answer `seller_gone`; a re-initialised node never reuses an incarnation.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use concord_chaos::disks::{self, Strace};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Client;
use concord_tests::{Acked, CLUSTER_LOCK, cart_writers, create, eventually, missing_adds};
use serde_json::{Value, json};

async fn cluster(spec: Spec) -> ProcessCluster {
    ProcessCluster::start(spec).await.expect("cluster starts")
}

fn hooks() -> Vec<(String, String)> {
    vec![("CONCORD_TEST_HOOKS".into(), "1".into())]
}

fn address() -> Value {
    json!({"name": "A", "line1": "1 St", "city": "X", "postalCode": "1", "country": "US"})
}

async fn status(c: &Client) -> Value {
    c.get("/api/v1/cluster/status")
        .await
        .expect("status answers")
        .json()
        .expect("json")
}

/// A node's own actor and the highest of its dots it holds.
async fn own_seq(c: &Client) -> (String, u64) {
    let s = status(c).await;
    let actor = s["actor"].as_str().expect("actor").to_string();
    let own = s["versionVector"][&actor].as_u64().unwrap_or(0);
    (actor, own)
}

/// Writes through a slow disk, `kill -9`, a restart cut off from the peers,
/// writes while cut off, a heal — three times. After every restart no peer
/// holds more of the node's dots than the node itself; after every heal the
/// digests agree within 10 s and every acknowledged write is on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_and_kill_9_never_leave_a_peer_ahead_of_the_node() {
    assert!(
        disks::have_strace(),
        "this test slows syncs with strace: apt-get install strace"
    );
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = cluster(Spec {
        proxies: true,
        extra_toml: "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n[replication]\nanti_entropy_ms = 50\n".into(),
        ..Default::default()
    })
    .await;
    let ids = c.ids();
    let pid = create(&c.client(0), "SLOW-1", 0).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("converged");
    let mut all_acked = Vec::new();
    for round in 0..3 {
        let node_pid = c.nodes[0].pid().expect("running");
        let trace = Strace::slow_syncs(
            node_pid,
            Duration::from_millis(150),
            &c.dir().join(format!("slow-{round}.txt")),
        )
        .expect("strace attaches");
        let acked: Acked = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers = cart_writers(&c.client(0), &pid, 8, &acked, &stop);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        c.kill9(0).expect("kill");
        let _ = trace.stop();
        for w in writers {
            let _ = w.await;
        }
        // Restart cut off: the node must hold at least what any peer holds
        // of its own history.
        c.faults.partition(&ids[..1], &ids[1..]);
        c.restart(0).await.expect("restarts");
        let (actor, own) = own_seq(&c.client(0)).await;
        for (i, id) in ids.iter().enumerate().skip(1) {
            let theirs = status(&c.client(i)).await["versionVector"][&actor]
                .as_u64()
                .unwrap_or(0);
            assert!(
                theirs <= own,
                "round {round}: {id} holds {actor}'s dots up to {theirs}, {actor} itself only {own}"
            );
        }
        // 20 writes while cut off, then heal.
        let admin = c.client(0);
        let mut cut_off = Vec::new();
        for _ in 0..20 {
            let cart = uuid::Uuid::new_v4().to_string();
            let a = admin
                .post(
                    &format!("/api/v1/carts/{cart}/items"),
                    &json!({"productId": pid, "quantity": 1}),
                )
                .await
                .expect("answers");
            assert_eq!(a.status.as_u16(), 200, "{}", a.text());
            cut_off.push((cart, pid.clone()));
        }
        c.faults.heal();
        c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        all_acked.extend(acked.lock().unwrap_or_else(|p| p.into_inner()).clone());
        all_acked.extend(cut_off);
        for (i, id) in ids.iter().enumerate() {
            let missing = missing_adds(&c.client(i), &all_acked).await;
            assert!(
                missing.is_empty(),
                "round {round}: {id} lacks {} of {} acknowledged adds: {:?}",
                missing.len(),
                all_acked.len(),
                &missing[..missing.len().min(3)]
            );
        }
    }
}

/// One node loses a cart's entry while every vector stays equal (a disk that
/// lost a write): the digests disagree, nothing else does. Digest-driven
/// anti-entropy repairs it within 5 s, counts it and shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lost_at_equal_vectors_is_repaired_counted_and_shown() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec {
        env: hooks(),
        ..Default::default()
    })
    .await;
    let pid = create(&c.client(0), "DIV-1", 0).await;
    let cart = uuid::Uuid::new_v4().to_string();
    let a = c
        .client(0)
        .post(
            &format!("/api/v1/carts/{cart}/items"),
            &json!({"productId": pid, "quantity": 3}),
        )
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("converged");
    let before = status(&c.client(1)).await;
    let a = c
        .client(1)
        .post(
            "/api/v1/test/forget",
            &json!({"keyspace": "carts", "key": cart}),
        )
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let lost = status(&c.client(1)).await;
    assert_eq!(
        lost["versionVector"], before["versionVector"],
        "vectors stay equal"
    );
    assert_ne!(
        lost["digest"], before["digest"],
        "the digest shows the loss"
    );
    let t = Instant::now();
    let took = c
        .wait_converged(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("the divergence is repaired within 5 s");
    eprintln!("divergence repaired in {took:?}");
    let v = eventually(
        &c.client(1),
        &format!("/api/v1/carts/{cart}"),
        "the lost line",
        |v| v["items"][0]["quantity"] == 3,
    )
    .await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert!(t.elapsed() < Duration::from_secs(6));
    let s = status(&c.client(1)).await;
    assert!(s["divergence"]["repaired"].as_u64() >= Some(1), "{s}");
    let keys = s["divergence"]["last"]["keys"].to_string();
    assert!(keys.contains(&cart), "the repaired key is shown: {keys}");
    let metrics = c
        .anonymous(1)
        .get("/metrics")
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("concord_divergence_repaired_total") && !l.ends_with(" 0")),
        "counted in /metrics"
    );
}

/// An order sold by n1 is cancelled on n2 while they are cut off (long
/// enough for the connection to drop, so no push can carry it): n1 learns of
/// the cancel by its reconnect pull and must return the units promptly, with
/// no other traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_learned_by_a_pull_returns_its_units() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec {
        nodes: 2,
        proxies: true,
        ..Default::default()
    })
    .await;
    let pid = create(&c.client(0), "RET-1", 5).await;
    let order: Value = c
        .client(0)
        .post(
            "/api/v1/orders",
            &json!({"customerId": "alice", "lineItems": [{"productId": pid, "quantity": 2}], "shippingAddress": address()}),
        )
        .await
        .expect("answers")
        .json()
        .expect("json");
    let oid = order["id"].as_str().expect("order id").to_string();
    c.wait_converged(&[0, 1], Duration::from_secs(10))
        .await
        .expect("converged");
    let ids = c.ids();
    c.faults.partition(&ids[..1], &ids[1..]);
    // Past the QUIC idle timeout: the connection is gone, pushes are dropped.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let a = c
        .client(1)
        .post(&format!("/api/v1/orders/{oid}/cancel"), &json!({}))
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.faults.heal();
    let t = Instant::now();
    eventually(
        &c.client(0),
        "/api/v1/inventory/RET-1",
        "the returned units",
        |v| v["stock"] == 5,
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "units came back only after {:?}",
        t.elapsed()
    );
}

/// A client that hangs up while its write waits for a slow disk: the write
/// is durable, and it must still reach the peer by push (anti-entropy is
/// made too slow to carry it here), the node's search index and its event
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_effects_of_a_write_outlive_the_client_that_hung_up() {
    assert!(
        disks::have_strace(),
        "this test slows syncs with strace: apt-get install strace"
    );
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec {
        nodes: 2,
        extra_toml: "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n[replication]\nanti_entropy_ms = 60000\n"
            .into(),
        ..Default::default()
    })
    .await;
    c.wait_converged(&[0, 1], Duration::from_secs(10))
        .await
        .expect("converged");
    let trace = Strace::slow_syncs(
        c.nodes[0].pid().expect("running"),
        Duration::from_millis(600),
        &c.dir().join("slow.txt"),
    )
    .expect("strace attaches");
    let impatient = c.client(0).with_timeout(Duration::from_millis(100));
    let r = impatient
        .post(
            "/api/v1/products",
            &json!({"name": "Hung Up Lamp", "sku": "HUNG-UP", "price": "5.00", "currency": "USD"}),
        )
        .await;
    assert!(
        r.is_err(),
        "the client was meant to give up before the flush"
    );
    let _ = trace.stop();
    eventually(
        &c.client(0),
        "/api/v1/search/products?q=HUNG-UP&k=1",
        "the product in n1's search index",
        |v| v["hits"][0]["product"]["sku"] == "HUNG-UP",
    )
    .await;
    let t = Instant::now();
    eventually(
        &c.client(1),
        "/api/v1/search/products?q=HUNG-UP&k=1",
        "the product pushed to n2",
        |v| v["hits"][0]["product"]["sku"] == "HUNG-UP",
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "it came by anti-entropy, not push"
    );
}

/// A node with no peers is never pulled from: it keeps no delta log, however
/// much churn it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_peers_keeps_no_delta_log() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = cluster(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await;
    let admin = c.client(0);
    let pid = create(&admin, "CHURN-1", 0).await;
    let carts: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for round in 0..100u32 {
        for cart in &carts {
            let a = admin
                .put(
                    &format!("/api/v1/carts/{cart}/items/{pid}"),
                    &json!({"quantity": 1 + round % 5}),
                )
                .await
                .expect("answers");
            assert!(a.status.is_success(), "{}", a.text());
        }
    }
    eventually(
        &admin,
        "/api/v1/cluster/status",
        "an empty delta log",
        |v| v["deltaLog"] == 0,
    )
    .await;
}

/// An order whose seller's store was replaced can never be shipped: 409
/// `seller_gone` on the seller's own node and on its peers — not 503 for
/// ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_of_a_replaced_store_answers_seller_gone() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = cluster(Spec {
        nodes: 2,
        ..Default::default()
    })
    .await;
    let pid = create(&c.client(0), "GONE-1", 3).await;
    let order: Value = c
        .client(0)
        .post(
            "/api/v1/orders",
            &json!({"customerId": "alice", "lineItems": [{"productId": pid, "quantity": 1}], "shippingAddress": address()}),
        )
        .await
        .expect("answers")
        .json()
        .expect("json");
    let oid = order["id"].as_str().expect("id").to_string();
    let a = c
        .client(0)
        .post(&format!("/api/v1/orders/{oid}/pay"), &json!({}))
        .await
        .expect("answers");
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    c.wait_converged(&[0, 1], Duration::from_secs(10))
        .await
        .expect("converged");
    c.stop(0).await.expect("stops");
    c.wipe(0).expect("wipes");
    c.restart(0).await.expect("restarts");
    eventually(
        &c.client(0),
        &format!("/api/v1/orders/{oid}"),
        "the order back on n1",
        |v| v["status"] == "paid",
    )
    .await;
    for i in [0, 1] {
        let a = c
            .client(i)
            .post(&format!("/api/v1/orders/{oid}/ship"), &json!({}))
            .await
            .expect("answers");
        assert_eq!(a.status.as_u16(), 409, "node {i}: {}", a.text());
        assert!(a.text().contains("seller_gone"), "node {i}: {}", a.text());
    }
}

/// `concord init` after a node's certificate and directory were deleted
/// makes a node that never reuses an incarnation of its earlier lives (its
/// peers would drop its new writes as already seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_made_again_by_init_never_reuses_an_incarnation() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = cluster(Spec {
        nodes: 2,
        ..Default::default()
    })
    .await;
    let (first, _) = own_seq(&c.client(0)).await;
    create(&c.client(0), "INC-1", 0).await;
    c.wait_converged(&[0, 1], Duration::from_secs(10))
        .await
        .expect("converged");
    c.stop(0).await.expect("stops");
    let pki = c.dir().join("data").join("pki");
    for f in ["n1.pem", "n1.key"] {
        std::fs::remove_file(pki.join(f)).expect("delete the certificate");
    }
    std::fs::remove_dir_all(c.node_dir(0)).expect("delete the node directory");
    let bin = concord_chaos::procs::concord_bin().expect("binary");
    let out = std::process::Command::new(bin)
        .arg("--config")
        .arg(c.config_path())
        .arg("init")
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.restart(0).await.expect("restarts");
    let (again, _) = own_seq(&c.client(0)).await;
    assert_ne!(again, first, "the node came back as its old actor");
    // Its new writes reach the peer (they would be dropped as duplicates
    // had it reused its old dots).
    let pid = create(&c.client(0), "INC-2", 0).await;
    eventually(
        &c.client(1),
        &format!("/api/v1/products/{pid}"),
        "the new write",
        |v| v["sku"] == "INC-2",
    )
    .await;
}

/// One SKU restocked on one node and sold by 12 clients on all three:
/// exactly the stock is sold, and no checkout is refused while units remain
/// somewhere the asking node can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_checkouts_are_not_refused_while_the_cluster_holds_units() {
    let _g = CLUSTER_LOCK.lock().await;
    // Each client is one customer that never pays: lift the unpaid-order
    // limit (20 per customer) so only stock decides.
    let c = cluster(Spec {
        extra_toml: format!(
            "{}\n[limits]\nmax_open_orders_per_customer = 100000\n",
            Spec::default().extra_toml
        ),
        ..Default::default()
    })
    .await;
    let units = 600u64;
    let pid = create(&c.client(0), "HOT-1", units).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("converged");
    c.wait_connected(Duration::from_secs(10))
        .await
        .expect("every peer reachable");
    let r = concord_chaos::contended::run(&c, &pid, units, 12).await;
    assert_eq!(r.sold, units, "{r:?}");
    assert_eq!(r.refused_while_stock_remained, 0, "{r:?}");
    for i in 0..3 {
        eventually(&c.client(i), "/api/v1/inventory/HOT-1", "sold out", |v| {
            v["stock"] == 0
        })
        .await;
    }
}
