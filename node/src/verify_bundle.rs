//! `quorate verify` on evidence bundles (§14.7): recognise them, re-check them offline, and
//! name the nodes they prove wrong.

use std::path::{Path, PathBuf};

use quorate_protocol::evidence::{self, BundleReport, MAX_BUNDLE_LEN};
use serde_json::json;

use crate::verify::TrustStore;

/// The verdict on one bundle file.
pub struct BundleFileReport {
    /// The file.
    pub path: PathBuf,
    /// What it proves, or why it is void.
    pub result: Result<BundleReport, String>,
}

impl BundleFileReport {
    /// Valid, and every accusation it makes is proven.
    pub fn ok(&self) -> bool {
        self.result.as_ref().is_ok_and(|r| r.unproven.is_empty())
    }
}

fn is_bundle_file(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "bundle") {
        return true;
    }
    use std::io::Read;
    let mut head = [0u8; 64];
    std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .is_ok_and(|n| evidence::looks_like_bundle(&head[..n]))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "bundle") {
            out.push(p);
        }
    }
    Ok(())
}

/// Splits the paths given to `quorate verify` into bundle files (given, or `*.bundle` under a
/// directory) and the rest (receipts, audit logs, directories).
pub fn split_paths(paths: &[PathBuf]) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut bundles = Vec::new();
    let mut rest = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut bundles)?;
            rest.push(p.clone());
        } else if p.is_file() && is_bundle_file(p) {
            bundles.push(p.clone());
        } else {
            rest.push(p.clone());
        }
    }
    Ok((bundles, rest))
}

/// Checks every bundle against the trusted node keys.
pub fn verify_bundles(files: &[PathBuf], trust: &TrustStore) -> Vec<BundleFileReport> {
    files
        .iter()
        .map(|path| {
            let result = crate::files::read_limited(path, MAX_BUNDLE_LEN as u64)
                .map_err(|e| format!("{e:#}"))
                .and_then(|bytes| {
                    evidence::check_bundle_bytes(&bytes, &|kid| trust.get(kid).map(|(k, _)| *k))
                        .map_err(|e| e.to_string())
                });
            BundleFileReport {
                path: path.clone(),
                result,
            }
        })
        .collect()
}

fn name(trust: &TrustStore, kid: &quorate_crypto::KeyId) -> String {
    trust
        .get(kid)
        .map_or_else(|| kid.to_string(), |(_, n)| n.clone())
}

/// Human-readable lines for one bundle.
pub fn human_lines(r: &BundleFileReport, trust: &TrustStore) -> Vec<String> {
    let path = r.path.display();
    match &r.result {
        Err(e) => vec![format!("FAIL {path}: invalid bundle, convicts nobody: {e}")],
        Ok(b) => {
            let names = |l: &[quorate_crypto::KeyId]| {
                l.iter()
                    .map(|k| name(trust, k))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut lines = vec![format!(
                "{} {path}: evidence bundle for job {}, {} signed replicas under policy {} (quorum {}), signatures and commitments verified",
                if r.ok() { "OK  " } else { "FAIL" },
                hex::encode(b.job_id),
                b.signers.len(),
                b.policy,
                b.quorum
            )];
            if b.convicted.is_empty() {
                lines.push("     proves no node wrong".into());
            }
            for k in &b.convicted {
                lines.push(format!(
                    "     PROVEN WRONG {} [{k}]: its signed outputs disagree with {} or more agreeing replicas",
                    name(trust, k),
                    b.quorum
                ));
            }
            if !b.unproven.is_empty() {
                lines.push(format!(
                    "     accusation NOT proven against: {}",
                    names(&b.unproven)
                ));
            }
            lines
        }
    }
}

/// The machine-readable form.
pub fn json_report(reports: &[BundleFileReport], trust: &TrustStore) -> serde_json::Value {
    let node = |k: &quorate_crypto::KeyId| json!({"kid": k.to_string(), "signer": name(trust, k)});
    let items: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| match &r.result {
            Err(e) => json!({"path": r.path.display().to_string(), "ok": false, "error": e, "convicted": []}),
            Ok(b) => json!({
                "path": r.path.display().to_string(),
                "ok": r.ok(),
                "job_id": hex::encode(b.job_id),
                "model_digest": hex::encode(b.model),
                "policy": b.policy,
                "quorum": b.quorum,
                "signers": b.signers.iter().map(node).collect::<Vec<_>>(),
                "convicted": b.convicted.iter().map(node).collect::<Vec<_>>(),
                "unproven": b.unproven.iter().map(node).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({"ok": !reports.is_empty() && reports.iter().all(BundleFileReport::ok), "bundles": items})
}
