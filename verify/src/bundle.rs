//! Evidence bundles (§14.7): re-check them offline from their bytes, and name the nodes
//! they prove wrong.

use quorate_protocol::evidence::{self, BundleReport};
use serde_json::json;

use crate::TrustStore;

/// The verdict on one bundle.
pub struct BundleFileReport {
    /// Where it came from (a file name).
    pub label: String,
    /// What it proves, or why it is void.
    pub result: Result<BundleReport, String>,
}

impl BundleFileReport {
    /// Valid, and every accusation it makes is proven.
    pub fn ok(&self) -> bool {
        self.result.as_ref().is_ok_and(|r| r.unproven.is_empty())
    }
}

/// Checks one bundle (its bytes, or why they could not be read) against the trusted keys.
pub fn verify_bundle(
    label: &str,
    bytes: Result<Vec<u8>, String>,
    trust: &TrustStore,
) -> BundleFileReport {
    let result = bytes.and_then(|bytes| {
        evidence::check_bundle_bytes(&bytes, &|kid| trust.key(kid), &trust.governance())
            .map_err(|e| e.to_string())
    });
    BundleFileReport {
        label: label.to_string(),
        result,
    }
}

/// Where the governance evidence is judged under comes from, for reports.
pub fn governance_source(trust: &TrustStore) -> &'static str {
    if trust.governance_from_roster() {
        "the roster's governance"
    } else {
        "no roster given: the default governance of §10.6 applies"
    }
}

/// Human-readable lines for one bundle.
pub fn human_lines(r: &BundleFileReport, trust: &TrustStore) -> Vec<String> {
    let path = &r.label;
    match &r.result {
        Err(e) => vec![format!("FAIL {path}: invalid bundle, convicts nobody: {e}")],
        Ok(b) => {
            let mut lines = vec![format!(
                "{} {path}: evidence bundle for job {}, {} signed replicas under policy {} (quorum {}), signatures and commitments verified",
                if r.ok() { "OK  " } else { "FAIL" },
                hex::encode(b.job_id),
                b.signers.len(),
                b.policy,
                b.quorum
            )];
            let g = &b.governance;
            lines.push(format!(
                "     governance ({}): {}",
                governance_source(trust),
                match (&g.refusal, g.scope) {
                    (Some(why), _) => format!("convicts nobody: {why}"),
                    (None, Some(scope)) => format!(
                        "policy granted with scope {}, min_quorum {}",
                        scope.name(),
                        g.min_quorum
                    ),
                    (None, None) => "policy not granted".to_string(),
                }
            ));
            if b.convicted.is_empty() {
                lines.push("     proves no node wrong".into());
            }
            for k in &b.convicted {
                lines.push(format!(
                    "     PROVEN WRONG {} [{k}]: its signed outputs disagree with {} or more agreeing replicas",
                    trust.name(k),
                    b.quorum
                ));
            }
            for u in &b.unproven {
                lines.push(format!(
                    "     accusation NOT proven against {} [{}]: {}",
                    trust.name(&u.kid),
                    u.kid,
                    u.reason
                ));
            }
            lines
        }
    }
}

/// The machine-readable form.
pub fn json_report(reports: &[BundleFileReport], trust: &TrustStore) -> serde_json::Value {
    let node = |k: &quorate_crypto::KeyId| json!({"kid": k.to_string(), "signer": trust.name(k)});
    let items: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| match &r.result {
            Err(e) => json!({"path": r.label, "ok": false, "error": e, "convicted": []}),
            Ok(b) => json!({
                "path": r.label,
                "ok": r.ok(),
                "job_id": hex::encode(b.job_id),
                "model_digest": hex::encode(b.model),
                "policy": b.policy,
                "quorum": b.quorum,
                "governance": {
                    "source": if trust.governance_from_roster() { "roster" } else { "default" },
                    "granted": b.governance.scope.is_some(),
                    "scope": b.governance.scope.map(|s| s.name()),
                    "min_quorum": b.governance.min_quorum,
                    "refusal": b.governance.refusal,
                },
                "signers": b.signers.iter().map(node).collect::<Vec<_>>(),
                "convicted": b.convicted.iter().map(node).collect::<Vec<_>>(),
                "unproven": b.unproven.iter().map(|u| json!({
                    "kid": u.kid.to_string(),
                    "signer": trust.name(&u.kid),
                    "code": u.code,
                    "reason": u.reason,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "ok": !reports.is_empty() && reports.iter().all(BundleFileReport::ok),
        "governance": if trust.governance_from_roster() { "roster" } else { "default" },
        "governance_note": governance_source(trust),
        "bundles": items,
    })
}

/// Whether bytes start like an evidence bundle (by its content type), so a verifier can tell
/// a bundle from a receipt without decoding it.
pub fn looks_like_bundle(head: &[u8]) -> bool {
    evidence::looks_like_bundle(head)
}
