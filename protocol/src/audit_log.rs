//! The audit-log file format (§12.4): the 16-byte magic `QUORATE-AUDIT-1\n`, then records
//! `u32be(len) || SHA-256(receipt) || receipt`. Records are only ever appended, so a crash can
//! damage only the tail. Reading is pure (bytes in); the node's writer lives in `quorate-node`.

use quorate_crypto::tensor_digest::sha256;

use crate::receipt::MAX_RECEIPT_LEN;

/// First bytes of every audit log.
pub const MAGIC: &[u8; 16] = b"QUORATE-AUDIT-1\n";
/// Bytes before each record's receipt: its length and its SHA-256.
pub const RECORD_HEADER: usize = 4 + 32;

/// The input is not an audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a quorate audit log (missing the QUORATE-AUDIT-1 header)")]
pub struct NotAnAuditLog;

/// What scanning a log found.
pub struct Scan {
    /// The complete records, in order.
    pub records: Vec<Vec<u8>>,
    /// Offset just past the last complete record.
    pub good_len: u64,
    /// Bytes after it (a torn tail).
    pub torn_bytes: u64,
}

/// Reads every complete record; stops at the first incomplete or mismatching one.
pub fn scan(bytes: &[u8]) -> Result<Scan, NotAnAuditLog> {
    if !is_audit_log(bytes) {
        return Err(NotAnAuditLog);
    }
    let mut pos = MAGIC.len();
    let mut records = Vec::new();
    while bytes.len() - pos >= RECORD_HEADER {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let body = pos + RECORD_HEADER;
        if len > MAX_RECEIPT_LEN || bytes.len() - body < len {
            break;
        }
        let record = &bytes[body..body + len];
        if sha256(record)[..] != bytes[pos + 4..body] {
            break;
        }
        records.push(record.to_vec());
        pos = body + len;
    }
    Ok(Scan {
        records,
        good_len: pos as u64,
        torn_bytes: (bytes.len() - pos) as u64,
    })
}

/// Whether the bytes are an audit log (by its magic).
pub fn is_audit_log(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// One record as appended: header and receipt.
pub fn record(receipt: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + receipt.len());
    record.extend_from_slice(&(receipt.len() as u32).to_be_bytes());
    record.extend_from_slice(&sha256(receipt));
    record.extend_from_slice(receipt);
    record
}
