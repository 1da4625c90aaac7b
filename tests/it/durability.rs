//! Acknowledged means on stable storage, checked where the guarantee is
//! made: at the syscalls (an `fdatasync` behind every sequential
//! acknowledgement, counted with `strace`), against `kill -9` in the middle
//! of concurrent writes, and against a power cut that throws away whatever
//! was written and never synced (the node's data directory on the power-cut
//! filesystem).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use concord_chaos::disks::{self, Strace};
use concord_chaos::procs::{ProcessCluster, Spec};
use concord_tests::{Acked, CLUSTER_LOCK, cart_writers, create, missing_adds};
use serde_json::json;

/// Writes as fast as 32 clients can, stops the node with `fault` in the
/// middle, restarts it, and returns (acknowledged, missing after restart).
async fn write_then(
    c: &mut ProcessCluster,
    fault: impl FnOnce(&mut ProcessCluster) -> anyhow::Result<()>,
) -> (usize, Vec<String>) {
    let admin = c.client(0);
    let pid = create(&admin, "W-1", 0).await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = cart_writers(&admin, &pid, 32, &acked, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fault(c).expect("the fault applies");
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    c.restart(0).await.expect("restarts");
    (acked.len(), missing_adds(&c.client(0), &acked).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let (acked, missing) = write_then(&mut c, |c| c.kill9(0)).await;
    assert!(
        acked > 100,
        "only {acked} writes acknowledged before the kill"
    );
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// sled's own flush only calls `sync_file_range`, which neither flushes the
/// disk's cache nor the file's size: every acknowledgement must be behind a
/// real `fdatasync` (or `fsync`) of the store. 100 sequential writes — each
/// waits for its own group commit — need at least 100 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sequential_acknowledgement_is_behind_an_fdatasync() {
    assert!(
        disks::have_strace(),
        "this test counts syscalls with strace: apt-get install strace"
    );
    let _g = CLUSTER_LOCK.lock().await;
    let c = ProcessCluster::start(Spec {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let admin = c.client(0);
    let pid = create(&admin, "S-1", 0).await;
    let pid_os = c.nodes[0].pid().expect("running");
    let trace = Strace::count_syncs(pid_os, &c.dir().join("syncs.txt")).expect("strace attaches");
    let writes = 100;
    for _ in 0..writes {
        let cart = uuid::Uuid::new_v4();
        let a = admin
            .post(
                &format!("/api/v1/carts/{cart}/items"),
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .expect("answers");
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
    let text = trace.stop();
    let syncs = disks::count_calls(&text, "fdatasync") + disks::count_calls(&text, "fsync");
    let ranges = disks::count_calls(&text, "sync_file_range");
    assert!(
        syncs >= writes,
        "{writes} sequential acknowledged writes, but only {syncs} fdatasync/fsync calls ({ranges} sync_file_range)"
    );
    // With an Idempotency-Key, the write and its record share one group
    // commit: as many syncs as without a key, not twice as many.
    let trace =
        Strace::count_syncs(pid_os, &c.dir().join("syncs-keyed.txt")).expect("strace attaches");
    for k in 0..writes {
        let cart = uuid::Uuid::new_v4();
        let a = admin
            .clone()
            .with_header("Idempotency-Key", format!("sync-{k}"))
            .post(
                &format!("/api/v1/carts/{cart}/items"),
                &json!({"productId": pid, "quantity": 1}),
            )
            .await
            .expect("answers");
        assert_eq!(a.status.as_u16(), 200, "{}", a.text());
    }
    let text = trace.stop();
    let keyed = disks::count_calls(&text, "fdatasync") + disks::count_calls(&text, "fsync");
    assert!(
        keyed >= writes && keyed * 4 <= syncs * 5 + 20,
        "{writes} keyed writes took {keyed} syncs, against {syncs} without keys"
    );
}

/// The node's data directory on the power-cut filesystem: `kill -9` and
/// every write it never synced is gone, as after a power failure. Nothing
/// it acknowledged may be among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_under_write_load_loses_no_acknowledged_write() {
    if let Err(why) = disks::can_mount_lazyfs() {
        panic!("this test mounts the power-cut filesystem and cannot here: {why}");
    }
    let _g = CLUSTER_LOCK.lock().await;
    let mut c = ProcessCluster::start(Spec {
        nodes: 1,
        lazyfs: vec![0],
        ..Default::default()
    })
    .await
    .expect("cluster starts on the power-cut filesystem");
    let (acked, missing) = write_then(&mut c, |c| c.power_cut(0)).await;
    assert!(
        acked > 50,
        "only {acked} writes acknowledged before the cut"
    );
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged writes lost to the power cut: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
