//! One keyspace of the replicated state (products, carts, stock or orders):
//! entries by key, kept so that every change keeps the keyspace's digest tree
//! current.
//!
//! Entries live in a hash map (one or two cache misses per lookup, where a
//! B-tree of a million keys costs several) keyed by a seeded hash, so clients
//! who choose their own ids (cart ids) cannot aim for collisions. Beside it, a
//! per-bucket ordered index names the keys of each digest bucket: it serves
//! repair (the keys of a differing range) and deterministic iteration — in
//! (bucket, key) order, the same on every node. The index changes only when
//! a key appears or disappears, never on an update.
//!
//! All mutation goes through [`Keyspace::modify`], which re-hashes the one
//! entry it touched and updates its bucket: the digest costs O(1) per change
//! plus O(log n) lazily when it is read, never a full rehash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};

use serde::Serialize;

use crate::digest::{DigestTree, Hash128, bucket_of, leaf_hash};

/// What a keyspace needs of its entries.
pub trait EntryValue: Serialize + Clone + Default {
    /// Whether the entry holds nothing and should not be stored.
    fn is_bottom(&self) -> bool;
}

/// What a keyspace needs of its keys: a canonical byte form.
pub trait KeyBytes: Ord + Clone + Hash {
    /// Appends the key's canonical bytes.
    fn write_key(&self, out: &mut Vec<u8>);
}

/// The bucket of a key in the digest tree.
pub fn key_bucket<K: KeyBytes>(key: &K) -> u16 {
    let mut b = Vec::with_capacity(32);
    key.write_key(&mut b);
    bucket_of(&b)
}

/// A seeded 64-bit hash (SplitMix64 rounds over 8-byte words, starting from
/// the seed): fast on 16-byte ids, and without the seed nobody can construct
/// keys that collide.
#[derive(Clone, Copy, Debug)]
pub struct SeededState(pub u64);

/// The hasher [`SeededState`] builds.
pub struct SeededHasher {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SeededHasher {
    fn word(&mut self, w: u64) {
        self.h = mix(self.h ^ w);
    }
}

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        // Top up a partial word first, then whole words, then keep the tail.
        while self.tail_len > 0 && !rest.is_empty() {
            self.tail[self.tail_len] = rest[0];
            self.tail_len += 1;
            rest = &rest[1..];
            if self.tail_len == 8 {
                self.word(u64::from_le_bytes(self.tail));
                self.tail_len = 0;
            }
        }
        let mut chunks = rest.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.tail[self.tail_len] = b;
            self.tail_len += 1;
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut t = [0u8; 8];
        t[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        mix(self.h ^ u64::from_le_bytes(t) ^ ((self.tail_len as u64) << 56))
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            h: self.0,
            tail: [0; 8],
            tail_len: 0,
        }
    }
}

struct Slot<E> {
    entry: E,
    leaf: Hash128,
    bucket: u16,
}

/// A keyspace: entries by key, a bucket index for repair and ordered
/// iteration, and the digest tree.
pub struct Keyspace<K, E> {
    tag: u8,
    map: HashMap<K, Slot<E>, SeededState>,
    by_bucket: BTreeMap<u16, BTreeSet<K>>,
    tree: DigestTree,
    key_buf: Vec<u8>,
    entry_buf: Vec<u8>,
}

impl<K: KeyBytes, E: EntryValue> Keyspace<K, E> {
    /// An empty keyspace whose leaf hashes are tagged with `tag` and whose
    /// map is keyed by `seed`.
    pub fn new(tag: u8, seed: u64) -> Self {
        Self {
            tag,
            map: HashMap::with_hasher(SeededState(seed)),
            by_bucket: BTreeMap::new(),
            tree: DigestTree::new(),
            key_buf: Vec::with_capacity(64),
            entry_buf: Vec::with_capacity(256),
        }
    }

    /// The entry under `key`.
    pub fn get(&self, key: &K) -> Option<&E> {
        self.map.get(key).map(|s| &s.entry)
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries, in (bucket, key) order — the same on every node.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &E)> {
        self.iter_after(None)
    }

