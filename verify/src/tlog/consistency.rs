//! Consistency receipts (§18.8.3): the node's signed statement that its tree of
//! `old_size` leaves is a prefix of its tree of `new_size` leaves.

use quorate_crypto::PublicKey;
use quorate_crypto::merkle;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::tlog::ConsistencyReceipt;

use super::{TlogVerifyError, check_kid, verify_tree_head};

/// What a verified consistency receipt proves (§18.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedConsistency {
    /// The older tree's size.
    pub old_size: u64,
    /// The older tree's root, as signed.
    pub old_root: Digest32,
    /// The newer tree's size.
    pub new_size: u64,
    /// The newer tree's root, recomputed and signed.
    pub new_root: Digest32,
    /// When the node signed.
    pub issued_at: u64,
}

/// Verifies a consistency receipt with the log's key (§18.8.3 steps 1–6).
pub fn verify_consistency_receipt(
    bytes: &[u8],
    key: &PublicKey,
) -> Result<VerifiedConsistency, TlogVerifyError> {
    let r = ConsistencyReceipt::parse(bytes)?;
    check_kid(r.cose.kid, key)?;
    let (old_root, new_root) =
        merkle::roots_from_consistency(r.old_size(), r.new_size(), &r.old_root, &r.proof.path)
            .ok_or(TlogVerifyError::ProofShape("consistency"))?;
    if old_root != r.old_root {
        return Err(TlogVerifyError::Mismatch(format!(
            "the consistency proof does not reproduce the signed root of size {}",
            r.old_size()
        )));
    }
    key.verify(&r.cose.to_be_signed(&new_root)?, &r.cose.signature)
        .map_err(|_| {
            TlogVerifyError::BadSignature("consistency receipt over the recomputed root")
        })?;
    Ok(VerifiedConsistency {
        old_size: r.old_size(),
        old_root,
        new_size: r.new_size(),
        new_root,
        issued_at: r.cose.issued_at,
    })
}

/// Verifies that a consistency receipt links two signed tree heads of the log (in either
/// order): both heads and the receipt verify, and the receipt's older and newer trees are
/// the heads' trees (§18.8.3 step 7).
pub fn verify_consistency(
    receipt: &[u8],
    head_a: &[u8],
    head_b: &[u8],
    key: &PublicKey,
) -> Result<VerifiedConsistency, TlogVerifyError> {
    let mut a = verify_tree_head(head_a, key)?;
    let mut b = verify_tree_head(head_b, key)?;
    if a.size > b.size {
        std::mem::swap(&mut a, &mut b);
    }
    let c = verify_consistency_receipt(receipt, key)?;
    if (c.old_size, c.new_size) != (a.size, b.size) {
        return Err(TlogVerifyError::Mismatch(format!(
            "the receipt links sizes {}→{}, the heads have {}→{}",
            c.old_size, c.new_size, a.size, b.size
        )));
    }
    if c.old_root != a.root || c.new_root != b.root {
        return Err(TlogVerifyError::Mismatch(
            "the receipt's roots are not the heads' roots: the heads are not consistent".into(),
        ));
    }
    Ok(c)
}
