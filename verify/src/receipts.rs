//! Offline verification of receipts (§6): strict parsing, key lookup, signatures in one
//! batch (results identical to one-by-one), and revealed tensors against commitments. Receipts
//! come in as bytes with a label each (a file name, `FILE#N` for audit-log records).

use quorate_crypto::KeyId;
use quorate_crypto::PublicKey;
use quorate_crypto::batch::{Item, verify_each};
use quorate_protocol::audit_log;
use quorate_protocol::batch_receipt::{self, AnyReceipt};
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::tensor_file::RevealedTensor;
use quorate_protocol::tlog;
use serde_json::json;

use crate::TrustStore;

/// Why one receipt file failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The file could not be read (reported by the caller that reads files).
    #[error("unreadable: {0}")]
    Io(String),
    /// Not a well-formed receipt under the spec's strict rules.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Signed by a key that is not trusted.
    #[error("unknown key {0}: not among the trusted keys")]
    UnknownKey(KeyId),
    /// The signature does not verify: the receipt was altered after signing.
    #[error("bad signature: the receipt was altered or not signed by key {0}")]
    BadSignature(KeyId),
    /// A revealed tensor does not match the receipt's commitment.
    #[error("tensor mismatch: {0:?} does not match its commitment")]
    TensorMismatch(String),
    /// A tensor was revealed for a name the receipt does not commit to.
    #[error("the receipt commits to no tensor named {0:?}")]
    NoSuchTensor(String),
    /// An inclusion receipt the receipt carries in header 394 does not prove it (§18.8.2).
    #[error("inclusion receipt: {0}")]
    Inclusion(String),
}

/// The verdict on one receipt.
pub struct FileReport {
    /// Where it came from: a file name, or `FILE#N` for record N of an audit log.
    pub label: String,
    /// Parsed receipt, when parsing succeeded.
    pub receipt: Option<AnyReceipt>,
    /// Name of the signer, when known.
    pub signer: Option<String>,
    /// The first failure, or `None` when everything verified.
    pub failure: Option<Failure>,
    /// Tensors checked against commitments.
    pub tensors_checked: Vec<String>,
    /// The inclusion receipts it carries (header 394), each verified (§18.8.2).
    pub logged: Vec<crate::tlog::VerifiedInclusion>,
}

/// One receipt to check: its label and its bytes, or why there are none.
pub struct Source {
    /// A file name, or `FILE#N` for record N of an audit log.
    pub label: String,
    /// The receipt's bytes, or why they could not be had.
    pub bytes: Result<Vec<u8>, Failure>,
}

/// Receipts per thread below which splitting the work is not worth a thread.
const MIN_PER_THREAD: usize = 64;

/// Verifies every receipt (§6): parsing, key lookup, signature (exactly `verify_strict`,
/// §6.2) and revealed tensors. Large inputs are split across the available cores; reports
/// come back in the order of `sources`.
pub fn verify_receipts(
    sources: Vec<Source>,
    trust: &TrustStore,
    reveals: &[RevealedTensor],
) -> Vec<FileReport> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = sources.len().div_ceil(threads).max(MIN_PER_THREAD);
    if sources.len() <= per {
        return verify_receipts_here(sources, trust, reveals);
    }
    let mut chunks: Vec<Vec<Source>> = Vec::new();
    let mut rest = sources.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let labels: Vec<String> = c.iter().map(|s| s.label.clone()).collect();
                (
                    s.spawn(move || verify_receipts_here(c, trust, reveals)),
                    labels,
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(h, labels)| {
                // A panicking thread verified nothing: its receipts fail, named.
                h.join().unwrap_or_else(|_| verification_failed(labels))
            })
            .collect()
    })
}

/// The reports of receipts whose verification panicked: each fails, named, so that a
/// verifier that broke down never passes for one that found nothing wrong.
pub fn verification_failed(labels: Vec<String>) -> Vec<FileReport> {
    labels
        .into_iter()
        .map(|label| FileReport {
            label,
            receipt: None,
            signer: None,
            failure: Some(Failure::Malformed("verification failed".into())),
            tensors_checked: Vec::new(),
            logged: Vec::new(),
        })
        .collect()
}

