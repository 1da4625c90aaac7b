//! The web console in a real browser: headless Chromium, driven by
//! `tests/browser/console.mjs` (playwright-core), against a 3-node process
//! cluster with a fault proxy in front of each gossip port.
//!
//! The script does what a person would — watch the cluster, search, fill a
//! cart, check out, pay, open a chaos report — and asks this test for what a
//! browser cannot do, one line at a time on its stdout: `PARTITION n3`,
//! `HEAL`, `SHIP <order id>` (through another node, so the order page must
//! learn of it from the event stream). The test answers `ok` (or the error)
//! on the script's stdin. The script fails on any browser console error.
//!
//! Ignored by default: it needs Debian's `chromium` and the npm packages of
//! `tests/browser`. `scripts/browser-test` installs both, then runs it.
//! Screenshots go to `target/screenshots/` (or `$CONCORD_SCREENSHOTS`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use concord_chaos::procs::{ProcessCluster, Spec};
use concord_node::http_client::Client;
use concord_tests::CLUSTER_LOCK;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The longest the browser script may take, all steps together.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// Gives the espresso machine (the product the script buys) a few price
/// changes, so that its page has a price history to draw.
async fn reprice(c: &Client) {
    let page: Value = c
        .get("/api/v1/products?category=kitchen&limit=100")
        .await
        .expect("lists the kitchen")
        .json()
        .expect("a page of products");
    let id = page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["sku"] == "KT-ESPR-0001"))
        .and_then(|p| p["id"].as_str())
        .expect("the sample catalog has the espresso machine")
        .to_string();
    for (price, reason) in [("649.00", "list price"), ("579.00", "winter sale")] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let a = c
            .put(
                &format!("/api/v1/products/{id}/price"),
                &json!({"price": price, "currency": "USD", "reason": reason}),
            )
            .await
            .expect("sets the price");
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
}

/// Answers one command of the script.
async fn obey(c: &ProcessCluster, command: &[&str]) -> String {
    match command {
        ["PARTITION", id] => {
            let others: Vec<String> = c.ids().into_iter().filter(|n| n != id).collect();
            c.faults.partition(&[id.to_string()], &others);
            "ok".into()
        }
        ["HEAL"] => {
            c.faults.heal();
            "ok".into()
        }
        ["SHIP", order] => match c
            .client(1)
            .post(&format!("/api/v1/orders/{order}/ship"), &json!({}))
            .await
        {
            Ok(a) if a.status.is_success() => "ok".into(),
            Ok(a) => format!("ship answered {}: {}", a.status, a.text()),
            Err(e) => format!("ship failed: {e}"),
        },
        _ => format!("unknown command {command:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and tests/browser/node_modules: run scripts/browser-test"]
async fn the_console_shows_divergence_and_convergence_in_a_real_browser() {
    let _g = CLUSTER_LOCK.lock().await;
    // Payments as `concord up` has them: shoppers pay by card.
    let c = ProcessCluster::start(Spec {
        nodes: 3,
        proxies: true,
        extra_toml: format!(
            "{}\n[payments]\nprovider = \"test\"\n",
            Spec::default().extra_toml
        ),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let clients: Vec<Client> = (0..3).map(|i| c.client(i)).collect();
    concord_node::sample::load(&clients)
        .await
        .expect("the sample catalog loads");
    c.wait_converged(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("the catalog reaches every node");
    reprice(&clients[0]).await;

    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = std::env::var_os("CONCORD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../target/screenshots"));
    let mut script = Command::new("node")
        .arg(here.join("browser/console.mjs"))
        .arg(format!("http://{}/", c.nodes[0].http))
        .arg(&shots)
        .env("CONCORD_TOKEN", c.admin_token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js) runs the browser script");
    let mut stdin = script.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("the script's stdout")).lines();

    let dialogue = async {
        let mut done = false;
        while let Some(line) = lines.next_line().await.expect("reads the script's output") {
            eprintln!("browser| {line}");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"DONE") => done = true,
                Some(w) if w.chars().all(|ch| ch.is_ascii_uppercase()) => {
                    let answer = obey(&c, &words).await;
                    eprintln!("browser| -> {answer}");
                    stdin
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .expect("answers the script");
                }
                _ => {}
            }
        }
        done
    };
    let done = tokio::time::timeout(SCRIPT_TIMEOUT, dialogue)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish within {SCRIPT_TIMEOUT:?}"));
    let status = tokio::time::timeout(Duration::from_secs(10), script.wait())
        .await
        .expect("the browser script exits")
        .expect("waits for the browser script");
    assert!(
        done && status.success(),
        "the browser script failed ({status}); see its output above and {}",
        shots.join("failure.png").display()
    );
}
