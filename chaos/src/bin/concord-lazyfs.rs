//! `concord-lazyfs <backing-dir> <mountpoint>`: mounts the power-cut
//! filesystem of `concord_chaos::lazyfs` and serves it until killed. Killing
//! it (SIGKILL) is the power cut: whatever was written and never synced is
//! gone; the harness unmounts and mounts again over the same backing
//! directory.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(backing), Some(mountpoint), None) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: concord-lazyfs <backing-dir> <mountpoint>");
    };
    let (backing, mountpoint) = (PathBuf::from(backing), PathBuf::from(mountpoint));
    anyhow::ensure!(backing.is_dir(), "{} is not a directory", backing.display());
    concord_chaos::lazyfs::serve(&backing, &mountpoint)
        .map_err(|e| anyhow::anyhow!("mounting {}: {e}", mountpoint.display()))
}
