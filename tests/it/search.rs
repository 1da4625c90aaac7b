//! The search replica on real nodes: it follows creates, edits and deletes
//! made locally and replicated from peers, filters by category, keeps exact
//! SKUs first, and comes back (snapshot + reconciliation) after a restart.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Client;
use concord_tests::CLUSTER_LOCK;
use serde_json::{Value, json};

async fn hits(c: &Client, q: &str, extra: &str) -> Vec<(String, String)> {
    let a = c
        .get(&format!(
            "/api/v1/search/products?q={}&k=5{extra}",
            q.replace(' ', "%20")
        ))
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    let v: Value = a.json().unwrap();
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["product"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls a search until `f` holds (bounded).
async fn until(
    c: &Client,
    q: &str,
    extra: &str,
    what: &str,
    f: impl Fn(&[(String, String)]) -> bool,
) {
    let t = std::time::Instant::now();
    loop {
        let h = hits(c, q, extra).await;
        if f(&h) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{what}: search for {q:?} on {} gave {h:?}",
            c.addr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_replica_follows_the_catalog_on_every_node() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec::default())
        .await
        .expect("cluster starts");
    let fillers = [
        ("Stainless Steel Kettle", "kitchen"),
        ("Cast Iron Skillet", "kitchen"),
        ("Trail Running Shoes", "shoes"),
        ("Wool Hiking Socks", "apparel"),
        ("Ceramic Pour-Over Dripper", "kitchen"),
    ];
    for (i, (name, cat)) in fillers.iter().enumerate() {
        let a = c
            .client(i % 3)
            .post("/api/v1/products", &json!({"name": name, "sku": format!("F-{i}"), "price": "10", "currency": "USD", "category": cat}))
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), 201);
    }
    let a = c
        .client(0)
        .post(
            "/api/v1/products",
            &json!({"name": "Quantum Flux Capacitor", "sku": "QFC-88", "price": "1985.00", "currency": "USD",
                    "description": "Time travel accessory, stainless housing", "category": "electronics"}),
        )
        .await
        .unwrap();
    let id = a.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Created on n1, found on every node, first for its words and its SKU.
    for i in 0..3 {
        until(&c.client(i), "quantum flux capacitor", "", "create", |h| {
            h.first().is_some_and(|x| x.0 == id)
        })
        .await;
        until(&c.client(i), "QFC-88", "", "sku", |h| {
            h.first().is_some_and(|x| x.0 == id)
        })
        .await;
    }
    // A category filter keeps to the category.
    let k = hits(&c.client(1), "stainless", "&category=kitchen").await;
    assert!(
        !k.is_empty()
            && k.iter()
                .all(|(_, n)| fillers.iter().any(|(f, cat)| f == n && *cat == "kitchen")),
        "{k:?}"
    );
    assert!(
        hits(&c.client(1), "stainless", "&category=nothing-here")
            .await
            .is_empty()
    );
    // An edit on n2 re-embeds everywhere.
    let a = c
        .client(1)
        .patch(
            &format!("/api/v1/products/{id}"),
            &json!({"name": "Chrono Widget"}),
        )
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 200);
    for i in 0..3 {
        until(&c.client(i), "chrono widget", "", "edit", |h| {
            h.first()
                .is_some_and(|x| x.0 == id && x.1 == "Chrono Widget")
        })
        .await;
    }
    // Restart n3: the index comes back from its snapshot (or the store) before /ready.
    c.stop(2).await.unwrap();
    c.restart(2).await.unwrap();
    until(&c.client(2), "chrono widget", "", "after restart", |h| {
        h.first().is_some_and(|x| x.0 == id)
    })
    .await;
    // A delete on n3 removes it from every replica.
    let a = c
        .client(2)
        .delete(&format!("/api/v1/products/{id}"))
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 204);
    for i in 0..3 {
        until(&c.client(i), "chrono widget", "", "delete", |h| {
            h.iter().all(|x| x.0 != id)
        })
        .await;
    }
    // A product with its own embedding is indexed by it.
    let mut e = vec![0.0f32; 64];
    e[3] = 1.0;
    let a = c
        .client(0)
        .post("/api/v1/products", &json!({"name": "Embedded Thing", "sku": "EMB-1", "price": "1", "currency": "USD", "embedding": e}))
        .await
        .unwrap();
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    until(&c.client(2), "EMB-1", "", "client embedding", |h| {
        h.first().is_some_and(|x| x.1 == "Embedded Thing")
    })
    .await;
}
