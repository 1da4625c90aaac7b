//! The cluster link and the trust material under attack, with real
//! processes: a peer holding a valid certificate that sends hostile frames
//! and floods streams is refused and bounded; a revoked certificate fails
//! the handshake; keys and secrets others may read stop the node; a rotated
//! secret keeps old tokens; the API can be served over HTTPS.

use std::time::{Duration, Instant};

use concord_chaos::procs::{ProcessCluster, Spec, concord_bin};
use concord_node::pki::PkiPaths;
use concord_node::replication::peer::{self, Identity};
use concord_node::replication::tls;
use concord_tests::CLUSTER_LOCK;
use crdt_core::{Actor, NodeId};

fn pki(c: &ProcessCluster) -> PkiPaths {
    PkiPaths::new(c.dir().join("data").join("pki"))
}

fn init(c: &ProcessCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(concord_bin().expect("binary"))
        .arg("--config")
        .arg(c.config_path())
        .arg("init")
        .args(args)
        .output()
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A peer with n2's own certificate (n2 is stopped) connects to n1 and
/// misbehaves: frames past the limit, garbage, a flood of streams each
/// announcing a large frame and sending half of it. n1 refuses what is
/// malformed, lets only a few streams be open at once, keeps its memory
/// bounded, and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_refused_and_bounded() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 2,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.stop(1).await.expect("n2 stops");
    let n2 = NodeId::new("n2").expect("id");
    let material = concord_node::pki::load_node_tls(&pki(&c), &n2).expect("n2's certificate");
    let (_, client) = tls::quinn_configs(&material).expect("configs");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(client);
    let me = Identity {
        cluster: "test".into(),
        node: n2,
        actor: Actor::first(n2),
    };
    let n1 = NodeId::new("n1").expect("id");
    let (conn, _) = peer::dial(&ep, n1, c.nodes[0].gossip, &me)
        .await
        .expect("the hello passes: the certificate is genuine");
    let pid = c.nodes[0].pid().expect("running");
    let before = rss_kib(pid);

    // A frame announced past the limit, then plain garbage.
    for bytes in [
        u32::MAX.to_le_bytes().to_vec(),
        b"\x05\x00\x00\x00hello".to_vec(),
    ] {
        let mut s = conn.open_uni().await.expect("stream");
        let _ = s.write_all(&bytes).await;
        let _ = s.finish();
    }
    // A flood: streams each announcing 8 MiB − 1 and sending 4 MiB.
    let chunk = vec![0xAB; 4 << 20];
    let mut open = 0;
    let mut streams = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) && open < 1_000 {
        let s = tokio::time::timeout(Duration::from_millis(300), conn.open_uni()).await;
        let Ok(Ok(mut s)) = s else { break };
        open += 1;
        let chunk = chunk.clone();
        streams.push(tokio::spawn(async move {
            let _ = s.write_all(&((8u32 << 20) - 1).to_le_bytes()).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), s.write_all(&chunk)).await;
            s
        }));
    }
    assert!(open <= 64, "a peer could open {open} streams at once");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_kib(pid);
    assert!(
        during.saturating_sub(before) < 512 * 1024,
        "the node's memory grew from {before} KiB to {during} KiB"
    );
    // Still serving, and it counted the refusals.
    let m = c
        .anonymous(0)
        .get("/metrics")
        .await
        .expect("metrics")
        .text();
    assert!(
        metric(&m, "concord_peer_refused_total{reason=\"malformed_frame\"}") >= 1.0,
        "no malformed frame counted"
    );
    let h = c.anonymous(0).get("/health").await.expect("health");
    assert!(h.status.is_success());
    drop(streams);
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    // The real n2 comes back and the link works.
    c.restart(1).await.expect("n2 restarts");
    c.wait_connected(Duration::from_secs(15))
        .await
        .expect("n1 and n2 connect again");
}

