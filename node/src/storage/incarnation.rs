//! The incarnation ledger: which life of its store a node is in.
//!
//! A node's dots are numbered per actor, and the actor is (node id,
//! incarnation). If a node lost its store and came back as the same actor, it
//! would number new writes 1, 2, 3 … again, and peers that already hold the old
//! dots 1, 2, 3 would drop the new writes as duplicates — silent loss. So a
//! node that starts without a store takes the next incarnation from a small
//! ledger file kept beside the store (`data_dir/<id>/incarnation`), which
//! `concord init` creates with the node's certificate.
//!
//! The ledger itself can be lost with the node's directory. So `concord init`
//! starts every new ledger in a fresh *epoch* of 65,536 incarnations, and the
//! CA keeps the epochs it has handed out (`pki/incarnations`): a node whose
//! certificate and directory were deleted and made again by `init` starts
//! above every incarnation its earlier lives could have used. The first
//! epoch is 0, so a node's first actor is just its id. If the ledger is gone
//! and `init` was not run, the node cannot know its history and picks a random
//! incarnation above every epoch (2³¹ and up), where a collision is a
//! one-in-two-billion chance.

use std::fs;
use std::path::Path;

/// The ledger's file name inside the node's directory.
pub const LEDGER: &str = "incarnation";

/// Incarnations per epoch: how many store wipes one ledger can number.
pub const EPOCH: u32 = 1 << 16;

/// Creates the ledger of a node whose certificate was just made, starting
/// at `epoch` (next incarnation `epoch × 65,536`), unless one exists.
pub fn create_ledger(node_dir: &Path, epoch: u32) -> std::io::Result<()> {
    let p = node_dir.join(LEDGER);
    if p.exists() {
        return Ok(());
    }
    write_next(node_dir, epoch.saturating_mul(EPOCH))
}

fn write_next(node_dir: &Path, next: u32) -> std::io::Result<()> {
    fs::create_dir_all(node_dir)?;
    let tmp = node_dir.join(format!("{LEDGER}.tmp"));
    fs::write(&tmp, format!("next={next}\n"))?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, node_dir.join(LEDGER))?;
    fs::File::open(node_dir)?.sync_all()
}

/// Takes the incarnation for a new store and records that it is used.
/// Returns the incarnation and whether the ledger was found.
pub fn take_next(node_dir: &Path) -> std::io::Result<(u32, bool)> {
    let p = node_dir.join(LEDGER);
    let found = fs::read_to_string(&p).ok().and_then(|t| {
        t.trim()
            .strip_prefix("next=")
            .and_then(|n| n.parse::<u32>().ok())
    });
    let (inc, found) = match found {
        Some(n) => (n, true),
        None => ((1u32 << 31) | rand::random::<u32>(), false),
    };
    write_next(node_dir, inc.saturating_add(1))?;
    Ok((inc, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_advance_and_survive_without_the_store() {
        let dir = std::env::temp_dir().join(format!("concord-inc-{}", rand::random::<u64>()));
        create_ledger(&dir, 0).unwrap();
        assert_eq!(take_next(&dir).unwrap(), (0, true));
        assert_eq!(take_next(&dir).unwrap(), (1, true));
        create_ledger(&dir, 0).unwrap();
        assert_eq!(take_next(&dir).unwrap(), (2, true));
        fs::remove_file(dir.join(LEDGER)).unwrap();
        let (inc, found) = take_next(&dir).unwrap();
        assert!(!found && inc >= 1 << 31);
        fs::remove_file(dir.join(LEDGER)).unwrap();
        create_ledger(&dir, 3).unwrap();
        assert_eq!(take_next(&dir).unwrap(), (3 * EPOCH, true));
        fs::remove_dir_all(&dir).unwrap();
    }
}
