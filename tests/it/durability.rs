//! Acknowledged means durable: a node killed with `kill -9` in the middle of
//! a stream of concurrent writes has every acknowledged write after restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_tests::CLUSTER_LOCK;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let admin = c.client(0);
    let p: Value = admin
        .post(
            "/api/v1/products",
            &json!({"name": "Widget", "sku": "W-1", "price": "1.00", "currency": "USD"}),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for _ in 0..32 {
        let (client, acked, pid) = (
            admin.clone().with_timeout(Duration::from_secs(5)),
            acked.clone(),
            pid.clone(),
        );
        writers.push(tokio::spawn(async move {
            loop {
                let cart = uuid::Uuid::new_v4().to_string();
                let body = json!({"productId": pid, "quantity": 1});
                match client
                    .post(&format!("/api/v1/carts/{cart}/items"), &body)
                    .await
                {
                    Ok(a) if a.status.as_u16() == 200 => acked.lock().unwrap().push(cart),
                    Ok(a) => panic!("unexpected answer {} {}", a.status, a.text()),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill9(0).unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged before the kill",
        acked.len()
    );
    c.restart(0).await.expect("restarts after kill -9");
    let admin = c.client(0);
    let mut missing = Vec::new();
    for cart in &acked {
        let v: Value = admin
            .get(&format!("/api/v1/carts/{cart}"))
            .await
            .unwrap()
            .json()
            .unwrap();
        if v["items"].as_array().map(|a| a.len()) != Some(1) {
            missing.push(cart.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