/// [`verify_receipts`] on the calling thread, for callers that spread the work across the
/// cores themselves (the streaming audit of §6.4).
pub fn verify_receipts_here(
    sources: Vec<Source>,
    trust: &TrustStore,
    reveals: &[RevealedTensor],
) -> Vec<FileReport> {
    // Receipts that carry inclusion receipts (header 394, §18.4), checked once the
    // receipt's own signature holds.
    let mut carried: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut reports: Vec<FileReport> = sources
        .into_iter()
        .enumerate()
        .map(|(i, Source { label, bytes })| {
            let parsed = bytes.and_then(|b| {
                let r = batch_receipt::parse_any(&b).map_err(|e| Failure::Malformed(e.to_string()));
                // Most receipts carry none: their empty unprotected header is seen in their
                // first bytes, without decoding the receipt a second time (§18.4).
                if r.is_ok()
                    && !tlog::unprotected_header_is_empty(&b)
                    && tlog::inclusion_receipts_of(&b).is_ok_and(|l| !l.is_empty())
                {
                    carried.push((i, b));
                }
                r
            });
            let (receipt, failure) = match parsed {
                Ok(r) => (Some(r), None),
                Err(f) => (None, Some(f)),
            };
            FileReport {
                label,
                receipt,
                signer: None,
                failure,
                tensors_checked: Vec::new(),
                logged: Vec::new(),
            }
        })
        .collect();

    // Key lookup, then every signature still to check.
    let mut pending: Vec<(usize, PublicKey)> = Vec::new();
    for (i, r) in reports.iter_mut().enumerate() {
        let Some(receipt) = &r.receipt else { continue };
        match trust.get(&receipt.kid()) {
            Some((key, name)) => {
                r.signer = Some(name.clone());
                pending.push((i, *key));
            }
            None => r.failure = Some(Failure::UnknownKey(receipt.kid())),
        }
    }
    let items: Vec<Item<'_>> = pending
        .iter()
        .filter_map(|(i, key)| {
            let s = reports[*i].receipt.as_ref()?.sign1();
            Some(Item {
                message: &s.to_be_signed,
                signature: &s.signature,
                key,
            })
        })
        .collect();
    let results = verify_each(&items);
    let bad: Vec<usize> = pending
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_err())
        .map(|((i, _), _)| *i)
        .collect();
    for i in bad {
        let kid = reports[i].receipt.as_ref().map(AnyReceipt::kid);
        if let Some(kid) = kid {
            reports[i].failure = Some(Failure::BadSignature(kid));
        }
    }

    for (i, bytes) in carried {
        let key = pending.iter().find(|(j, _)| *j == i).map(|(_, k)| k);
        if let (Some(key), None) = (key, &reports[i].failure) {
            match crate::tlog::verify_receipt_inclusions(&bytes, key) {
                Ok(logged) => reports[i].logged = logged,
                Err(e) => reports[i].failure = Some(Failure::Inclusion(e.to_string())),
            }
        }
    }

    for r in reports.iter_mut().filter(|r| r.failure.is_none()) {
        let Some(receipt) = &r.receipt else { continue };
        for reveal in reveals {
            let name = reveal.tensor.name();
            match receipt.payload().commitment(name) {
                None => r.failure = Some(Failure::NoSuchTensor(name.to_string())),
                Some(c) if !c.matches(&reveal.tensor, reveal.salt.as_ref()) => {
                    r.failure = Some(Failure::TensorMismatch(name.to_string()));
                }
                Some(_) => r.tensors_checked.push(name.to_string()),
            }
            if r.failure.is_some() {
                break;
            }
        }
    }
    reports
}

