//! A quorate receipt verifies with independent, non-Rust COSE implementations (pycose, and a
//! hand-built RFC 9052 Sig_structure checked by `cryptography`), and a tampered one does not.
//! The Python environment is created by `scripts/setup-python-tests.sh` (run by `scripts/test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use quorate_tests::{quorate, repo_root, text};

#[test]
fn receipt_verifies_in_python() {
    let python = repo_root().join("third_party/venv-tests/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./scripts/setup-python-tests.sh (./scripts/test does it for you)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    assert!(
        quorate(["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let out = dir.path().join("out");
    let o = quorate([
        "run",
        "--model",
        repo_root().join("models/mlp.onnx").to_str().unwrap(),
        "--input",
        repo_root()
            .join("models/samples/features.npy")
            .to_str()
            .unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let receipt = out.join("receipt.cose");
    let script = repo_root().join("tests/python/verify_receipt.py");
    let pubkey = format!("{}.pub", key.display());

    let py = Command::new(&python)
        .arg(&script)
        .arg(&receipt)
        .arg(&pubkey)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "python rejected a good receipt: {}",
        text(&py)
    );
    let summary: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let ours = quorate_protocol::receipt::parse(&std::fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(summary["job_id"], hex::encode(ours.payload.job_id));
    assert_eq!(
        summary["model_digest"],
        hex::encode(ours.payload.model_digest)
    );
    assert_eq!(summary["kid"], ours.kid().to_string());
    assert_eq!(
        summary["content_type"],
        "application/vnd.quorate.receipt+cbor"
    );

    let mut bytes = std::fs::read(&receipt).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&receipt, &bytes).unwrap();
    let py = Command::new(&python)
        .arg(&script)
        .arg(&receipt)
        .arg(&pubkey)
        .output()
        .unwrap();
    assert!(
        !py.status.success(),
        "python accepted a tampered receipt: {}",
        text(&py)
    );
}
