//! What the unit tests of several modules share.

use quorate_crypto::SecretKey;
use quorate_protocol::receipt::{JobKind, ReceiptPayload};

/// A receipt of job `i` signed by `key`, issued at 1_700_000_000 + `i`: a distinct leaf per
/// `i` (§18.1).
pub(crate) fn signed_receipt(i: u8, key: &SecretKey) -> Vec<u8> {
    payload(i).sign(key).unwrap()
}

/// The payload of job `i` (kind `infer`, no policy or previous receipt), issued at
/// 1_700_000_000 + `i`.
pub(crate) fn payload(i: u8) -> ReceiptPayload {
    ReceiptPayload {
        job_id: [i; 16],
        nonce: vec![i; 16],
        kind: JobKind::Infer,
        model_digest: [1; 32],
        inputs: vec![],
        outputs: vec![],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime".into(),
        issued_at: 1_700_000_000 + u64::from(i),
        previous: None,
        policy: None,
    }
}
