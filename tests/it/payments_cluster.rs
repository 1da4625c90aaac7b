//! Payments across real node processes: a payment asked of any node is
//! carried out by the seller; a provider call that times out, retried
//! through another node — or cut short by a `kill -9` of the seller —
//! charges once; a provider webhook delivered to two nodes has one effect;
//! refunds asked on both sides of a partition never exceed the capture.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_tests::CLUSTER_LOCK;
use serde_json::{Value, json};

use crate::payments::{
    OK, THREE_DS, charges, code, deliver, intent_event, ledger, order, pay, until_answered,
};

fn spec(proxies: bool, payments: &str) -> Spec {
    Spec {
        proxies,
        extra_toml: format!(
            "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[payments]\nprovider = \"test\"\n{payments}"
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_payment_retried_elsewhere_or_cut_by_a_kill_charges_once() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(spec(
        false,
        "test_latency_ms = 1500\ncall_timeout_ms = 600\n",
    ))
    .await
    .unwrap();
    let pid = concord_tests::create(&c.client(0), "TENT", 50).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    // Sold by node 0; paid through node 1, whose forward times out at the
    // provider; retried through node 2.
    let o = order(&c.client(0), "alice", &pid, 2).await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let token = c.token(concord_node::auth::Role::Customer, "alice");
    let addrs: Vec<_> = (0..3).map(|i| c.client(i).addr()).collect();
    let alice =
        |i: usize| concord_node::http_client::Client::new(addrs[i]).with_token(token.clone());
    let first = pay(&alice(1), &o, OK).await;
    assert_eq!(
        (first.status.as_u16(), code(&first).as_str()),
        (503, "provider_unavailable"),
        "{}",
        first.text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let via2 = alice(2);
    until_answered(30, Duration::from_millis(500), || pay(&via2, &o, OK)).await;
    let l = ledger(&c.client(0), &o).await;
    assert_eq!(
        (l.len(), charges(&l)),
        (1, 1),
        "one intent, one charge: {l:?}"
    );

    // The seller killed in the middle of a provider call, then restarted:
    // the retry resumes the same attempt under the same keys.
    let o2 = order(&c.client(0), "alice", &pid, 1).await;
    let payer = alice(0).with_timeout(Duration::from_secs(10));
    let o2c = o2.clone();
    let call = tokio::spawn(async move { pay(&payer, &o2c, OK).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill9(0).unwrap();
    let _ = call.await;
    c.restart(0).await.unwrap();
    let via1 = alice(1);
    let done = until_answered(30, Duration::from_millis(500), || pay(&via1, &o2, OK)).await;
    assert_eq!(
        done.json::<Value>().unwrap()["payment"]["attempts"],
        1,
        "{}",
        done.text()
    );
    let l = ledger(&c.client(0), &o2).await;
    assert_eq!(
        (l.len(), charges(&l)),
        (1, 1),
        "one intent, one charge after the kill: {l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_webhook_delivered_to_two_nodes_has_one_effect() {
    let _g = CLUSTER_LOCK.lock().await;
    let dir = std::env::temp_dir().join(format!("concord-whsec-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("webhook.secret");
    let secret = b"whsec_cluster_0123456789abcdef";
    std::fs::write(&secret_file, secret).unwrap();
    let c = ProcessCluster::start(spec(
        false,
        &format!(
            "webhook_secret_file = {:?}\n",
            secret_file.display().to_string()
        ),
    ))
    .await
    .unwrap();
    let pid = concord_tests::create(&c.client(0), "LAMP", 10).await;
    let o = order(&c.client(0), "alice", &pid, 1).await;
    let v: Value = pay(&c.client(0), &o, THREE_DS).await.json().unwrap();
    assert_eq!(v["payment"]["status"], "requires_action", "{v}");
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let body = intent_event(
        "evt_twice",
        &o,
        v["payment"]["attempt"].as_str().unwrap(),
        v["payment"]["providerRef"].as_str().unwrap(),
        "succeeded",
        1000,
    );
    let now = concord_node::clock::now_secs();
    // The provider retries a delivery it thinks failed: two nodes at once.
    let (n1, n2) = (c.anonymous(1), c.anonymous(2));
    let (a, b) = tokio::join!(
        deliver(&n1, secret, &body, now),
        deliver(&n2, secret, &body, now)
    );
    assert_eq!(
        (a.status.as_u16(), b.status.as_u16()),
        (200, 200),
        "{} / {}",
        a.text(),
        b.text()
    );
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        let v: Value = c
            .client(i)
            .get(&format!("/api/v1/orders/{o}"))
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            (v["status"].as_str(), v["payment"]["status"].as_str()),
            (Some("paid"), Some("succeeded")),
            "node {i}"
        );
        seen.push(v);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "every node shows the same order"
    );
    // Any later delivery, anywhere, is a duplicate.
    for i in 0..3 {
        let again = deliver(&c.anonymous(i), secret, &body, now).await;
        assert_eq!(
            again.json::<Value>().unwrap()["duplicate"],
            true,
            "node {i}"
        );
    }
    assert_eq!(
        charges(&ledger(&c.client(0), &o).await),
        0,
        "the webhook itself moves no money"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_asked_on_both_sides_of_a_partition_never_exceed_the_capture() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(spec(true, "")).await.unwrap();
    let pid = concord_tests::create(&c.client(0), "STOVE", 10).await;
    let o = order(&c.client(0), "alice", &pid, 10).await;
    assert_eq!(pay(&c.client(0), &o, OK).await.status.as_u16(), 200);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let ids = c.ids();
    c.faults.partition(&ids[..1], &ids[1..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refund = |i: usize, amount: &str| {
        let admin = c.client(i);
        let (o, amount) = (o.clone(), amount.to_string());
        async move {
            admin
                .post(
                    &format!("/api/v1/orders/{o}/refunds"),
                    &json!({"amount": amount, "reason": "race"}),
                )
                .await
                .unwrap()
        }
    };
    // The far side cannot reach the capture's holder: 503, nothing reserved.
    let far = refund(1, "60.00").await;
    assert_eq!(
        (far.status.as_u16(), code(&far).as_str()),
        (503, "seller_unreachable"),
        "{}",
        far.text()
    );
    // On the holder's side, six refunds of 30.00 race for 100.00.
    let racing: Vec<_> = (0..6).map(|_| tokio::spawn(refund(0, "30.00"))).collect();
    let mut answers = Vec::new();
    for r in racing {
        answers.push(r.await.unwrap());
    }
    let won = answers.iter().filter(|a| a.status.as_u16() == 200).count();
    for a in &answers {
        assert!(matches!(a.status.as_u16(), 200 | 409), "{}", a.text());
    }
    assert_eq!(won, 3, "three fit into 100.00");
    c.faults.heal();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .unwrap();
    for i in 0..3 {
        let v: Value = c
            .client(i)
            .get(&format!("/api/v1/orders/{o}"))
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            (v["captured"].clone(), v["refunded"].clone()),
            (json!(100.0), json!(90.0)),
            "node {i}: {v}"
        );
    }
    let l = ledger(&c.client(0), &o).await;
    assert_eq!(l[0]["refundedMinor"], 9000);
    // After the heal the far side reaches the holder again (once its link
    // is back: a 503 before that is the documented "try again").
    let mut late = refund(2, "10.01").await;
    for _ in 0..50 {
        if late.status.as_u16() != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        late = refund(2, "10.01").await;
    }
    assert_eq!(
        (late.status.as_u16(), code(&late).as_str()),
        (409, "refund_exceeds_capture"),
        "{}",
        late.text()
    );
    assert_eq!(refund(2, "10.00").await.status.as_u16(), 200);
}
