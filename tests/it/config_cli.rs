//! The binary refuses a bad `cluster.toml` with a message naming the field,
//! and refuses a store it cannot open, without panicking.

use std::process::Command;

fn run(toml: &str, args: &[&str]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!(
        "concord-cfg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cluster.toml");
    std::fs::write(&path, toml).unwrap();
    let bin = concord_chaos::procs::concord_bin().unwrap();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "[cluster]\nname = \"c\"\ndata_dir = \"data\"\nembedding_dim = 16\n\n[[node]]\nid = \"n1\"\nhttp = \"127.0.0.1:7901\"\ngossip = \"127.0.0.1:7911\"\n";

#[test]
fn bad_configs_stop_start_up_naming_the_field() {
    let cases = [
        (
            BASE.replace("embedding_dim = 16", "embedding_dim = 16\nshards = 4"),
            "shards",
        ),
        (
            format!(
                "{BASE}\n[[node]]\nid = \"n1\"\nhttp = \"127.0.0.1:7902\"\ngossip = \"127.0.0.1:7912\"\n"
            ),
            "node[1].id",
        ),
        (
            BASE.replace("127.0.0.1:7911", "localhost"),
            "node[0].gossip",
        ),
        (BASE.replace("name = \"c\"\n", ""), "name"),
        (
            BASE.replace("embedding_dim = 16", "embedding_dim = \"16\""),
            "embedding_dim",
        ),
        (
            format!("{BASE}\n[payments]\nprovider = \"paypal\"\n"),
            "payments.provider",
        ),
        (
            format!("{BASE}\n[payments]\ncapture = \"later\"\n"),
            "payments.capture",
        ),
        (
            format!("{BASE}\n[payments]\ncall_timeout_ms = 5\n"),
            "payments.call_timeout_ms",
        ),
        (
            format!("{BASE}\n[payments]\nwebhook_secret_file = \"no-such-file\"\n"),
            "payments.webhook_secret_file",
        ),
        (format!("{BASE}\n[payments]\ncard = \"4242\"\n"), "card"),
        (
            format!("{BASE}\n[payments]\nprovider = \"stripe\"\n"),
            "payments.secret_key_file",
        ),
        (
            format!("{BASE}\n[payments]\napi_base = \"ftp://stripe\"\n"),
            "payments.api_base",
        ),
        (
            format!("{BASE}\n[notifications]\nsmtp_relay = \"no-port\"\n"),
            "notifications.smtp_relay",
        ),
        (
            format!(
                "{BASE}\n[notifications]\nsmtp_relay = \"127.0.0.1:25\"\nfrom = \"not a mailbox\"\n"
            ),
            "notifications.from",
        ),
    ];
    for (toml, field) in cases {
        for args in [&["node", "--id", "n1"][..], &["init"][..]] {
            let (code, err) = run(&toml, args);
            assert_eq!(code, 1, "{args:?} should fail on {field}: {err}");
            assert!(
                err.contains(field),
                "{args:?}: {field:?} not named in: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn a_store_that_cannot_be_opened_stops_the_node_cleanly() {
    let dir = std::env::temp_dir().join(format!(
        "concord-store-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cluster.toml");
    let toml = BASE.replace("7901", "7921").replace("7911", "7931");
    std::fs::write(&path, &toml).unwrap();
    let bin = concord_chaos::procs::concord_bin().unwrap();
    assert!(
        Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    // A file where the store's directory should be.
    std::fs::write(dir.join("data").join("n1").join("store"), b"not a database").unwrap();
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&path)
        .args(["node", "--id", "n1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("store"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
