//! Starving the HTTP server, tried on a real node: request heads that never
//! end, idle keep-alive connections, more connections than the node takes,
//! and one address holding every slot it can get.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use concord_tests::InProcessNode;
use tokio::net::{TcpSocket, TcpStream};

use crate::security::{raw, status_of};

/// A connection to `addr` from the loopback address `from` (any 127.x.y.z
/// reaches a node listening on 127.0.0.1), so a test can play a second host.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(addr).await
}

/// Whether the server closes `s` within `wait` without answering anything.
async fn closed_at_once(mut s: TcpStream, wait: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(wait, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_closed() {
    let n = InProcessNode::start(
        "[http]\nrate_limit_per_sec = 0\nheader_read_timeout_ms = 500\nmax_connections = 4\n",
    )
    .await
    .expect("node");
    // Slowloris: a request head that never ends is cut off.
    let t = Instant::now();
    let a = raw(
        n.addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "held for {:?}: {a}",
        t.elapsed()
    );
    // An idle keep-alive connection is closed too.
    let t = Instant::now();
    let a = raw(
        n.addr,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&a), 200);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "idle kept {:?}",
        t.elapsed()
    );
    // Four idle connections use every slot: a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(n.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = raw(
        n.addr,
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(400),
    )
    .await;
    assert!(a.is_empty(), "a fifth connection was served: {a}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = raw(
        n.addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&a), 200, "served again once slots free: {a}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let n = InProcessNode::start(
        "[http]\nrate_limit_per_sec = 0\nheader_read_timeout_ms = 10000\nmax_connections_per_address = 3\n",
    )
    .await
    .expect("node");
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    // The attacker holds three slowloris connections: its share.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(attacker, n.addr).await.expect("connect");
        use tokio::io::AsyncWriteExt;
        s.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fourth from the same address is closed at once, unanswered ...
    let fourth = connect_from(attacker, n.addr).await.expect("connect");
    assert!(
        closed_at_once(fourth, Duration::from_secs(2)).await,
        "a fourth connection from one address was served"
    );
    // ... while every other address is served as before.
    for _ in 0..5 {
        let a = raw(
            n.addr,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(status_of(&a), 200, "another address was refused: {a}");
    }
    let metrics = raw(
        n.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        metrics.contains("concord_http_connections_refused_total{cap=\"address\"} 1"),
        "the refusal is counted by cap: {}",
        metrics
            .lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Its share comes back once its connections end.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = connect_from(attacker, n.addr).await.expect("connect");
    assert!(
        !closed_at_once(s, Duration::from_millis(500)).await,
        "the address got no slot back"
    );
    n.stop().await;
}