/// The receipts one file's bytes hold: itself, or every record of an audit log (§12.4),
/// labelled `LABEL#N`, with a torn tail reported as `LABEL#tail`.
pub fn expand(label: &str, bytes: Vec<u8>) -> Vec<Source> {
    if !audit_log::is_audit_log(&bytes) {
        return vec![Source {
            label: label.to_string(),
            bytes: Ok(bytes),
        }];
    }
    let at = |i: &dyn std::fmt::Display| format!("{label}#{i}");
    match audit_log::scan(&bytes) {
        Err(e) => vec![Source {
            label: label.to_string(),
            bytes: Err(Failure::Malformed(e.to_string())),
        }],
        Ok(scan) => {
            let mut out: Vec<Source> = scan
                .records
                .into_iter()
                .enumerate()
                .map(|(i, r)| Source {
                    label: at(&i),
                    bytes: Ok(r),
                })
                .collect();
            if scan.torn_bytes > 0 {
                out.push(Source {
                    label: at(&"tail"),
                    bytes: Err(Failure::Malformed(format!(
                        "torn tail of {} bytes",
                        scan.torn_bytes
                    ))),
                });
            }
            out
        }
    }
}

/// Largest audit log a verifier reads.
pub const MAX_AUDIT_LOG_LEN: u64 = 1 << 30;

/// Largest receipt file a verifier reads.
pub const MAX_RECEIPT_FILE_LEN: u64 = MAX_RECEIPT_LEN as u64;

/// One human-readable line per report.
pub fn human_line(r: &FileReport) -> String {
    let path = &r.label;
    match (&r.failure, &r.receipt) {
        (Some(f), _) => format!("FAIL {path}: {f}"),
        (None, Some(receipt)) => {
            let p = receipt.payload();
            let form = if matches!(receipt, AnyReceipt::Batch(_)) {
                " (batch)"
            } else {
                ""
            };
            let outputs: Vec<&str> = p.outputs.iter().map(|c| c.name.as_str()).collect();
            let mut line = format!(
                "OK   {path}: {} job {} by {} [{}]{form}, model sha256:{}…, outputs [{}], {} on {}",
                p.kind.name(),
                hex::encode(p.job_id),
                r.signer.as_deref().unwrap_or("?"),
                receipt.kid(),
                &hex::encode(p.model_digest)[..16],
                outputs.join(", "),
                p.runtime,
                p.provider,
            );
            if !r.tensors_checked.is_empty() {
                line.push_str(&format!(
                    "; revealed tensors match: {}",
                    r.tensors_checked.join(", ")
                ));
            }
            for i in &r.logged {
                line.push_str(&format!(
                    "; in the signer's log: leaf {} of {}",
                    i.leaf_index, i.tree_size
                ));
            }
            line
        }
        (None, None) => format!("FAIL {path}: no receipt"),
    }
}

/// The machine-readable form (§6.3).
pub fn json_report(reports: &[FileReport]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = reports.iter().map(json_entry).collect();
    json!({ "ok": reports.iter().all(|r| r.failure.is_none()) && !reports.is_empty(), "receipts": items })
}

/// One report's entry in the machine-readable form (§6.3).
pub fn json_entry(r: &FileReport) -> serde_json::Value {
    let mut o = json!({
        "path": r.label,
        "ok": r.failure.is_none(),
    });
    if let Some(f) = &r.failure {
        o["error"] = json!(failure_code(f));
        o["reason"] = json!(f.to_string());
    }
    if let Some(receipt) = &r.receipt {
        let p = receipt.payload();
        o["form"] = json!(if matches!(receipt, AnyReceipt::Batch(_)) {
            "batch"
        } else {
            "single"
        });
        o["kid"] = json!(receipt.kid().to_string());
        o["signer"] = json!(r.signer);
        o["kind"] = json!(p.kind.name());
        o["job_id"] = json!(hex::encode(p.job_id));
        o["model_digest"] = json!(hex::encode(p.model_digest));
        o["issued_at"] = json!(p.issued_at);
        o["provider"] = json!(p.provider);
        o["runtime"] = json!(p.runtime);
        if !r.logged.is_empty() {
            o["log_inclusions"] = json!(
                r.logged
                    .iter()
                    .map(|i| json!({"leaf_index": i.leaf_index, "tree_size": i.tree_size, "issued_at": i.issued_at}))
                    .collect::<Vec<_>>()
            );
        }
        o["outputs"] = json!(
            p.outputs
                .iter()
                .map(
                    |c| json!({"name": c.name, "digest": hex::encode(c.digest), "salted": c.salted})
                )
                .collect::<Vec<_>>()
        );
        o["tensors_checked"] = json!(r.tensors_checked);
    }
    o
}

