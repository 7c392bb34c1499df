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
    let r = InclusionReceipt::parse(inclusion_receipt)?;
    check_kid(r.cose.kid, key)?;
    let root = r
        .root_for(leaf_hash)
        .ok_or(TlogVerifyError::ProofShape("inclusion"))?;
    // The detached payload is the recomputed root: a wrong leaf, index or path gives
    // another root, and the node's signature does not cover it.
    key.verify(&r.cose.to_be_signed(&root)?, &r.cose.signature)
        .map_err(|_| TlogVerifyError::BadSignature("inclusion receipt over the recomputed root"))?;
    Ok(VerifiedInclusion {
        leaf_index: r.proof.leaf_index,
        tree_size: r.proof.tree_size,
        root,
        issued_at: r.cose.issued_at,
    })
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
