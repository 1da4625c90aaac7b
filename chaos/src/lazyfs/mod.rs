//! A filesystem that forgets what was never synced: the power-cut nemesis
//! (the approach of Jepsen's LazyFS), as a FUSE passthrough over a backing
//! directory.
//!
//! File *data* — writes and truncations — stays in this process's memory
//! ([`overlay::Dirty`]) until the file is `fsync`ed or `fdatasync`ed; then it
//! is written into the backing file, which is synced. Metadata operations
//! (create, mkdir, unlink, rename, chmod) reach the backing directory at once,
//! as they would on a journaling filesystem that commits them before data
//! ("ordered" mode): after a cut a new file exists, but without the contents
//! nobody synced. Killing this process is the power cut: the overlays die
//! with it. The harness then unmounts, mounts again over the same backing
//! directory, and restarts the node on what was synced.
//!
//! Every file is opened with `direct_io` and every attribute and entry has a
//! zero TTL, so the kernel caches nothing that a cut should have taken away;
//! and the mount does not use the writeback cache, so `fsync` reaches us.

pub mod overlay;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use overlay::Dirty;

const TTL: Duration = Duration::ZERO;

/// The filesystem's state: inodes by path and the unsynced overlays.
struct Inner {
    backing: PathBuf,
    /// Inode → path relative to the backing root ("" is the root).
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next: u64,
    /// Unsynced contents by inode.
    dirty: HashMap<u64, Dirty>,
}

/// The lazy filesystem over a backing directory.
pub struct LazyFs {
    inner: Mutex<Inner>,
}

fn io_err(e: std::io::Error) -> Errno {
    Errno::from(e)
}

fn kind(m: &std::fs::Metadata) -> FileType {
    FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile)
}

impl Inner {
    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths
            .get(&u64::from(ino))
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn ino_of(&mut self, rel: &Path) -> u64 {
        if let Some(i) = self.inodes.get(rel) {
            return *i;
        }
        let i = self.next;
        self.next += 1;
        self.paths.insert(i, rel.to_path_buf());
        self.inodes.insert(rel.to_path_buf(), i);
        i
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(i) = self.inodes.remove(rel) {
            self.paths.remove(&i);
            self.dirty.remove(&i);
        }
    }

    fn attr(&self, ino: u64, rel: &Path) -> Result<FileAttr, Errno> {
        let m = std::fs::symlink_metadata(self.full(rel)).map_err(io_err)?;
        let size = self.dirty.get(&ino).map(Dirty::size).unwrap_or(m.len());
        let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t(m.atime()),
            mtime: t(m.mtime()),
            ctime: t(m.ctime()),
            crtime: t(m.ctime()),
            kind: kind(&m),
            perm: (m.permissions().mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entry(&mut self, parent: INodeNo, name: &OsStr) -> Result<(u64, FileAttr), Errno> {
        let rel = self.path(parent)?.join(name);
        std::fs::symlink_metadata(self.full(&rel)).map_err(io_err)?;
        let ino = self.ino_of(&rel);
        Ok((ino, self.attr(ino, &rel)?))
    }

    fn backing_file(&self, rel: &Path) -> Result<File, Errno> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.full(rel))
            .map_err(io_err)
    }

    /// The overlay of `ino`, created on first use.
    fn dirty_of(&mut self, ino: u64, base: &File) -> Result<&mut Dirty, Errno> {
        match self.dirty.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let len = base.metadata().map_err(io_err)?.len();
                Ok(e.insert(Dirty::new(len)))
            }
        }
    }
}

