//! Accounts across real node processes: a sign-out or a disable on one node
//! holds on every node, and one e-mail registered on both sides of a
//! partition ends, after the heal, as exactly one account that only its own
//! password opens.

use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Client;
use concord_tests::CLUSTER_LOCK;
use serde_json::{Value, json};

use crate::accounts::{bearer, login, register};

fn spec(proxies: bool, extra: &str) -> Spec {
    Spec {
        proxies,
        extra_toml: format!("{}{extra}", crate::accounts::FAST),
        ..Default::default()
    }
}

async fn status_of(c: &Client, path: &str) -> u16 {
    c.get(path).await.unwrap().status.as_u16()
}

/// Polls until `path` answers `want` on `c`.
async fn until_status(c: &Client, path: &str, want: u16) -> u16 {
    let mut last = 0;
    for _ in 0..100 {
        last = status_of(c, path).await;
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_or_a_disable_on_one_node_holds_on_all() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(spec(
        false,
        "lockout_failures = 2\ndelay_after_failures = 100\n",
    ))
    .await
    .unwrap();
    let s = register(&c.anonymous(0), "ada@example.com", "correct horse").await;
    assert_eq!(s.status.as_u16(), 201, "{}", s.text());
    let session: Value = s.json().unwrap();
    let id = session["account"]["id"].as_str().unwrap().to_string();
    // The token works on another node at once, before replication.
    let on1 = bearer(&c.anonymous(1), &s);
    assert_eq!(status_of(&on1, "/api/v1/carts/c1").await, 200);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    // Log in on node 2 too, then sign the first session out on node 0.
    let on0 = bearer(&c.anonymous(0), &s);
    assert_eq!(
        on0.post("/api/v1/auth/logout", &json!({}))
            .await
            .unwrap()
            .status
            .as_u16(),
        204
    );
    assert_eq!(
        until_status(&on1, "/api/v1/me", 401).await,
        401,
        "logout honoured on node 1"
    );
    // Once node 2 has the logout too (it honours the old tokens until then,
    // as documented), the session's refresh token is refused there.
    let on2_old = bearer(&c.anonymous(2), &s);
    assert_eq!(
        until_status(&on2_old, "/api/v1/me", 401).await,
        401,
        "logout honoured on node 2"
    );
    let rt = session["refreshToken"].as_str().unwrap();
    let r = c
        .anonymous(2)
        .post("/api/v1/auth/refresh", &json!({"refreshToken": rt}))
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 401, "{}", r.text());
    // A disable on node 1 refuses every token of the account on node 2.
    let s2 = login(&c.anonymous(2), "ada@example.com", "correct horse").await;
    let on2 = bearer(&c.anonymous(2), &s2);
    assert_eq!(status_of(&on2, "/api/v1/me").await, 200);
    let d = c
        .client(1)
        .post(&format!("/api/v1/customers/{id}/disable"), &json!({}))
        .await
        .unwrap();
    assert_eq!(d.status.as_u16(), 200, "{}", d.text());
    assert_eq!(
        until_status(&on2, "/api/v1/me", 403).await,
        403,
        "disable honoured on node 2"
    );
    let l = login(&c.anonymous(0), "ada@example.com", "correct horse").await;
    assert_eq!(l.status.as_u16(), 403, "{}", l.text());
    // Failed logins count per account across nodes: two on node 0 lock the
    // account on node 2, whose own address count is still zero.
    assert_eq!(
        register(&c.anonymous(0), "bob@example.com", "bob's password")
            .await
            .status
            .as_u16(),
        201
    );
    for _ in 0..2 {
        let f = login(&c.anonymous(0), "bob@example.com", "wrong horse").await;
        assert_eq!(f.status.as_u16(), 401, "{}", f.text());
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let locked = login(&c.anonymous(2), "bob@example.com", "bob's password").await;
    assert_eq!(locked.status.as_u16(), 429, "{}", locked.text());
    assert!(
        locked.text().contains("account_locked"),
        "{}",
        locked.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_registered_on_both_sides_of_a_partition_is_one_account() {
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(spec(true, "")).await.unwrap();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10))
        .await
        .unwrap();
    let ids = c.ids();
    c.faults.partition(&ids[..1], &ids[1..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two shoppers, one e-mail, different passwords, one on each side.
    let a = register(&c.anonymous(0), "sam@example.com", "password of A").await;
    let b = register(&c.anonymous(2), "Sam@Example.com", "password of B").await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text());
    assert_eq!(b.status.as_u16(), 201, "{}", b.text());
    let (va, vb): (Value, Value) = (a.json().unwrap(), b.json().unwrap());
    assert_ne!(va["account"]["id"], vb["account"]["id"]);
    // Each side works while cut off.
    assert_eq!(
        status_of(&bearer(&c.anonymous(0), &a), "/api/v1/me").await,
        200
    );
    assert_eq!(
        status_of(&bearer(&c.anonymous(2), &b), "/api/v1/me").await,
        200
    );
    c.faults.heal();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("converges after the heal");
    // On every node: exactly one of the two passwords opens the e-mail, the
    // same one everywhere, and it opens the same account.
    let mut winner = None;
    for i in 0..3 {
        let la = login(&c.anonymous(i), "sam@example.com", "password of A").await;
        let lb = login(&c.anonymous(i), "sam@example.com", "password of B").await;
        let ok: Vec<&concord_node::http_client::Answer> = [&la, &lb]
            .into_iter()
            .filter(|x| x.status.as_u16() == 200)
            .collect();
        assert_eq!(ok.len(), 1, "node {i}: {} / {}", la.text(), lb.text());
        let won = if la.status.as_u16() == 200 { "A" } else { "B" };
        let loser = if won == "A" { &lb } else { &la };
        assert_eq!(
            loser.status.as_u16(),
            409,
            "node {i}: the loser is told: {}",
            loser.text()
        );
        assert!(
            loser.text().contains("account_superseded"),
            "{}",
            loser.text()
        );
        let account = ok[0].json::<Value>().unwrap()["account"]["id"].clone();
        match &winner {
            None => winner = Some((won, account)),
            Some(w) => assert_eq!(w, &(won, account), "node {i} agrees"),
        }
    }
    let (won, account) = winner.unwrap();
    let (win_s, lose_s) = if won == "A" { (&a, &b) } else { (&b, &a) };
    let expected = if won == "A" { &va } else { &vb };
    assert_eq!(account, expected["account"]["id"]);
    for i in 0..3 {
        // The winner's first session survives; the loser's tokens are refused.
        assert_eq!(
            status_of(&bearer(&c.anonymous(i), win_s), "/api/v1/me").await,
            200,
            "node {i}"
        );
        assert_eq!(
            status_of(&bearer(&c.anonymous(i), lose_s), "/api/v1/me").await,
            401,
            "node {i}"
        );
        let rt = lose_s.json::<Value>().unwrap()["refreshToken"]
            .as_str()
            .unwrap()
            .to_string();
        let r = c
            .anonymous(i)
            .post("/api/v1/auth/refresh", &json!({"refreshToken": rt}))
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 401, "node {i}: {}", r.text());
        let page: Value = c
            .client(i)
            .get("/api/v1/customers?email=sam@example.com")
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "node {i}: {page}"
        );
        assert_eq!(page["items"][0]["id"], account);
    }
    // And the e-mail stays taken.
    let again = register(&c.anonymous(1), "sam@example.com", "password of C").await;
    assert_eq!(again.status.as_u16(), 409, "{}", again.text());
}
