//! The probes of the audience checker ([`crate::checkers::audience`]): at
//! the end of a run, every node is asked — as an anonymous caller and as a
//! customer who owns nothing — for what only admins or the owners may see,
//! naming real carts and orders of the run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use concord_node::auth::Role;
use concord_node::http_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::checkers::FinalReads;
use crate::checkers::audience::{Probe, leaks};
use crate::procs::ProcessCluster;

/// The workload's shipping address line: a marker of customer data.
const ADDRESS_MARKER: &str = "1 Fault Lane";

/// What the event stream sends a subscriber within `wait`, replayed from
/// the start (`Last-Event-ID: 0`): (status, text).
async fn replay(addr: SocketAddr, token: Option<&str>, wait: Duration) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n{auth}\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline && out.len() < 8 << 20 {
        match tokio::time::timeout(deadline - Instant::now(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Probes every node of `c`, naming carts and orders from `finals`.
pub async fn probe(c: &ProcessCluster, finals: &FinalReads) -> Vec<Probe> {
    let mut carts: Vec<String> = finals
        .values()
        .flat_map(|r| r.carts.keys().cloned())
        .collect();
    let mut orders: Vec<String> = finals
        .values()
        .flat_map(|r| r.orders.keys().cloned())
        .collect();
    carts.sort();
    carts.dedup();
    orders.sort();
    orders.dedup();
    let mut markers: Vec<String> = carts.iter().chain(&orders).cloned().collect();
    markers.push(ADDRESS_MARKER.into());
    let stranger = c.token(Role::Customer, "chaos-stranger");
    let ids = c.ids();
    let mut out = Vec::new();
    for (i, node) in ids.iter().enumerate() {
        let other = &ids[(i + 1) % ids.len()];
        let mut anonymous: Vec<String> = vec![
            "/api/v1/cluster/nodes".into(),
            "/api/v1/cluster/tree?keyspace=orders&level=0&index=0".into(),
            "/api/v1/cluster/bucket?keyspace=orders&bucket=0".into(),
            "/api/v1/cluster/bucket?keyspace=carts&bucket=0".into(),
            format!("/api/v1/cluster/diff?a={node}&b={other}"),
            "/api/v1/orders".into(),
            "/api/v1/carts".into(),
        ];
        let mut owned: Vec<String> = Vec::new();
        owned.extend(carts.iter().take(3).map(|id| format!("/api/v1/carts/{id}")));
        owned.extend(
            orders
                .iter()
                .take(3)
                .map(|id| format!("/api/v1/orders/{id}")),
        );
        anonymous.extend(owned.iter().cloned());
        let anon = c.anonymous(i).with_timeout(Duration::from_secs(5));
        let strange = anon.clone().with_token(stranger.clone());
        let mut ask = async |who: &'static str, cl: &Client, path: &str, expected: Vec<u16>| {
            let request = format!("GET {path}");
            let (status, body) = match cl.get(path).await {
                Ok(a) => (a.status.as_u16(), a.text()),
                Err(_) => (0, String::new()),
            };
            let mut leaked = leaks(&body, &request, &markers);
            if path.starts_with("/api/v1/carts/")
                && status == 200
                && serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["items"].as_array().map(|a| !a.is_empty()))
                    .unwrap_or(true)
            {
                leaked.push("the cart's lines".into());
            }
            out.push(Probe {
                node: node.clone(),
                who,
                leaked,
                request,
                expected,
                status,
            });
        };
        for p in &anonymous {
            ask("anonymous", &anon, p, vec![401]).await;
        }
        // What anybody may read must still carry no customer data.
        ask("anonymous", &anon, "/api/v1/cluster/status", vec![200]).await;
        for p in &owned {
            // A cart nobody claimed reads as a missing one: 200 and empty.
            let expected = if p.starts_with("/api/v1/carts/") {
                vec![200, 403]
            } else {
                vec![403, 404]
            };
            ask("stranger", &strange, p, expected).await;
        }
        ask("stranger", &strange, "/api/v1/orders", vec![200]).await;
        ask(
            "stranger",
            &strange,
            "/api/v1/cluster/bucket?keyspace=carts&bucket=0",
            vec![403],
        )
        .await;
        let addr = c.nodes[i].http;
        for (who, token) in [("anonymous", None), ("stranger", Some(stranger.as_str()))] {
            let request = "GET /api/v1/events (Last-Event-ID: 0)".to_string();
            let (status, text) = replay(addr, token, Duration::from_millis(1_500)).await;
            out.push(Probe {
                node: node.clone(),
                who,
                leaked: leaks(&text, &request, &markers),
                request,
                // A stream for what this caller may see, or a refusal.
                expected: vec![200, 401],
                status,
            });
        }
    }
    out
}
