//! RFC 9162 §2.1.4 consistency proofs: generation (§2.1.4.1) and verification (§2.1.4.2).

use super::{MAX_PROOF_HASHES, MAX_TREE_SIZE, node_hash, root, split};
use crate::tensor_digest::Digest32;

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[start..start + n], b), with subtree hashes from `sub`.
pub(crate) fn subproof_with(
    sub: &impl Fn(u64, u64) -> Digest32,
    m: u64,
    start: u64,
    n: u64,
    b: bool,
    out: &mut Vec<Digest32>,
) {
    if m == n {
        // The old tree is a complete subtree of the new one: its root is known to the
        // verifier (b) or must be supplied (!b).
        if !b {
            out.push(sub(start, n));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof_with(sub, m, start, k, b, out);
        out.push(sub(start + k, n - k));
    } else {
        subproof_with(sub, m - k, start + k, n - k, false, out);
        out.push(sub(start, k));
    }
}

/// PROOF(m, D[n]) over a slice of leaf hashes (§18.2): the consistency proof that the first
/// `old_size` leaves are a prefix of all of them. `None` unless `1 <= old_size <= n`; the
/// proof is empty when `old_size == n`.
pub fn consistency_proof(leaves: &[Digest32], old_size: u64) -> Option<Vec<Digest32>> {
    let n = leaves.len() as u64;
    if old_size == 0 || old_size > n {
        return None;
    }
    let mut out = Vec::new();
    if old_size < n {
        let sub = |s: u64, l: u64| root(&leaves[s as usize..(s + l) as usize]);
        subproof_with(&sub, old_size, 0, n, true, &mut out);
    }
    Some(out)
}

/// RFC 9162 §2.1.4.2: the roots `(old, new)` of trees of `old_size` and `new_size` leaves
/// that `proof` links, given the old tree's root `old_root`.
///
/// The new root is what a COSE consistency receipt's detached payload must be (§18.5).
/// The returned old root equals `old_root` when the proof links it; a caller compares it.
/// `None` when the sizes are out of range or the proof has the wrong shape for them.
pub fn roots_from_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest32,
    proof: &[Digest32],
) -> Option<(Digest32, Digest32)> {
    if old_size == 0
        || old_size > new_size
        || new_size > MAX_TREE_SIZE
        || proof.len() > MAX_PROOF_HASHES
    {
        return None;
    }
    if old_size == new_size {
        return proof.is_empty().then_some((*old_root, *old_root));
    }
    // Step 1: a power-of-two old tree is a complete subtree; its root seeds the walk.
    let seeded;
    let path: &[Digest32] = if old_size.is_power_of_two() {
        seeded = [std::slice::from_ref(old_root), proof].concat();
        &seeded
    } else {
        proof
    };
    let (first, rest) = path.split_first()?;
    // Steps 2–3.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 4.
    let (mut fr, mut sr) = (*first, *first);
    // Step 5.
    for c in rest {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 6: a proof of the right shape leaves nothing unconsumed.
    (sn == 0).then_some((fr, sr))
}

#[cfg(test)]
mod tests {
    use super::super::leaf_hash;
    use super::*;

    fn leaves(n: u64) -> Vec<Digest32> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_prefix_of_every_small_tree_is_consistent() {
        for n in 1..=40u64 {
            let all = leaves(n);
            let new_root = root(&all);
            for m in 1..=n {
                let old_root = root(&all[..m as usize]);
                let proof = consistency_proof(&all, m).unwrap();
                assert_eq!(
                    roots_from_consistency(m, n, &old_root, &proof),
                    Some((old_root, new_root)),
                    "m={m} n={n}"
                );
                if m < n {
                    // A wrong old root never yields both roots.
                    let wrong = leaf_hash(b"not the old root");
                    let got = roots_from_consistency(m, n, &wrong, &proof);
                    assert!(got.is_none_or(|(o, r)| o != wrong || r != new_root));
                    // Every flipped hash breaks one of the two roots.
                    for i in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[i][0] ^= 1;
                        let got = roots_from_consistency(m, n, &old_root, &bad);
                        assert_ne!(got, Some((old_root, new_root)), "m={m} n={n} i={i}");
                    }
                    // Truncated and extended proofs have the wrong shape.
                    if !proof.is_empty() {
                        let short = &proof[..proof.len() - 1];
                        assert_ne!(
                            roots_from_consistency(m, n, &old_root, short),
                            Some((old_root, new_root))
                        );
                    }
                    let mut long = proof.clone();
                    long.push(new_root);
                    assert_eq!(roots_from_consistency(m, n, &old_root, &long), None);
                }
            }
        }
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        let all = leaves(5);
        let r = root(&all);
        assert_eq!(consistency_proof(&all, 0), None);
        assert_eq!(consistency_proof(&all, 6), None);
        assert_eq!(roots_from_consistency(0, 5, &r, &[]), None);
        assert_eq!(roots_from_consistency(6, 5, &r, &[]), None);
        assert_eq!(roots_from_consistency(5, 5, &r, &[r]), None);
        assert_eq!(roots_from_consistency(1, MAX_TREE_SIZE + 1, &r, &[r]), None);
        let huge = vec![r; MAX_PROOF_HASHES + 1];
        assert_eq!(roots_from_consistency(3, 1 << 39, &r, &huge), None);
    }

    #[test]
    fn rfc9162_example_shape() {
        // RFC 9162 §2.1.5: the proof between sizes 3 and 7 is [c, d, g, l].
        let l = leaves(7);
        let (c, d) = (l[2], l[3]);
        let g = node_hash(&l[0], &l[1]);
        let l_ = node_hash(&node_hash(&l[4], &l[5]), &l[6]);
        assert_eq!(consistency_proof(&l, 3).unwrap(), vec![c, d, g, l_]);
        // Between 4 and 7: [l]; between 6 and 7: [i, j, k] where i = H(e, f).
        assert_eq!(consistency_proof(&l, 4).unwrap(), vec![l_]);
        let i = node_hash(&l[4], &l[5]);
        let k = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(consistency_proof(&l, 6).unwrap(), vec![i, l[6], k]);
    }
}
