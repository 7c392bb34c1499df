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

/// `mlp.onnx` served from `dir/models` on the CPU (the models, and the loaded model), and an
/// audit log at `dir/audit.qlog`: what a node's services are built on.
pub(crate) fn mlp_served(
    dir: &std::path::Path,
) -> (
    std::sync::Arc<crate::mesh::models::Models>,
    std::sync::Arc<quorate_runtime::LoadedModel>,
    crate::audit::AuditLog,
) {
    let models_dir = dir.join("models");
    std::fs::create_dir_all(&models_dir).unwrap();
    let mlp = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mlp.onnx");
    std::fs::copy(mlp, models_dir.join("mlp.onnx")).unwrap();
    let models = std::sync::Arc::new(
        crate::mesh::models::Models::load(
            &models_dir,
            "test",
            1,
            &[quorate_runtime::providers::Provider::Cpu],
        )
        .unwrap(),
    );
    let digest = models.providers().next().unwrap().0;
    let model = models.onnx(&digest).unwrap();
    let (audit, _) = crate::audit::AuditLog::open(&dir.join("audit.qlog")).unwrap();
    (models, model, audit)
}
