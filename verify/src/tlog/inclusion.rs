//! Inclusion receipts (§18.8.2): a receipt's leaf, its path and the node's signature over
//! the recomputed root.

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::tlog::{self, InclusionReceipt};

use super::{TlogVerifyError, check_kid};

/// What a verified inclusion receipt proves: the leaf is at `leaf_index` in the log's tree
/// of `tree_size` leaves whose root is `root`, as the node signed at `issued_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedInclusion {
    /// The leaf's index.
    pub leaf_index: u64,
    /// The tree's size.
    pub tree_size: u64,
    /// The recomputed and signed root.
    pub root: Digest32,
    /// When the node signed.
    pub issued_at: u64,
}

/// Verifies an inclusion receipt for a leaf hash with the log's key (§18.8.2 steps 1–6).
pub fn verify_inclusion(
    inclusion_receipt: &[u8],
    leaf_hash: &Digest32,
    key: &PublicKey,
) -> Result<VerifiedInclusion, TlogVerifyError> {
    verify_inclusion_with(inclusion_receipt, leaf_hash, key, None)
}

fn verify_inclusion_with(
    inclusion_receipt: &[u8],
    leaf_hash: &Digest32,
    key: &PublicKey,
    cache: Option<&StatementCache>,
) -> Result<VerifiedInclusion, TlogVerifyError> {
    let r = InclusionReceipt::parse(inclusion_receipt)?;
    check_kid(r.cose.kid, key)?;
    let root = r
        .root_for(leaf_hash)
        .ok_or(TlogVerifyError::ProofShape("inclusion"))?;
    // The detached payload is the recomputed root: a wrong leaf, index or path gives
    // another root, and the node's signature does not cover it.
    let tbs = r.cose.to_be_signed(&root)?;
    let verified = match cache {
        Some(c) => c.verify(key, &tbs, &r.cose.signature),
        None => key.verify(&tbs, &r.cose.signature),
    };
    verified
        .map_err(|_| TlogVerifyError::BadSignature("inclusion receipt over the recomputed root"))?;
    Ok(VerifiedInclusion {
        leaf_index: r.proof.leaf_index,
        tree_size: r.proof.tree_size,
        root,
        issued_at: r.cose.issued_at,
    })
}

/// The statements (a log's signature over the root of one tree, §18.4) a client verified
/// last. A node signs one statement per group commit and every reply of the group carries
/// it (§18.11.3), so a client that receives several replies of one group checks the
/// signature once.
pub type StatementCache = crate::signature_cache::SignatureCache;

/// [`verify_receipt_inclusions`], skipping the signature check of statements `cache` saw
/// verified (every other step is done in full).
pub fn verify_receipt_inclusions_cached(
    receipt: &[u8],
    key: &PublicKey,
    cache: &StatementCache,
) -> Result<Vec<VerifiedInclusion>, TlogVerifyError> {
    let leaf = tlog::receipt_leaf_hash(receipt)?;
    tlog::inclusion_receipts_of(receipt)?
        .iter()
        .map(|r| verify_inclusion_with(r, &leaf, key, Some(cache)))
        .collect()
}

/// Verifies every inclusion receipt a receipt carries in header 394 against the receipt's
/// own leaf (§18.1, §18.8.2). The receipt's signature is checked by the §4.4 procedure.
/// An empty list means the receipt carries none.
pub fn verify_receipt_inclusions(
    receipt: &[u8],
    key: &PublicKey,
) -> Result<Vec<VerifiedInclusion>, TlogVerifyError> {
    let leaf = tlog::receipt_leaf_hash(receipt)?;
    tlog::inclusion_receipts_of(receipt)?
        .iter()
        .map(|r| verify_inclusion(r, &leaf, key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;
    use quorate_crypto::merkle::MerkleLog;
    use quorate_protocol::tlog::TreeStatement;

    /// A cached statement skips only the signature check of exactly that statement: a
    /// forged signature or another key still fails, and so does a wrong leaf.
    #[test]
    fn the_cache_skips_only_a_statement_already_verified() {
        let key = SecretKey::from_seed(&[3; 32]);
        let other = SecretKey::from_seed(&[4; 32]).public_key();
        let leaves: Vec<Digest32> = (0..5u8).map(|i| [i; 32]).collect();
        let log = MerkleLog::from_leaves(leaves.iter().copied()).unwrap();
        let s = TreeStatement::sign(&log, 5, 9, &key).unwrap();
        let inc = |i: u64| {
            s.inclusion_receipt(i, log.inclusion_proof(i, 5).unwrap())
                .unwrap()
        };
        let cache = StatementCache::new(4);
        let pk = key.public_key();
        for i in 0..5u64 {
            let v = verify_inclusion_with(&inc(i), &leaves[i as usize], &pk, Some(&cache)).unwrap();
            assert_eq!(v.leaf_index, i);
        }
        assert_eq!(cache.len(), 1);
        // A flipped signature byte is another statement: verified, and refused.
        let mut forged = inc(1);
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(verify_inclusion_with(&forged, &leaves[1], &pk, Some(&cache)).is_err());
        assert!(verify_inclusion_with(&inc(1), &leaves[2], &pk, Some(&cache)).is_err());
        assert!(verify_inclusion_with(&inc(1), &leaves[1], &other, Some(&cache)).is_err());
    }
}
