//! RFC 9162 §2.1 Merkle tree hashing with SHA-256: inclusion proofs (§5, §18.2) and
//! consistency proofs (RFC 9162 §2.1.4, §18.2), over a slice of leaf hashes or an
//! append-only [`MerkleLog`].
//!
//! The proofs are hand-written rather than taken from `ct-merkle`: that crate hashes leaf
//! *values* itself (it cannot be driven from leaf hashes, which batch receipts, promises
//! and proof requests by leaf hash need), its verifiers check against a known root instead
//! of returning the root a proof computes (RFC 9942 receipts detach the root and the
//! verifier recomputes it), and its tree proves only against its current size, while a log
//! proves against the sizes of heads it signed earlier. It serves as an independent oracle
//! in the tests.

use sha2::{Digest, Sha256};

use crate::tensor_digest::Digest32;

mod builder;
mod consistency;
mod log;

pub use builder::TreeBuilder;
pub use consistency::{consistency_proof, roots_from_consistency};
pub use log::{LogFull, MerkleLog};

/// Largest tree a batch may cover; bounds proof length (log2 = 20 hashes) and memory.
pub const MAX_LEAVES: u64 = 1 << 20;
/// Largest transparency log (§18.9): 2^40 leaves, so no proof exceeds 40 hashes and every
/// index fits comfortably in `u64` arithmetic.
pub const MAX_TREE_SIZE: u64 = 1 << 40;
/// Most hashes in any proof a decoder accepts (§18.9), checked before allocating.
pub const MAX_PROOF_HASHES: usize = 64;

/// `SHA-256(0x00 || data)`: RFC 9162 leaf hash.
pub fn leaf_hash(data: &[u8]) -> Digest32 {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(data)
        .finalize()
        .into()
}

/// `SHA-256(0x01 || left || right)`: RFC 9162 interior node hash.
pub fn node_hash(left: &Digest32, right: &Digest32) -> Digest32 {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Largest power of two strictly smaller than `n` (n >= 2): RFC 9162 §2.1.1's `k`.
pub(crate) fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Digest32 {
    Sha256::digest([]).into()
}

/// MTH over already-hashed leaves. The empty tree hashes to SHA-256 of the empty string.
pub fn root(leaves: &[Digest32]) -> Digest32 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH(m, D[start..start + n]), with subtree hashes drawn from `sub`
/// (`sub(start, len)` = MTH of those `len >= 1` leaves). Shared by slices and [`MerkleLog`].
pub(crate) fn path_with(
    sub: &impl Fn(u64, u64) -> Digest32,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Digest32>,
) {
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_with(sub, m, start, k, out);
        out.push(sub(start + k, n - k));
    } else {
        path_with(sub, m - k, start + k, n - k, out);
        out.push(sub(start, k));
    }
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]): the inclusion proof of leaf `index`.
pub fn inclusion_proof(leaves: &[Digest32], index: usize) -> Option<Vec<Digest32>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let sub = |s: u64, l: u64| root(&leaves[s as usize..(s + l) as usize]);
    path_with(&sub, index as u64, 0, leaves.len() as u64, &mut path);
    Some(path)
}

/// Inclusion proofs of every leaf, computed bottom-up in O(n log n) hashing.
pub fn inclusion_proofs(leaves: &[Digest32]) -> Vec<Vec<Digest32>> {
    let tree = Tree::new(leaves);
    (0..leaves.len())
        .map(|i| {
            let mut path = Vec::new();
            tree.path_into(i, &mut path);
            path
        })
        .collect()
}

/// Every subtree root of one tree, each hashed once, kept so that any leaf's inclusion
/// proof is read out without hashing: a batch (§5.1) proves thousands of leaves at once.
#[derive(Clone, Debug)]
pub struct Tree {
    /// Subtree roots in pre-order (a node, its left subtree, its right subtree): a subtree
    /// of `n` leaves takes `2n - 1` places, so positions follow from sizes alone.
    nodes: Vec<Digest32>,
    leaves: usize,
}

