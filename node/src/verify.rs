//! Offline verification of receipt files (§6): strict parsing, key lookup, signatures in
//! one batch (results identical to one-by-one), and revealed tensors against commitments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use quorate_crypto::batch::{Item, verify_all};
use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::batch_receipt::{self, AnyReceipt};
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::tensor_file::RevealedTensor;
use serde_json::json;

use crate::audit;

/// Why one receipt file failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The file could not be read.
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
}

/// The verdict on one file.
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Parsed receipt, when parsing succeeded.
    pub receipt: Option<AnyReceipt>,
    /// Name of the signer, when known.
    pub signer: Option<String>,
    /// The first failure, or `None` when everything verified.
    pub failure: Option<Failure>,
    /// Tensors checked against commitments.
    pub tensors_checked: Vec<String>,
}

/// Trusted keys, with a display name each.
#[derive(Default)]
pub struct TrustStore {
    keys: HashMap<KeyId, (PublicKey, String)>,
}

impl TrustStore {
    /// Adds a key under a name.
    pub fn add(&mut self, key: PublicKey, name: impl Into<String>) {
        self.keys.insert(key.key_id(), (key, name.into()));
    }
    /// Looks a key up by id.
    pub fn get(&self, kid: &KeyId) -> Option<&(PublicKey, String)> {
        self.keys.get(kid)
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Expands directories into the receipt files (`*.cose`) and audit logs (`*.qlog`) below them, sorted.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "cose" || e == "qlog" || e == "qchain")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Verifies every file; the signatures of all parsed receipts are checked in one batch.
/// Audit logs (§12.4) count as one receipt per record, labelled `FILE#N`.
pub fn verify_files(
    files: &[PathBuf],
    trust: &TrustStore,
    reveals: &[RevealedTensor],
) -> Vec<FileReport> {
    let mut reports: Vec<FileReport> = files
        .iter()
        .flat_map(read_sources)
        .map(|(path, bytes)| {
            let parsed = bytes.and_then(|b| {
                batch_receipt::parse_any(&b).map_err(|e| Failure::Malformed(e.to_string()))
            });
            let (receipt, failure) = match parsed {
                Ok(r) => (Some(r), None),
                Err(f) => (None, Some(f)),
            };
            FileReport {
                path,
                receipt,
                signer: None,
                failure,
                tensors_checked: Vec::new(),
            }
        })
        .collect();

    // Key lookup, then one batch over all signatures still to check.
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
    let results = verify_all(&items);
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

/// The receipts a file holds: itself, or every record of an audit log.
fn read_sources(path: &PathBuf) -> Vec<(PathBuf, Result<Vec<u8>, Failure>)> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return vec![(path.clone(), Err(Failure::Io(e.to_string())))],
    };
    let limit = if path.extension().is_some_and(|e| e == "qlog") {
        MAX_AUDIT_LOG_LEN
    } else {
        MAX_RECEIPT_LEN as u64
    };
    if meta.len() > limit {
        return vec![(
            path.clone(),
            Err(Failure::Malformed(format!(
                "{} bytes, larger than the limit of {limit}",
                meta.len()
            ))),
        )];
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return vec![(path.clone(), Err(Failure::Io(e.to_string())))],
    };
    if !audit::is_audit_log(&bytes) {
        return vec![(path.clone(), Ok(bytes))];
    }
    let label = |i: &dyn std::fmt::Display| PathBuf::from(format!("{}#{i}", path.display()));
    match audit::scan(&bytes) {
        Err(e) => vec![(path.clone(), Err(Failure::Malformed(e.to_string())))],
        Ok(scan) => {
            let mut out: Vec<_> = scan
                .records
                .into_iter()
                .enumerate()
                .map(|(i, r)| (label(&i), Ok(r)))
                .collect();
            if scan.torn_bytes > 0 {
                out.push((
                    label(&"tail"),
                    Err(Failure::Malformed(format!(
                        "torn tail of {} bytes",
                        scan.torn_bytes
                    ))),
                ));
            }
            out
        }
    }
}

/// Largest audit log `quorate verify` reads.
pub const MAX_AUDIT_LOG_LEN: u64 = 1 << 30;

/// One human-readable line per report.
pub fn human_line(r: &FileReport) -> String {
    let path = r.path.display();
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
            line
        }
        (None, None) => format!("FAIL {path}: no receipt"),
    }
}

/// The machine-readable form (§6.3).
pub fn json_report(reports: &[FileReport]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut o = json!({
                "path": r.path.display().to_string(),
                "ok": r.failure.is_none(),
            });
            if let Some(f) = &r.failure {
                o["error"] = json!(failure_code(f));
                o["reason"] = json!(f.to_string());
            }
            if let Some(receipt) = &r.receipt {
                let p = receipt.payload();
                o["form"] = json!(if matches!(receipt, AnyReceipt::Batch(_)) { "batch" } else { "single" });
                o["kid"] = json!(receipt.kid().to_string());
                o["signer"] = json!(r.signer);
                o["kind"] = json!(p.kind.name());
                o["job_id"] = json!(hex::encode(p.job_id));
                o["model_digest"] = json!(hex::encode(p.model_digest));
                o["issued_at"] = json!(p.issued_at);
                o["provider"] = json!(p.provider);
                o["runtime"] = json!(p.runtime);
                o["outputs"] = json!(p.outputs.iter().map(|c| json!({"name": c.name, "digest": hex::encode(c.digest), "salted": c.salted})).collect::<Vec<_>>());
                o["tensors_checked"] = json!(r.tensors_checked);
            }
            o
        })
        .collect();
    json!({ "ok": reports.iter().all(|r| r.failure.is_none()) && !reports.is_empty(), "receipts": items })
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