impl LazyFs {
    /// A lazy filesystem over `backing` (which must exist).
    pub fn new(backing: &Path) -> Self {
        let mut inner = Inner {
            backing: backing.to_path_buf(),
            paths: HashMap::new(),
            inodes: HashMap::new(),
            next: 2,
            dirty: HashMap::new(),
        };
        inner.paths.insert(1, PathBuf::new());
        inner.inodes.insert(PathBuf::new(), 1);
        Self {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self, ino: INodeNo) -> Result<(), Errno> {
        let mut g = self.lock();
        let rel = g.path(ino)?;
        if let Some(mut d) = g.dirty.remove(&u64::from(ino)) {
            let f = g.backing_file(&rel)?;
            d.persist(&f).map_err(io_err)?;
        }
        Ok(())
    }

    /// Unlinks or removes `name` in `parent` with `op` (passed through to
    /// the backing directory at once, like all metadata) and forgets it.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEmpty,
        op: fn(&Path) -> std::io::Result<()>,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(parent)?.join(name);
            op(&g.full(&rel)).map_err(io_err)?;
            g.forget_path(&rel);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lock().entry(parent, name) {
            Ok((_, a)) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let g = self.lock();
        match g.path(ino).and_then(|rel| g.attr(u64::from(ino), &rel)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(ino)?;
            if let Some(m) = mode {
                std::fs::set_permissions(g.full(&rel), std::fs::Permissions::from_mode(m))
                    .map_err(io_err)?;
            }
            if let Some(len) = size {
                let f = g.backing_file(&rel)?;
                g.dirty_of(u64::from(ino), &f)?.truncate(len);
            }
            g.attr(u64::from(ino), &rel)
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(parent)?.join(name);
            std::fs::create_dir(g.full(&rel)).map_err(io_err)?;
            let _ = std::fs::set_permissions(g.full(&rel), std::fs::Permissions::from_mode(mode));
            g.entry(parent, name)
        })();
        match result {
            Ok((_, a)) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, |p: &Path| std::fs::remove_file(p));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, |p: &Path| std::fs::remove_dir(p));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let from = g.path(parent)?.join(name);
            let to = g.path(newparent)?.join(newname);
            std::fs::rename(g.full(&from), g.full(&to)).map_err(io_err)?;
            g.forget_path(&to);
            // Move the inode of `from` and of everything under it.
            let moved: Vec<(PathBuf, u64)> = g
                .inodes
                .iter()
                .filter(|(p, _)| p.starts_with(&from))
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            for (p, i) in moved {
                let rest = p
                    .strip_prefix(&from)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let np = if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                };
                g.inodes.remove(&p);
                g.inodes.insert(np.clone(), i);
                g.paths.insert(i, np);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().path(ino) {
            Ok(_) => reply.opened(FileHandle(u64::from(ino)), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(parent)?.join(name);
            let mut o = OpenOptions::new();
            o.read(true).write(true).create(true);
            if flags & nix::libc::O_EXCL != 0 {
                o.create_new(true);
            }
            let f = o.open(g.full(&rel)).map_err(io_err)?;
            let _ = f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777));
            g.entry(parent, name)
        })();
        match result {
            Ok((ino, a)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(ino),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let g = self.lock();
        let result = (|| {
            let rel = g.path(ino)?;
            let f = File::open(g.full(&rel)).map_err(io_err)?;
            match g.dirty.get(&u64::from(ino)) {
                Some(d) => d.read(&f, offset, u64::from(size)),
                None => Dirty::new(f.metadata().map_err(io_err)?.len()).read(
                    &f,
                    offset,
                    u64::from(size),
                ),
            }
            .map_err(io_err)
        })();
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(ino)?;
            let f = g.backing_file(&rel)?;
            g.dirty_of(u64::from(ino), &f)?
                .write(&f, offset, data)
                .map_err(io_err)
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.sync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().path(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut g = self.lock();
        let result = (|| {
            let rel = g.path(ino)?;
            let mut names: Vec<(std::ffi::OsString, FileType)> = std::fs::read_dir(g.full(&rel))
                .map_err(io_err)?
                .filter_map(Result::ok)
                .map(|e| {
                    let k = e
                        .file_type()
                        .ok()
                        .and_then(FileType::from_std)
                        .unwrap_or(FileType::RegularFile);
                    (e.file_name(), k)
                })
                .collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            let mut all = vec![
                (
                    u64::from(ino),
                    FileType::Directory,
                    std::ffi::OsString::from("."),
                ),
                (1, FileType::Directory, std::ffi::OsString::from("..")),
            ];
            for (n, k) in names {
                let i = g.ino_of(&rel.join(&n));
                all.push((i, k, n));
            }
            Ok(all)
        })();
        match result {
            Ok(all) => {
                for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata reaches the backing directory at once.
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// Mounts a lazy filesystem over `backing` at `mountpoint` and serves it
/// until the process is killed (the power cut) or the mount goes away.
pub fn serve(backing: &Path, mountpoint: &Path) -> std::io::Result<()> {
    let mut cfg = fuser::Config::default();
    cfg.mount_options
        .push(fuser::MountOption::FSName("concord-lazyfs".into()));
    cfg.mount_options
        .push(fuser::MountOption::DefaultPermissions);
    fuser::mount(LazyFs::new(backing), mountpoint, &cfg)
}

/// Whether `path` is a mount point of a `concord-lazyfs` right now.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4).is_some_and(|p| Path::new(p) == canon) && l.contains("concord-lazyfs")
        })
    })
}
