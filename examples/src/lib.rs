//! Runnable examples of Concord (see `examples/`):
//!
//! - `local_cluster`: three nodes in one process, on ports the OS picks;
//! - `load_catalog`: the sample catalog into a running cluster;
//! - `shopper`: search, add to a cart on one node, check out on another.
//!
//! Run one with `cargo run -p concord-examples --example <name>`.

use std::path::Path;

use concord_node::auth::{Claims, Role};
use concord_node::config::ClusterConfig;

/// A token for `role`/`sub`, signed with the secret of the cluster whose
/// configuration is at `config` (after `concord init` or `concord up`).
pub fn token(config: &Path, role: Role, sub: &str) -> anyhow::Result<String> {
    let cfg = ClusterConfig::load(config)?;
    let secret =
        concord_node::pki::load_token_key(&concord_node::pki::PkiPaths::new(cfg.pki_dir()))?;
    let now = concord_node::clock::now_secs();
    Ok(secret.issue(&Claims {
        sub: sub.into(),
        role,
        exp: now + 3600,
        iat: now,
        sid: None,
    }))
}
