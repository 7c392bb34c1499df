//! Offline verification of aggregate receipts (§15.5): the aggregator's signature, then a
//! replay of the transcript beside it and a check of the member receipts under `members/`.

use std::path::{Path, PathBuf};

use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::ensemble::{
    MAX_AGGREGATE_LEN, MAX_TRANSCRIPT_LEN, is_aggregate, parse_aggregate,
};
use quorate_protocol::ensemble_audit::audit;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;

/// Splits receipt files into aggregate receipts and the rest.
pub fn split_aggregates(files: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    files.into_iter().partition(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.len() <= MAX_AGGREGATE_LEN as u64)
            && std::fs::read(p).is_ok_and(|b| is_aggregate(&b))
    })
}

fn read_capped(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > limit as u64 {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Verifies one aggregate receipt; `lookup` finds a trusted aggregator key by id. Returns
/// the human summary or the reason it fails.
pub fn verify_aggregate(
    path: &Path,
    lookup: &dyn Fn(&KeyId) -> Option<(PublicKey, String)>,
) -> Result<String, String> {
    let bytes = read_capped(path, MAX_AGGREGATE_LEN)?;
    let agg = parse_aggregate(&bytes).map_err(|e| format!("malformed: {}", e.0))?;
    let (key, signer) = lookup(&agg.sign1.kid)
        .ok_or_else(|| format!("unknown aggregator key {}", agg.sign1.kid))?;
    agg.sign1
        .verify(&key)
        .map_err(|_| format!("bad signature: not signed by {signer}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let transcript = read_capped(&dir.join("transcript.cbor"), MAX_TRANSCRIPT_LEN)?;
    let mut members = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("members")) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "cose") {
                members.push(read_capped(&p, MAX_RECEIPT_LEN)?);
            }
        }
    }
    let report = audit(&agg.payload, &transcript, &members).map_err(|e| e.to_string())?;
    let p = &agg.payload;
    let eps = p
        .epsilon_achieved_micro
        .map(|e| format!(", dp ε={:.4} achieved", e as f64 / 1e6))
        .unwrap_or_default();
    Ok(format!(
        "ensemble job {} by {signer}: {} mode, contributors {:?}, dropped {:?}; transcript replayed ({} messages) gives the signed sum; {} member receipts match{eps}",
        hex::encode(p.job_id),
        p.params.mode.name(),
        report.contributors,
        report.dropped,
        report.messages,
        report.contributors.len(),
    ))
}
