//! Disk faults for real node processes: a data directory on the power-cut
//! filesystem ([`crate::lazyfs`]), and syncs slowed or counted with
//! `strace` attached to a running node.
//!
//! *Power cut*: the node's data directory is a mount of `concord-lazyfs`
//! over a backing directory. Cutting the power kills the node and the
//! filesystem process (its unsynced data dies with it), unmounts, and mounts
//! again — so not even the kernel's caches can serve what was dropped.
//!
//! *Slow disk*: `strace -f -p <pid> -e inject=fsync,fdatasync,sync_file_range:delay_enter=…`
//! delays every sync of the node while attached, with no code in the node.
//! The same attachment without the delay counts the syncs (the durability
//! test reads its output).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Finds a binary built beside the running executable (`target/<profile>/`),
/// or at `$env`.
pub fn sibling_bin(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let c = dir.join(name);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "cannot find the {name} binary near {}: build it (cargo build -p concord-chaos --bins) or set {env}",
        exe.display()
    )
}

/// A data directory on the power-cut filesystem.
pub struct LazyMount {
    backing: PathBuf,
    mountpoint: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

fn unmount(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
}

impl LazyMount {
    /// Moves `dir` aside as the backing directory and mounts the lazy
    /// filesystem over it at `dir`'s place.
    pub fn over(dir: &Path) -> anyhow::Result<Self> {
        let bin = sibling_bin("concord-lazyfs", "CONCORD_LAZYFS_BIN")?;
        let backing = dir.with_extension("backing");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(dir, &backing)
            .with_context(|| format!("moving {} aside", dir.display()))?;
        std::fs::create_dir_all(dir)?;
        let mut m = Self {
            backing,
            mountpoint: dir.to_path_buf(),
            bin,
            child: None,
        };
        m.mount()?;
        Ok(m)
    }

    fn mount(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.backing.with_extension("lazyfs.log"))?;
        let child = Command::new(&self.bin)
            .arg(&self.backing)
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting concord-lazyfs")?;
        self.child = Some(child);
        let t = Instant::now();
        while !crate::lazyfs::is_mounted(&self.mountpoint) {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "concord-lazyfs exited ({status}) before mounting {} (is /dev/fuse there? are we root?)",
                    self.mountpoint.display()
                );
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("{} was not mounted within 10 s", self.mountpoint.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The power cut: everything written and never synced is gone. Stop the
    /// node on top first (it would otherwise see its disk vanish).
    pub fn cut(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        unmount(&self.mountpoint);
        self.mount()
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        unmount(&self.mountpoint);
    }
}

/// `strace` attached to a node process: its syncs delayed, or counted.
pub struct Strace {
    child: Child,
    out: PathBuf,
}

impl Strace {
    /// Delays every `fsync`, `fdatasync` and `sync_file_range` of process
    /// `pid` (all its threads) by `delay` while attached.
    pub fn slow_syncs(pid: u32, delay: Duration, out: &Path) -> anyhow::Result<Self> {
        let us = delay.as_micros();
        let inject = format!("inject=fsync,fdatasync,sync_file_range:delay_enter={us}");
        Self::attach(
            pid,
            &["-e", "trace=fsync,fdatasync,sync_file_range", "-e", &inject],
            out,
        )
    }

    /// Records every `fsync`, `fdatasync` and `sync_file_range` of `pid`.
    pub fn count_syncs(pid: u32, out: &Path) -> anyhow::Result<Self> {
        Self::attach(pid, &["-e", "trace=fsync,fdatasync,sync_file_range"], out)
    }

    fn attach(pid: u32, args: &[&str], out: &Path) -> anyhow::Result<Self> {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(out)
            .args(args)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting strace (install it: apt-get install strace)")?;
        let me = Self {
            child,
            out: out.to_path_buf(),
        };
        // Attached once strace has written its first line or has had a
        // moment: threads are attached before the output file is created.
        let t = Instant::now();
        while !out.exists() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(me)
    }

    /// Detaches (the process goes on at full speed) and returns the trace.
    pub fn stop(mut self) -> String {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// Counts the successful calls of `syscall` in an `strace -f` output (a
/// call interrupted by another thread's line appears as `… <unfinished …>`
/// and later `<… syscall resumed>) = 0`).
pub fn count_calls(trace: &str, syscall: &str) -> usize {
    let call = format!("{syscall}(");
    let resumed = format!("<... {syscall} resumed>");
    trace
        .lines()
        .filter(|l| {
            let l = l.trim_end();
            l.ends_with("= 0") && (l.contains(&call) || l.contains(&resumed))
        })
        .count()
}

/// Whether this process can mount the power-cut filesystem: root,
/// `/dev/fuse`, and the `concord-lazyfs` binary.
pub fn can_mount_lazyfs() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("no /dev/fuse".into());
    }
    sibling_bin("concord-lazyfs", "CONCORD_LAZYFS_BIN")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `strace` is installed.
pub fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
