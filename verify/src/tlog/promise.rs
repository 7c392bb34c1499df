//! Promises against later inclusion receipts (§18.8.4).

use quorate_crypto::PublicKey;
use quorate_protocol::batch_receipt;
use quorate_protocol::tlog::{self, Promise};

use super::{TlogVerifyError, VerifiedInclusion, check_kid, verify_inclusion};

/// A promise shown kept for one receipt: the receipt is in a tree the node signed by the
/// deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromiseKept {
    /// The promise.
    pub promise: Promise,
    /// The inclusion that keeps it.
    pub inclusion: VerifiedInclusion,
}

/// Verifies a promise, the receipt it covers and an inclusion receipt of that receipt's
/// leaf, all by the log's key, and that the inclusion was signed no later than the deadline
/// (§18.8.4). [`TlogVerifyError::Late`] shows only that this inclusion receipt does not keep
/// the promise: a node re-proves old leaves at later heads, so a late receipt is never
/// evidence against it (§18.6).
pub fn verify_promise(
    promise: &[u8],
    receipt_bytes: &[u8],
    inclusion_receipt: &[u8],
    key: &PublicKey,
) -> Result<PromiseKept, TlogVerifyError> {
    let p = verify_promise_doc(promise, key)?;
    // A single receipt or a batch receipt (§5.4): a node may batch-sign replies (§12.4.2).
    let r = batch_receipt::parse_any(receipt_bytes)
        .map_err(|e| TlogVerifyError::Mismatch(format!("the receipt does not parse: {e}")))?;
    check_kid(r.kid(), key)?;
    r.sign1()
        .verify(key)
        .map_err(|_| TlogVerifyError::BadSignature("receipt"))?;
    let issued_at = r.payload().issued_at;
    if !p.covers(issued_at) {
        return Err(TlogVerifyError::Mismatch(format!(
            "the receipt was issued at {issued_at}, outside the promise's window [{}, {})",
            p.from, p.until
        )));
    }
    let leaf = tlog::receipt_leaf_hash(receipt_bytes)?;
    let inclusion = verify_inclusion(inclusion_receipt, &leaf, key)?;
    if inclusion.issued_at > p.deadline {
        return Err(TlogVerifyError::Late {
            included_at: inclusion.issued_at,
            deadline: p.deadline,
        });
    }
    Ok(PromiseKept {
        promise: p,
        inclusion,
    })
}

/// Verifies a promise on its own (§18.8.4 first step): decoding, window, kid and signature.
pub fn verify_promise_doc(promise: &[u8], key: &PublicKey) -> Result<Promise, TlogVerifyError> {
    let p = Promise::parse(promise)?;
    check_kid(p.sign1.kid, key)?;
    p.sign1
        .verify(key)
        .map_err(|_| TlogVerifyError::BadSignature("promise"))?;
    Ok(p.body)
}
