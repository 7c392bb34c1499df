//! Offline verification of the transparency log (§18.8): signed tree heads, inclusion and
//! consistency receipts, promises, equivocation bundles, and audit logs against a head.
//! Every function takes bytes and the log's public key and returns what was proven, or an
//! error naming what failed.

mod audit;
mod consistency;
mod equivocation;
mod head;
mod inclusion;
mod promise;

pub use audit::{AuditLogMatch, verify_audit_log, verify_records};
pub use consistency::{VerifiedConsistency, verify_consistency, verify_consistency_receipt};
pub use equivocation::{Equivocation, NotProven, Verdict, convict};
pub use head::verify_tree_head;
pub use inclusion::{
    StatementCache, VerifiedInclusion, verify_inclusion, verify_receipt_inclusions,
    verify_receipt_inclusions_cached,
};
pub use promise::{PromiseKept, verify_promise, verify_promise_doc};

use quorate_crypto::KeyId;
use quorate_protocol::tlog::TlogError;

/// What failed when checking a transparency-log document (§18.8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogVerifyError {
    /// The document does not decode under §18 (see [`TlogError`]).
    #[error(transparent)]
    Decode(#[from] TlogError),
    /// Signed by another key than the log's.
    #[error("signed by key {found}, not the log's key {expected}")]
    WrongKey {
        /// The document's kid.
        found: KeyId,
        /// The log's key id.
        expected: KeyId,
    },
    /// The signature does not verify over the document (for COSE receipts: over the root
    /// the proof recomputes, so a tampered proof fails here too).
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// The proof has the wrong shape for its index and sizes, so it computes no root.
    #[error("the {0} proof has the wrong length for its index and tree size")]
    ProofShape(&'static str),
    /// Two documents that must agree on a tree do not.
    #[error("mismatch: {0}")]
    Mismatch(String),
    /// A promise's leaf was shown included only after its deadline.
    #[error("included at {included_at}, after the promised deadline {deadline}")]
    Late {
        /// The inclusion receipt's time.
        included_at: u64,
        /// The promise's deadline.
        deadline: u64,
    },
    /// An audit log that is not one, or holds fewer records than the head covers.
    #[error("audit log: {0}")]
    AuditLog(String),
}

impl TlogVerifyError {
    /// A stable short name of the failure, as test vectors write it (§18.10).
    pub fn code(&self) -> &'static str {
        match self {
            TlogVerifyError::Decode(e) => e.code(),
            TlogVerifyError::WrongKey { .. } => "wrong_key",
            TlogVerifyError::BadSignature(_) => "bad_signature",
            TlogVerifyError::ProofShape(_) => "proof_shape",
            TlogVerifyError::Mismatch(_) => "mismatch",
            TlogVerifyError::Late { .. } => "late",
            TlogVerifyError::AuditLog(_) => "audit_log",
        }
    }
}

/// §18.8 step "key": the document's kid must be the log's key id.
fn check_kid(found: KeyId, key: &quorate_crypto::PublicKey) -> Result<(), TlogVerifyError> {
    let expected = key.key_id();
    if found != expected {
        return Err(TlogVerifyError::WrongKey { found, expected });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