impl Tree {
    /// The tree over `leaves` (already hashed).
    pub fn new(leaves: &[Digest32]) -> Self {
        let mut nodes = vec![[0; 32]; (2 * leaves.len()).saturating_sub(1)];
        if !leaves.is_empty() {
            fill_tree(leaves, &mut nodes);
        }
        Self {
            nodes,
            leaves: leaves.len(),
        }
    }

    /// MTH of the leaves (RFC 9162 §2.1.1), as [`root`] gives it.
    pub fn root(&self) -> Digest32 {
        self.nodes.first().copied().unwrap_or_else(empty_root)
    }

    /// Replaces `path` with PATH(index, D[n]) (RFC 9162 §2.1.3.1), as [`inclusion_proof`]
    /// gives it; false (and `path` empty) when `index` is out of range.
    pub fn path_into(&self, index: usize, path: &mut Vec<Digest32>) -> bool {
        path.clear();
        if index >= self.leaves {
            return false;
        }
        // Walk down from the root, noting each sibling; the proof lists them bottom-up.
        let (mut at, mut start, mut n) = (0, 0, self.leaves);
        while n > 1 {
            let k = split(n as u64) as usize;
            let (left, right) = (at + 1, at + 2 * k);
            if index < start + k {
                path.push(self.nodes[right]);
                (at, n) = (left, k);
            } else {
                path.push(self.nodes[left]);
                (at, start, n) = (right, start + k, n - k);
            }
        }
        path.reverse();
        true
    }
}

/// Writes the pre-order subtree roots of `leaves` (at least one) into `nodes`, which has
/// `2 * leaves.len() - 1` places, and returns the root.
fn fill_tree(leaves: &[Digest32], nodes: &mut [Digest32]) -> Digest32 {
    let root = match leaves.len() {
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            let (left, right) = nodes[1..].split_at_mut(2 * k - 1);
            node_hash(
                &fill_tree(&leaves[..k], left),
                &fill_tree(&leaves[k..], right),
            )
        }
    };
    nodes[0] = root;
    root
}

/// RFC 9162 §2.1.3.2: recomputes the root from a leaf hash and its inclusion proof.
/// Returns `None` when the proof has the wrong length for `(index, size)`.
pub fn root_from_inclusion(
    leaf: &Digest32,
    index: u64,
    size: u64,
    proof: &[Digest32],
) -> Option<Digest32> {
    if index >= size || size > MAX_TREE_SIZE || proof.len() > MAX_PROOF_HASHES {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_of_every_small_tree_proves() {
        for n in 1..=33usize {
            let leaves: Vec<Digest32> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let r = root(&leaves);
            assert_eq!(Tree::new(&leaves).root(), r);
            let mut path = vec![[7; 32]];
            assert!(!Tree::new(&leaves).path_into(n, &mut path) && path.is_empty());
            for i in 0..n {
                let proof = inclusion_proof(&leaves, i).unwrap();
                assert_eq!(inclusion_proofs(&leaves)[i], proof);
                let mut path = vec![[7; 32]];
                assert!(Tree::new(&leaves).path_into(i, &mut path));
                assert_eq!(path, proof);
                assert_eq!(
                    root_from_inclusion(&leaves[i], i as u64, n as u64, &proof),
                    Some(r)
                );
                // Wrong index, wrong size, wrong leaf and truncated proofs never give the root.
                if n > 1 {
                    let j = (i + 1) % n;
                    assert_ne!(
                        root_from_inclusion(&leaves[i], j as u64, n as u64, &proof),
                        Some(r)
                    );
                    assert_ne!(
                        root_from_inclusion(&leaves[j], i as u64, n as u64, &proof),
                        Some(r)
                    );
                    assert_ne!(
                        root_from_inclusion(&leaves[i], i as u64, n as u64, &proof[1..]),
                        Some(r)
                    );
                }
                assert_eq!(
                    root_from_inclusion(&leaves[i], n as u64, n as u64, &proof),
                    None
                );
            }
        }
    }

    #[test]
    fn rfc9162_shape() {
        // Three leaves: root = H(1 || H(1 || l0 || l1) || l2).
        let l: Vec<Digest32> = (0..3u8).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(Tree::new(&[]).root(), root(&[]));
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
