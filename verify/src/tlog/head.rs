//! Signed tree heads (§18.8.1).

use quorate_crypto::PublicKey;
use quorate_protocol::tlog::TreeHead;

use super::{TlogVerifyError, check_kid};

/// Verifies a signed tree head with the log's key and returns its payload (§18.8.1).
pub fn verify_tree_head(bytes: &[u8], key: &PublicKey) -> Result<TreeHead, TlogVerifyError> {
    let head = TreeHead::parse(bytes)?;
    check_kid(head.sign1.kid, key)?;
    head.sign1
        .verify(key)
        .map_err(|_| TlogVerifyError::BadSignature("tree head"))?;
    Ok(head.body)
}
