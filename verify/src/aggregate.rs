//! Offline verification of aggregate receipts (§15.5): the aggregator's signature, then a
//! replay of the transcript kept beside it and a check of the member receipts.

use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::ensemble::{MAX_AGGREGATE_LEN, MAX_TRANSCRIPT_LEN, parse_aggregate};
use quorate_protocol::ensemble_audit::audit;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;

/// Whether bytes are an aggregate receipt (by its content type).
pub use quorate_protocol::ensemble::is_aggregate;

/// Verifies one aggregate receipt with the transcript and member receipts kept beside it;
/// `lookup` finds a trusted aggregator key by id. Returns the human summary or the reason it
/// fails.
pub fn verify_aggregate(
    aggregate: &[u8],
    transcript: &[u8],
    members: &[Vec<u8>],
    lookup: &dyn Fn(&KeyId) -> Option<(PublicKey, String)>,
) -> Result<String, String> {
    if aggregate.len() > MAX_AGGREGATE_LEN {
        return Err(format!("larger than {MAX_AGGREGATE_LEN} bytes"));
    }
    if transcript.len() > MAX_TRANSCRIPT_LEN {
        return Err(format!("transcript larger than {MAX_TRANSCRIPT_LEN} bytes"));
    }
    if let Some(m) = members.iter().find(|m| m.len() > MAX_RECEIPT_LEN) {
        return Err(format!(
            "a member receipt of {} bytes is larger than {MAX_RECEIPT_LEN} bytes",
            m.len()
        ));
    }
    let agg = parse_aggregate(aggregate).map_err(|e| format!("malformed: {}", e.0))?;
    let (key, signer) = lookup(&agg.sign1.kid)
        .ok_or_else(|| format!("unknown aggregator key {}", agg.sign1.kid))?;
    agg.sign1
        .verify(&key)
        .map_err(|_| format!("bad signature: not signed by {signer}"))?;
    let report = audit(&agg.payload, transcript, members).map_err(|e| e.to_string())?;
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
