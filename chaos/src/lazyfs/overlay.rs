//! The written-but-unsynced contents of one file: what a power cut loses.
//!
//! A file's visible contents are its backing file's first `base_len` bytes,
//! overlaid with dirty 4 KiB pages, zero elsewhere, `size` bytes long. Writes
//! and truncations change only the overlay; [`Dirty::persist`] (on `fsync` or
//! `fdatasync`) writes it into the backing file and syncs that. Dropping the
//! overlay is the power cut: the backing file is what survives.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Page size of the overlay.
pub const PAGE: u64 = 4096;

/// Unsynced changes to one file.
#[derive(Debug)]
pub struct Dirty {
    /// Pages written since the last sync, by page number.
    pages: BTreeMap<u64, Box<[u8]>>,
    /// The file's visible length.
    size: u64,
    /// How much of the backing file still shows through (a truncation below
    /// it hides the rest).
    base_len: u64,
}

/// Reads `buf.len()` bytes at `offset` from `f`, zero-filling past its end.
fn read_base(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

impl Dirty {
    /// No changes yet over a backing file of `len` bytes.
    pub fn new(len: u64) -> Self {
        Self {
            pages: BTreeMap::new(),
            size: len,
            base_len: len,
        }
    }

    /// The file's visible length.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether nothing differs from a backing file of `backing_len` bytes.
    pub fn is_clean(&self, backing_len: u64) -> bool {
        self.pages.is_empty() && self.size == backing_len && self.base_len == backing_len
    }

    /// The visible bytes of `[offset, offset + len)`, clipped to the size.
    pub fn read(&self, base: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = (offset + len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let shown = self.base_len.min(end);
        if offset < shown {
            read_base(base, offset, &mut out[..(shown - offset) as usize])?;
        }
        for (&p, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = p * PAGE;
            let from = offset.max(start);
            let to = end.min(start + PAGE);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&page[(from - start) as usize..(to - start) as usize]);
        }
        Ok(out)
    }

    /// Writes `data` at `offset` into the overlay.
    pub fn write(&mut self, base: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        for p in offset / PAGE..=(end - 1) / PAGE {
            let start = p * PAGE;
            if !self.pages.contains_key(&p) {
                let current = self.read(base, start, PAGE)?;
                let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
                page[..current.len()].copy_from_slice(&current);
                self.pages.insert(p, page);
            }
            let page = self.pages.get_mut(&p).expect("just inserted");
            let from = offset.max(start);
            let to = end.min(start + PAGE);
            page[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the visible length (truncate or extend with zeros).
    pub fn truncate(&mut self, len: u64) {
        if len < self.size {
            self.pages.retain(|p, _| p * PAGE < len);
            if let Some(page) = self.pages.get_mut(&(len / PAGE)) {
                page[(len % PAGE) as usize..].fill(0);
            }
            self.base_len = self.base_len.min(len);
        }
        self.size = len;
    }

    /// Makes the overlay durable: the backing file takes the visible
    /// contents, then is synced. Afterwards the overlay is clean.
    pub fn persist(&mut self, backing: &File) -> io::Result<()> {
        backing.set_len(self.base_len)?;
        backing.set_len(self.size)?;
        for (&p, page) in &self.pages {
            let start = p * PAGE;
            if start >= self.size {
                continue;
            }
            let n = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        backing.sync_data()?;
        self.pages.clear();
        self.base_len = self.size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(contents: &[u8]) -> (std::path::PathBuf, File) {
        let p = std::env::temp_dir().join(format!("lazyfs-{}", rand::random::<u64>()));
        std::fs::write(&p, contents).expect("write");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open");
        (p, f)
    }

    /// A model: the visible file as one byte vector.
    fn apply(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), 0);
        }
        model[offset..offset + data.len()].copy_from_slice(data);
    }

    #[test]
    fn reads_see_writes_and_truncations_and_the_backing_file_only_after_persist() {
        let base: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (path, f) = temp(&base);
        let mut d = Dirty::new(base.len() as u64);
        let mut model = base.clone();
        let mut rng = 7u64;
        for step in 0..400 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (rng >> 33) % 14_000;
            let len = 1 + (rng >> 17) % 6_000;
            if step % 7 == 3 {
                let to = (rng >> 20) % 12_000;
                d.truncate(to);
                model.resize(to as usize, 0);
            } else {
                let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (step as u8)).collect();
                d.write(&f, off, &data).expect("write");
                apply(&mut model, off as usize, &data);
            }
            assert_eq!(d.size(), model.len() as u64);
            let all = d.read(&f, 0, model.len() as u64 + 100).expect("read");
            assert_eq!(all, model, "step {step}");
        }
        // Nothing reached the backing file yet: a power cut keeps `base`.
        assert_eq!(std::fs::read(&path).expect("read"), base);
        d.persist(&f).expect("persist");
        assert_eq!(std::fs::read(&path).expect("read"), model);
        assert!(d.is_clean(model.len() as u64));
        std::fs::remove_file(&path).expect("cleanup");
    }
}
