//! An append-only Merkle log over leaf hashes (§18.2): roots, inclusion proofs and
//! consistency proofs at any size up to the current one, without rehashing the tree.
//!
//! Every complete subtree `[j·2^h, (j+1)·2^h)` is hashed once, when its last leaf arrives,
//! and kept (`levels[h][j]`): about two hashes of memory per leaf. Every subtree the
//! RFC 9162 recursion visits is either such a complete subtree or the right edge of one
//! tree size, so a root costs O(log n) hashes and a proof O(log² n).

use super::consistency::subproof_with;
use super::{MAX_TREE_SIZE, empty_root, node_hash, path_with, split};
use crate::tensor_digest::Digest32;

/// The log already holds [`MAX_TREE_SIZE`] leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Merkle log is full ({MAX_TREE_SIZE} leaves, §18.9)")]
pub struct LogFull;

/// An append-only RFC 9162 Merkle tree of leaf hashes (§18.2).
#[derive(Debug, Clone, Default)]
pub struct MerkleLog {
    /// `levels[0]` are the leaf hashes; `levels[h][j]` is the root of the complete subtree
    /// of the `2^h` leaves starting at `j·2^h`.
    levels: Vec<Vec<Digest32>>,
}

impl MerkleLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log holding `leaves`, in order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Digest32>) -> Result<Self, LogFull> {
        let mut log = Self::new();
        for leaf in leaves {
            log.push(leaf)?;
        }
        Ok(log)
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the log has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<&Digest32> {
        self.levels.first()?.get(usize::try_from(index).ok()?)
    }

    /// The index of the first leaf with this hash, if any (a linear scan: a node keeps its
    /// own index by hash when it answers many requests).
    pub fn find(&self, leaf: &Digest32) -> Option<u64> {
        let pos = self.levels.first()?.iter().position(|l| l == leaf)?;
        Some(pos as u64)
    }

    /// Appends a leaf hash and returns its index; completes every subtree it closes.
    pub fn push(&mut self, leaf: Digest32) -> Result<u64, LogFull> {
        let index = self.len();
        if index >= MAX_TREE_SIZE {
            return Err(LogFull);
        }
        let mut node = leaf;
        let mut h = 0;
        loop {
            if self.levels.len() == h {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[h];
            level.push(node);
            if level.len() % 2 == 1 {
                break;
            }
            // The pair just completed a subtree one level up.
            let n = level.len();
            node = node_hash(&level[n - 2], &level[n - 1]);
            h += 1;
        }
        Ok(index)
    }

    /// MTH of the `len >= 1` leaves starting at `start`, where the range is one the RFC
    /// 9162 recursion visits inside the log (`start` a multiple of the largest power of two
    /// not above `len`, and `start + len <= self.len()`).
    fn subtree(&self, start: u64, len: u64) -> Digest32 {
        if len.is_power_of_two() {
            let h = len.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split(len);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, len - k))
    }

    /// MTH of the first `size` leaves; `None` when `size > self.len()`.
    pub fn root(&self, size: u64) -> Option<Digest32> {
        match size {
            0 => Some(empty_root()),
            s if s > self.len() => None,
            s => Some(self.subtree(0, s)),
        }
    }

    /// PATH(index, D[size]): the inclusion proof of leaf `index` in the tree of the first
    /// `size` leaves. `None` unless `index < size <= self.len()`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Digest32>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut out = Vec::new();
        path_with(&|s, l| self.subtree(s, l), index, 0, size, &mut out);
        Some(out)
    }

    /// PROOF(old_size, D[new_size]): the consistency proof between two sizes. `None`
    /// unless `1 <= old_size <= new_size <= self.len()`; empty when the sizes are equal.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Option<Vec<Digest32>> {
        if old_size == 0 || old_size > new_size || new_size > self.len() {
            return None;
        }
        let mut out = Vec::new();
        if old_size < new_size {
            subproof_with(
                &|s, l| self.subtree(s, l),
                old_size,
                0,
                new_size,
                true,
                &mut out,
            );
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{consistency_proof, inclusion_proof, leaf_hash, root};
    use super::*;

    #[test]
    fn agrees_with_the_slice_functions_at_every_size() {
        let leaves: Vec<Digest32> = (0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let log = MerkleLog::from_leaves(leaves.iter().copied()).unwrap();
        assert_eq!(log.len(), 70);
        for n in 0..=70u64 {
            let prefix = &leaves[..n as usize];
            assert_eq!(log.root(n), Some(root(prefix)), "n={n}");
            for i in 0..n {
                assert_eq!(
                    log.inclusion_proof(i, n),
                    inclusion_proof(prefix, i as usize)
                );
            }
            for m in 1..=n {
                assert_eq!(log.consistency_proof(m, n), consistency_proof(prefix, m));
            }
        }
        assert_eq!(log.root(71), None);
        assert_eq!(log.inclusion_proof(70, 70), None);
        assert_eq!(log.consistency_proof(0, 3), None);
        assert_eq!(log.consistency_proof(4, 3), None);
        assert_eq!(log.find(&leaves[33]), Some(33));
        assert_eq!(log.leaf(69), Some(&leaves[69]));
        assert_eq!(log.leaf(70), None);
    }

    #[test]
    fn pushing_keeps_earlier_roots() {
        let mut log = MerkleLog::new();
        assert_eq!(log.root(0), Some(root(&[])));
        let mut roots = Vec::new();
        for i in 0..20u8 {
            assert_eq!(log.push(leaf_hash(&[i])), Ok(u64::from(i)));
            roots.push(log.root(log.len()).unwrap());
        }
        for (i, r) in roots.iter().enumerate() {
            assert_eq!(log.root(i as u64 + 1).as_ref(), Some(r));
        }
    }
}