    /// Entries after `after` in (bucket, key) order (all when `None`): the
    /// cursor of paged listings.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&K>,
    ) -> impl Iterator<Item = (&'a K, &'a E)> + 'a {
        let start = after.map(|k| (key_bucket(k), k.clone()));
        let first = start.as_ref().map(|(b, _)| *b).unwrap_or(0);
        self.by_bucket
            .range(first..)
            .flat_map(move |(b, keys)| {
                let skip = start
                    .as_ref()
                    .filter(|(sb, _)| sb == b)
                    .map(|(_, k)| k.clone());
                keys.iter()
                    .filter(move |k| skip.as_ref().is_none_or(|s| *k > s))
            })
            .filter_map(move |k| self.map.get(k).map(|s| (k, &s.entry)))
    }

    /// The keys whose hash falls in `bucket`.
    pub fn keys_in_bucket(&self, bucket: u16) -> impl Iterator<Item = &K> {
        self.by_bucket.get(&bucket).into_iter().flatten()
    }

    /// The digest tree.
    pub fn tree(&self) -> &DigestTree {
        &self.tree
    }

    /// Runs `f` on the entry under `key` (a default one when absent), then
    /// stores it back — or drops it when it became bottom — and updates the
    /// digest. Returns `f`'s result and whether the stored entry changed.
    pub fn modify<R>(&mut self, key: &K, f: impl FnOnce(&mut E) -> R) -> (R, bool) {
        self.key_buf.clear();
        key.write_key(&mut self.key_buf);
        match self.map.get_mut(key) {
            Some(slot) => {
                let r = f(&mut slot.entry);
                if slot.entry.is_bottom() {
                    let (bucket, leaf) = (slot.bucket, slot.leaf);
                    self.tree.toggle(bucket, leaf);
                    self.map.remove(key);
                    if let Some(set) = self.by_bucket.get_mut(&bucket) {
                        set.remove(key);
                        if set.is_empty() {
                            self.by_bucket.remove(&bucket);
                        }
                    }
                    return (r, true);
                }
                let leaf = hash_entry(self.tag, &self.key_buf, &slot.entry, &mut self.entry_buf);
                if leaf == slot.leaf {
                    return (r, false);
                }
                let (bucket, old) = (slot.bucket, slot.leaf);
                slot.leaf = leaf;
                self.tree.toggle(bucket, old ^ leaf);
                (r, true)
            }
            None => {
                let mut entry = E::default();
                let r = f(&mut entry);
                if entry.is_bottom() {
                    return (r, false);
                }
                let bucket = bucket_of(&self.key_buf);
                let leaf = hash_entry(self.tag, &self.key_buf, &entry, &mut self.entry_buf);
                self.tree.toggle(bucket, leaf);
                self.by_bucket
                    .entry(bucket)
                    .or_default()
                    .insert(key.clone());
                self.map.insert(
                    key.clone(),
                    Slot {
                        entry,
                        leaf,
                        bucket,
                    },
                );
                (r, true)
            }
        }
    }
}

fn hash_entry<E: Serialize>(tag: u8, key: &[u8], entry: &E, buf: &mut Vec<u8>) -> Hash128 {
    buf.clear();
    let bytes = postcard::to_extend(entry, std::mem::take(buf)).unwrap_or_default();
    let h = leaf_hash(tag, key, &bytes);
    *buf = bytes;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct K(u32);
    impl KeyBytes for K {
        fn write_key(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
        }
    }
    impl EntryValue for u32 {
        fn is_bottom(&self) -> bool {
            *self == 0
        }
    }

    #[test]
    fn iteration_is_in_bucket_order_and_resumes_after_a_cursor() {
        let mut ks = Keyspace::<K, u32>::new(9, 1);
        for i in 1..=200 {
            ks.modify(&K(i), |e| *e = i);
        }
        let all: Vec<u32> = ks.iter().map(|(k, _)| k.0).collect();
        assert_eq!(all.len(), 200);
        let mut sorted = all.clone();
        sorted.sort_by_key(|k| (key_bucket(&K(*k)), *k));
        assert_eq!(all, sorted);
        let after: Vec<u32> = ks.iter_after(Some(&K(all[99]))).map(|(k, _)| k.0).collect();
        assert_eq!(after, all[100..]);
        // Bottom removes the key and its digest contribution.
        let root = ks.tree().root();
        ks.modify(&K(500), |e| *e = 5);
        assert_ne!(ks.tree().root(), root);
        ks.modify(&K(500), |e| *e = 0);
        assert_eq!(ks.tree().root(), root);
        assert_eq!(ks.len(), 200);
    }

    #[test]
    fn the_seeded_hash_depends_on_the_seed() {
        let h = |seed: u64, v: &[u8]| {
            let mut x = SeededState(seed).build_hasher();
            x.write(v);
            x.finish()
        };
        assert_ne!(h(1, b"0123456789abcdef"), h(2, b"0123456789abcdef"));
        assert_ne!(h(1, b"a"), h(1, b"a\0"));
    }
}
