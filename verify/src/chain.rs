//! Offline verification of receipt chains (`*.qchain`, §13.2–§13.3), from their bytes.

use quorate_protocol::chain::{ChainBreak, Pipeline, ReceiptChain, check_chain};
use quorate_protocol::tensor_file::RevealedTensor;
use serde_json::json;

use crate::TrustStore;

/// The file extension of a chain document.
pub const CHAIN_EXTENSION: &str = "qchain";

/// The verdict on one chain.
pub struct ChainReport {
    /// Where it came from (a file name).
    pub label: String,
    /// Job id (hex), when the document decoded.
    pub job_id: Option<String>,
    /// Per stage, the signers of its receipts (the linked one first), when the chain verified.
    pub signers: Vec<Vec<String>>,
    /// Tensors revealed and checked against the last stage's output commitments.
    pub tensors_checked: Vec<String>,
    /// What failed: unreadable, undecodable, or the first broken link.
    pub failure: Option<String>,
    /// The first broken link, when that is what failed.
    pub broken: Option<ChainBreak>,
}

/// Decodes and checks a chain (its bytes, or why they could not be read); `pipeline` (e.g.
/// from `stages.json`) is checked against the chain's own declaration; `reveals` are checked
/// against the pipeline's outputs.
pub fn verify_chain(
    label: &str,
    bytes: Result<Vec<u8>, String>,
    trust: &TrustStore,
    pipeline: Option<&Pipeline>,
    reveals: &[RevealedTensor],
) -> ChainReport {
    let mut report = ChainReport {
        label: label.to_string(),
        job_id: None,
        signers: Vec::new(),
        tensors_checked: Vec::new(),
        failure: None,
        broken: None,
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            report.failure = Some(e);
            return report;
        }
    };
    let chain = match ReceiptChain::from_cbor(&bytes) {
        Ok(c) => c,
        Err(e) => {
            report.failure = Some(format!("malformed chain: {e}"));
            return report;
        }
    };
    report.job_id = Some(hex::encode(chain.job_id));
    let lookup = |kid: &quorate_crypto::KeyId| trust.key(kid);
    match check_chain(&chain, pipeline, &lookup) {
        Err(b) => {
            report.failure = Some(b.to_string());
            report.broken = Some(b);
        }
        Ok(checked) => {
            report.signers = checked
                .stages
                .iter()
                .map(|s| s.iter().map(|r| trust.name(&r.kid)).collect())
                .collect();
            if let Some(last) = checked.last() {
                for r in reveals {
                    let name = r.tensor.name();
                    match last.payload.outputs.iter().find(|c| c.name == name) {
                        None => {
                            report.failure =
                                Some(format!("the pipeline has no output named {name:?}"));
                            break;
                        }
                        Some(c) if !c.matches(&r.tensor, r.salt.as_ref()) => {
                            report.failure = Some(format!(
                                "revealed {name:?} does not match the last stage's output commitment"
                            ));
                            break;
                        }
                        Some(_) => report.tensors_checked.push(name.to_string()),
                    }
                }
            }
        }
    }
    report
}

/// One human-readable line.
pub fn human_line(r: &ChainReport) -> String {
    match &r.failure {
        Some(f) => format!("FAIL {}: chain broken: {f}", r.label),
        None => {
            let stages: Vec<String> = r
                .signers
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{}:{}", i + 1, s.join("+")))
                .collect();
            let mut line = format!(
                "OK   {}: receipt chain of job {}, {} stages linked [{}]",
                r.label,
                r.job_id.as_deref().unwrap_or("?"),
                r.signers.len(),
                stages.join(" -> ")
            );
            if !r.tensors_checked.is_empty() {
                line.push_str(&format!(
                    "; revealed outputs match: {}",
                    r.tensors_checked.join(", ")
                ));
            }
            line
        }
    }
}

/// The JSON form, one entry of the report's `chains` list.
pub fn json_entry(r: &ChainReport) -> serde_json::Value {
    let mut o = json!({
        "path": r.label,
        "ok": r.failure.is_none(),
        "job_id": r.job_id,
        "stages": r.signers,
        "tensors_checked": r.tensors_checked,
    });
    if let Some(f) = &r.failure {
        o["reason"] = json!(f);
    }
    if let Some(b) = &r.broken {
        o["broken"] = json!({"stage": b.stage, "receipt": b.receipt, "error": b.kind.code()});
    }
    o
}
