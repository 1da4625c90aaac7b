//! A real sync of the store's files behind every group commit.
//!
//! sled 0.34's `flush` writes its log with `pwrite` and then
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`: the pages reach the
//! device queue, but neither the device's write cache nor the file's size
//! and metadata are flushed — durable against `kill -9` (the page cache
//! survives), not against a power cut or a kernel crash. So after each sled
//! flush the syncing stage calls [`DiskSync::sync`], which `fdatasync`s:
//!
//! - every file that appeared under `blobs/` since the last round (sled
//!   writes values of more than ~128 KiB there, once, and never syncs them),
//!   then the `blobs` directory itself, so the new names survive too;
//! - then the `db` file, which holds sled's log: one `fdatasync` covers every
//!   write of the group, however many waiters it has.
//!
//! Blobs go first: a log record that names a blob must never be durable
//! before the blob it names. At open, the store's files and directories are
//! synced once, so a freshly created store is durable before its first
//! acknowledgement. A sync that fails is never retried (after a failed
//! `fsync` the page cache may have dropped the dirty pages, and a retry can
//! succeed without having written them); the caller stops the process.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The files of one sled store that a group commit must sync.
pub struct DiskSync {
    /// sled's `db` file: the log every write goes through.
    db: File,
    /// sled's directory of large values.
    blobs: PathBuf,
    /// Blob files already synced (still present at the last listing).
    synced_blobs: HashSet<OsString>,
}

/// `fsync` of a directory, so the names in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskSync {
    /// Opens the files of the sled store at `store` and syncs all of them
    /// once (the store may have just been created), with the directories
    /// that name them.
    pub fn open(store: &Path) -> io::Result<Self> {
        let db = File::open(store.join("db"))?;
        db.sync_all()?;
        let conf = store.join("conf");
        if conf.exists() {
            File::open(&conf)?.sync_all()?;
        }
        let blobs = store.join("blobs");
        let mut me = Self {
            db,
            blobs,
            synced_blobs: HashSet::new(),
        };
        me.sync_new_blobs()?;
        sync_dir(store)?;
        if let Some(parent) = store.parent() {
            sync_dir(parent)?;
        }
        Ok(me)
    }

    /// Syncs what the last sled flush wrote: new blobs, their directory,
    /// then the log file. Returns the number of sync calls made.
    pub fn sync(&mut self) -> io::Result<u32> {
        let blobs = self.sync_new_blobs()?;
        self.db.sync_data()?;
        Ok(blobs + 1)
    }

    /// Syncs the blob files not synced before, then the blobs directory if
    /// any was new; forgets the ones sled has deleted.
    fn sync_new_blobs(&mut self) -> io::Result<u32> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut present = HashSet::with_capacity(self.synced_blobs.len());
        let mut calls = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // Deleted by sled's blob collection between listing and
                    // opening: nothing left to make durable.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                calls += 1;
            }
            present.insert(name);
        }
        if calls > 0 {
            sync_dir(&self.blobs)?;
            calls += 1;
        }
        self.synced_blobs = present;
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_blobs_are_synced_once_and_deleted_ones_forgotten() {
        let dir = std::env::temp_dir().join(format!("concord-sync-{}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("blobs")).expect("dirs");
        std::fs::write(dir.join("db"), b"log").expect("db");
        let mut s = DiskSync::open(&dir).expect("open");
        assert_eq!(s.sync().expect("sync"), 1, "only the log file");
        std::fs::write(dir.join("blobs").join("17"), b"large value").expect("blob");
        std::fs::write(dir.join("blobs").join("18"), b"another").expect("blob");
        // Two blobs, their directory, the log.
        assert_eq!(s.sync().expect("sync"), 4);
        assert_eq!(s.sync().expect("sync"), 1, "blobs are synced once");
        std::fs::remove_file(dir.join("blobs").join("17")).expect("rm");
        assert_eq!(s.sync().expect("sync"), 1);
        assert_eq!(s.synced_blobs.len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
