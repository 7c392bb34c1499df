//! Promises against later inclusion receipts (§18.8.4).

use quorate_crypto::PublicKey;
use quorate_protocol::tlog::Promise;

use super::{TlogVerifyError, VerifiedInclusion, check_kid, verify_inclusion};

/// A promise shown kept: the leaf is in a tree the node signed by the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromiseKept {
    /// The promise.
    pub promise: Promise,
    /// The inclusion that keeps it.
    pub inclusion: VerifiedInclusion,
}

/// Verifies a promise and an inclusion receipt of its leaf, both by the log's key, and that
/// the receipt was signed no later than the deadline (§18.8.4). [`TlogVerifyError::Late`]
/// shows only that this receipt does not keep the promise: a node re-proves old leaves at
/// later heads, so a late receipt is never evidence against it (§18.6).
pub fn verify_promise(
    promise: &[u8],
    inclusion_receipt: &[u8],
    key: &PublicKey,
) -> Result<PromiseKept, TlogVerifyError> {
    let p = Promise::parse(promise)?;
    check_kid(p.sign1.kid, key)?;
    p.sign1
        .verify(key)
        .map_err(|_| TlogVerifyError::BadSignature("promise"))?;
    let inclusion = verify_inclusion(inclusion_receipt, &p.body.leaf_hash, key)?;
    if inclusion.issued_at > p.body.deadline {
        return Err(TlogVerifyError::Late {
            included_at: inclusion.issued_at,
            deadline: p.body.deadline,
        });
    }
    Ok(PromiseKept {
        promise: p.body,
        inclusion,
    })
}