/// `concord init --revoke n2`: n2's old certificate is on the CRL; a node
/// started with it is refused at the handshake, with its new one it joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_fails_the_handshake() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 2,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let p = pki(&c);
    let n2 = NodeId::new("n2").expect("id");
    let old = (
        std::fs::read(p.node_cert(&n2)).expect("cert"),
        std::fs::read(p.node_key(&n2)).expect("key"),
    );
    c.stop(0).await.expect("stop");
    c.stop(1).await.expect("stop");
    let out = init(&c, &["--revoke", "n2"]);
    assert!(out.contains("revoked the certificate of n2"), "{out}");
    assert!(p.crl().exists());
    let new = (
        std::fs::read(p.node_cert(&n2)).expect("cert"),
        std::fs::read(p.node_key(&n2)).expect("key"),
    );
    assert_ne!(new.0, old.0, "n2 has a new certificate");
    // n2 comes back with its old (revoked) certificate.
    std::fs::write(p.node_cert(&n2), &old.0).expect("write");
    std::fs::write(p.node_key(&n2), &old.1).expect("write");
    c.restart(0).await.expect("n1 starts with the CRL");
    c.restart(1).await.expect("n2 starts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = c.statuses().await;
    let alive = |i: usize| st[i].as_ref().expect("status")["peers"][0]["alive"] == true;
    assert!(
        !alive(0) && !alive(1),
        "a revoked certificate connected: {st:?}"
    );
    let m = c
        .anonymous(0)
        .get("/metrics")
        .await
        .expect("metrics")
        .text();
    assert!(
        metric(&m, "concord_peer_refused_total") >= 1.0,
        "no refusal counted"
    );
    // With its new certificate, n2 joins.
    c.stop(1).await.expect("stop");
    std::fs::write(p.node_cert(&n2), &new.0).expect("write");
    std::fs::write(p.node_key(&n2), &new.1).expect("write");
    c.restart(1).await.expect("n2 restarts");
    c.wait_connected(Duration::from_secs(15))
        .await
        .expect("n2 with a valid certificate connects");
}

/// A key or secret others may read stops the node with a clear message;
/// `concord init` makes them private; certificates are valid for a year.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_key_permissions_stop_the_node_and_init_fixes_them() {
    use std::os::unix::fs::PermissionsExt;
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let p = pki(&c);
    let n1 = NodeId::new("n1").expect("id");
    c.stop(0).await.expect("stop");
    for f in [p.secret(), p.node_key(&n1)] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = c
            .restart(0)
            .await
            .expect_err("a readable key must stop the node");
        assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
        let out = init(&c, &[]);
        assert!(out.contains("made private"), "{out}");
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
    c.restart(0).await.expect("starts again");
    let cert = std::fs::read(p.node_cert(&n1)).expect("cert");
    let days = concord_node::pki::revocation::days_left(&cert).expect("a validity");
    assert!((360..=366).contains(&days), "valid for {days} days");
}

/// `concord init --rotate-secret`: tokens signed before keep working until
/// they expire; new tokens are signed with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_old_tokens_valid() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let before = c.admin_token();
    c.stop(0).await.expect("stop");
    let out = init(&c, &["--rotate-secret"]);
    assert!(out.contains("new token key"), "{out}");
    c.restart(0).await.expect("restarts");
    let old = c.anonymous(0).with_token(before);
    let a = old.get("/api/v1/cluster/nodes").await.expect("answers");
    assert!(a.status.is_success(), "an old token: {}", a.text());
    let key = concord_node::pki::load_token_key(&pki(&c)).expect("keys");
    let fresh = key.internal_admin("test");
    assert!(fresh.split('.').next().is_some_and(|h| !h.is_empty()));
    let a = c
        .anonymous(0)
        .with_token(fresh)
        .get("/api/v1/cluster/nodes")
        .await
        .expect("answers");
    assert!(a.status.is_success(), "a new token: {}", a.text());
}

/// `[http] tls_cert_file` / `tls_key_file`: the API speaks HTTPS (here with
/// the node's own certificate), and plain HTTP no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_can_be_served_over_https() {
    let _g = CLUSTER_LOCK.lock().await;
    // Started by hand: the harness polls /ready over plain HTTP.
    let dir = std::env::temp_dir().join(format!("concord-https-{}", rand_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let gossip = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    std::fs::write(
        dir.join("cluster.toml"),
        format!(
            "[cluster]\nname = \"tls\"\ndata_dir = \"data\"\nembedding_dim = 32\n\n[[node]]\nid = \"n1\"\nhttp = \"{http}\"\ngossip = \"{gossip}\"\n\n[http]\ntls_cert_file = \"data/pki/n1.pem\"\ntls_key_file = \"data/pki/n1.key\"\n"
        ),
    )
    .expect("config");
    let bin = concord_bin().expect("binary");
    let cfg = dir.join("cluster.toml");
    let ok = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .arg("init")
        .output()
        .expect("init");
    assert!(ok.status.success());
    let mut node = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .args(["node", "--id", "n1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node");
    let curl = |scheme: &str| {
        std::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
            ])
            .arg(format!("{scheme}://{http}/health"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let t = Instant::now();
    while curl("https") != "200" {
        assert!(t.elapsed() < Duration::from_secs(30), "no HTTPS answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(curl("http"), "200", "plain HTTP answered on the HTTPS port");
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
