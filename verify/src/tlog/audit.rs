//! An audit log against a signed tree head (§18.8.6): the log's first `size` records are
//! the leaves, and they reproduce the head's root.

use quorate_crypto::PublicKey;
use quorate_crypto::merkle::MerkleLog;
use quorate_protocol::{audit_log, tlog};

use super::{TlogVerifyError, verify_tree_head};

/// An audit log that reproduces a signed head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLogMatch {
    /// The head's size: the records it covers.
    pub size: u64,
    /// Complete records in the log (at least `size`; later ones are newer than the head).
    pub records: u64,
}

/// Verifies the head with the log's key, then recomputes the root of the first `size`
/// records of the audit log file `log` (§12.4) and compares it with the head's.
pub fn verify_audit_log(
    log: &[u8],
    head: &[u8],
    key: &PublicKey,
) -> Result<AuditLogMatch, TlogVerifyError> {
    let scan = audit_log::scan(log).map_err(|e| TlogVerifyError::AuditLog(e.to_string()))?;
    verify_records(scan.records.into_iter().map(Ok), head, key)
}

/// [`verify_audit_log`] over an audit log's records as they are read, one at a time, so a
/// log of any length is checked in bounded memory (§6.4). A record that could not be read
/// (`Err`, with the reason) fails the check.
pub fn verify_records(
    records: impl IntoIterator<Item = Result<Vec<u8>, String>>,
    head: &[u8],
    key: &PublicKey,
) -> Result<AuditLogMatch, TlogVerifyError> {
    let head = verify_tree_head(head, key)?;
    let mut tree = MerkleLog::new();
    let mut count = 0u64;
    for record in records {
        let record = record.map_err(TlogVerifyError::AuditLog)?;
        if count < head.size {
            let leaf = tlog::receipt_leaf_hash(&record).map_err(|e| {
                TlogVerifyError::AuditLog(format!("record {count} is not a receipt: {e}"))
            })?;
            tree.push(leaf)
                .map_err(|e| TlogVerifyError::AuditLog(e.to_string()))?;
        }
        count += 1;
    }
    if count < head.size {
        return Err(TlogVerifyError::AuditLog(format!(
            "the head covers {} records, the log holds {count}",
            head.size
        )));
    }
    if tree.root(head.size) != Some(head.root) {
        return Err(TlogVerifyError::Mismatch(format!(
            "the first {} records do not reproduce the head's root",
            head.size
        )));
    }
    Ok(AuditLogMatch {
        size: head.size,
        records: count,
    })
}