/// Stable machine-readable failure codes (§6.3).
pub fn failure_code(f: &Failure) -> &'static str {
    match f {
        Failure::Io(_) => "io",
        Failure::Malformed(_) => "malformed",
        Failure::UnknownKey(_) => "unknown_key",
        Failure::BadSignature(_) => "bad_signature",
        Failure::TensorMismatch(_) => "tensor_mismatch",
        Failure::NoSuchTensor(_) => "no_such_tensor",
        Failure::Inclusion(_) => "inclusion",
    }
}

/// A revealed opaque blob, such as an FHE ciphertext or server key (§16.6): its commitment is
/// the plain SHA-256 of its bytes.
pub struct RevealedBlob {
    /// Commitment name (e.g. `fhe:input`).
    pub name: String,
    /// SHA-256 of the revealed bytes.
    pub digest: quorate_crypto::tensor_digest::Digest32,
}

/// Checks revealed blobs against the commitments of every receipt that verified so far.
pub fn check_blobs(reports: &mut [FileReport], blobs: &[RevealedBlob]) {
    for r in reports.iter_mut().filter(|r| r.failure.is_none()) {
        let Some(receipt) = &r.receipt else { continue };
        for b in blobs {
            match receipt.payload().commitment(&b.name) {
                None => r.failure = Some(Failure::NoSuchTensor(b.name.clone())),
                Some(c) if c.salted || c.digest != b.digest => {
                    r.failure = Some(Failure::TensorMismatch(b.name.clone()));
                }
                Some(_) => r.tensors_checked.push(b.name.clone()),
            }
            if r.failure.is_some() {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;
    use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
    use quorate_protocol::tensor::Tensor;

    fn receipt(i: u32, key: &SecretKey) -> Vec<u8> {
        let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.25, i as f32]).unwrap();
        ReceiptPayload {
            job_id: [(i % 251) as u8; 16],
            nonce: vec![7; 32],
            kind: JobKind::Local,
            model_digest: [3; 32],
            inputs: vec![],
            outputs: vec![Commitment::to(&y, Some(&[6; 32]))],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime 1.31.1".into(),
            issued_at: 1_763_900_000,
            previous: None,
            policy: None,
        }
        .sign(key)
        .unwrap()
    }

    /// Enough receipts to be split across threads: every report stays at its source's
    /// place, and exactly the altered, foreign and unreadable ones fail, each with its reason.
    #[test]
    fn split_verification_keeps_order_and_names_exactly_the_bad_receipts() {
        let node = SecretKey::from_seed(&[1; 32]);
        let stranger = SecretKey::from_seed(&[2; 32]);
        let mut trust = TrustStore::default();
        trust.add(node.public_key(), "node-1");
        let n = 1000u32;
        let sources: Vec<Source> = (0..n)
            .map(|i| {
                let bytes = match i % 97 {
                    13 => Err(Failure::Io("gone".into())),
                    29 => Ok(receipt(i, &stranger)),
                    41 => {
                        let mut r = receipt(i, &node);
                        let last = r.len() - 1;
                        r[last] ^= 1; // a signature byte
                        Ok(r)
                    }
                    _ => Ok(receipt(i, &node)),
                };
                Source {
                    label: format!("log#{i}"),
                    bytes,
                }
            })
            .collect();
        let reports = verify_receipts(sources, &trust, &[]);
        assert_eq!(reports.len(), n as usize);
        for (i, r) in reports.iter().enumerate() {
            assert_eq!(r.label, format!("log#{i}"));
            match (i % 97, &r.failure) {
                (13, Some(Failure::Io(_)))
                | (29, Some(Failure::UnknownKey(_)))
                | (41, Some(Failure::BadSignature(_)))
                | (_, None) => {}
                (k, f) => panic!("receipt {i} (case {k}): {f:?}"),
            }
            assert_eq!(r.failure.is_none(), ![13, 29, 41].contains(&(i % 97)));
        }
    }
}
