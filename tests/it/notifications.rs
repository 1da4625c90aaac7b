//! Order e-mails through a real SMTP server (aiosmtpd): placed, shipped and
//! cancelled, to the account's e-mail or the checkout's, each once, with a
//! stable Message-ID; a relay that is down delays them, never loses them;
//! and a `kill -9` of the seller before it recorded a mail leaves it to be
//! sent after the restart.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_tests::{CLUSTER_LOCK, InProcessNode, SmtpSink, create};
use serde_json::{Value, json};

use crate::payments::address;

fn config(sink: &SmtpSink) -> String {
    format!(
        "[http]\nrate_limit_per_sec = 0\ntoken_rate_limit_per_sec = 0\n\n[accounts]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nlogin_per_address = 0\nregister_per_address = 0\n\n[notifications]\nsmtp_relay = \"{}\"\nfrom = \"Concord Shop <shop@example.com>\"\n",
        sink.addr
    )
}

/// Waits until the sink holds `n` messages (bounded by 15 s).
async fn wait_for(sink: &SmtpSink, n: usize) -> Vec<String> {
    for _ in 0..300 {
        let m = sink.messages();
        if m.len() >= n {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.messages()
}

fn with_header<'a>(msgs: &'a [String], needle: &str) -> Vec<&'a String> {
    msgs.iter().filter(|m| m.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_mails_its_customer_once_per_notice() {
    let sink = SmtpSink::start().unwrap();
    let n = InProcessNode::start(&config(&sink)).await.unwrap();
    let admin = n.admin();
    let pid = create(&admin, "TENT", 10).await;
    // A shopper with an account: mails go to the account's e-mail.
    let reg = n
        .anonymous()
        .post(
            "/api/v1/auth/register",
            &json!({"email": "Ada@Example.com", "password": "correct horse", "name": "Ada"}),
        )
        .await
        .unwrap();
    let ada: Value = reg.json().unwrap();
    let ada_id = ada["account"]["id"].as_str().unwrap().to_string();
    let o1: Value = admin
        .post("/api/v1/orders", &json!({"customerId": ada_id, "lineItems": [{"productId": pid, "quantity": 2}], "shippingAddress": address()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let o1 = o1["id"].as_str().unwrap().to_string();
    admin
        .post(&format!("/api/v1/orders/{o1}/pay"), &json!({}))
        .await
        .unwrap();
    admin
        .post(&format!("/api/v1/orders/{o1}/ship"), &json!({}))
        .await
        .unwrap();
    // A guest checkout with an e-mail on the order, then cancelled.
    let o2: Value = admin
        .post("/api/v1/orders", &json!({"customerId": "guest-7", "email": " Bob@Example.com ", "lineItems": [{"productId": pid, "quantity": 1}], "shippingAddress": address()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let o2 = o2["id"].as_str().unwrap().to_string();
    admin
        .post(&format!("/api/v1/orders/{o2}/cancel"), &json!({}))
        .await
        .unwrap();
    // No e-mail known: nothing to send.
    admin
        .post("/api/v1/orders", &json!({"customerId": "nobody", "lineItems": [{"productId": pid, "quantity": 1}], "shippingAddress": address()}))
        .await
        .unwrap();
    let msgs = wait_for(&sink, 4).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msgs = if sink.messages().len() > msgs.len() {
        sink.messages()
    } else {
        msgs
    };
    assert_eq!(
        msgs.len(),
        4,
        "placed+shipped for Ada, placed+cancelled for Bob: {msgs:#?}"
    );
    let to_ada = with_header(&msgs, "X-RcptTo: ada@example.com");
    assert_eq!(to_ada.len(), 2);
    assert!(to_ada.iter().any(
        |m| m.contains(&format!("Message-ID: <{o1}.placed@concord>")) && m.contains("is placed")
    ));
    assert!(to_ada.iter().any(
        |m| m.contains(&format!("Message-ID: <{o1}.shipped@concord>")) && m.contains("has shipped")
    ));
    assert!(to_ada[0].contains("Total: 20.00 USD"), "{}", to_ada[0]);
    let to_bob = with_header(&msgs, "X-RcptTo: bob@example.com");
    assert!(
        to_bob
            .iter()
            .any(|m| m.contains(&format!("<{o2}.cancelled@concord>"))),
        "{to_bob:#?}"
    );
    // The order records what was sent.
    let bad = admin
        .post("/api/v1/orders", &json!({"customerId": "x", "email": "not an e-mail", "lineItems": [{"productId": pid, "quantity": 1}], "shippingAddress": address()}))
        .await
        .unwrap();
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.text());
    assert!(bad.text().contains("email"), "{}", bad.text());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_delays_mail_and_a_killed_seller_sends_after_restart() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut sink = SmtpSink::start().unwrap();
    let addr = sink.addr;
    let c = ProcessCluster::start(Spec {
        extra_toml: config(&sink),
        ..Default::default()
    })
    .await
    .unwrap();
    let pid = create(&c.client(0), "LAMP", 10).await;
    // The relay is down: the seller keeps the mail due and retries.
    sink.stop();
    let o: Value = c
        .client(0)
        .post("/api/v1/orders", &json!({"customerId": "g", "email": "carol@example.com", "lineItems": [{"productId": pid, "quantity": 1}], "shippingAddress": address()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let o = o["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The seller dies with the mail unsent; the relay comes back on the same
    // port; the restarted seller finds the notice due in the order itself.
    let mut c = c;
    c.kill9(0).unwrap();
    let sink = loop {
        let s = SmtpSink::start_on(addr);
        if let Ok(s) = s {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.restart(0).await.unwrap();
    let msgs = wait_for(&sink, 1).await;
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(msgs[0].contains(&format!("<{o}.placed@concord>")));
    // Recorded on every node: nobody sends it again.
    for i in 0..3 {
        concord_tests::eventually(
            &c.client(i),
            &format!("/api/v1/orders/{o}"),
            "the order",
            |v| v["id"].is_string(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 1, "sent once");
}
