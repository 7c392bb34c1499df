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

/// §18: an inclusion receipt carried in header 394 and a signed tree head check out in
/// Python from raw bytes (the RFC 9162 root recomputed by hand, the detached-payload
/// signature by `cryptography` and pycose), and tampered ones do not.
#[test]
fn tlog_inclusion_verifies_in_python() {
    let python = repo_root().join("third_party/venv-tests/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./scripts/setup-python-tests.sh (./scripts/test does it for you)",
        python.display()
    );
    let script = repo_root().join("tests/python/verify_tlog.py");
    let vectors = repo_root().join("spec/vectors/v1/tlog");
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vectors.join("inclusion_good.json")).unwrap())
            .unwrap();
    let run = |v: &serde_json::Value| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vector.json");
        std::fs::write(&path, v.to_string()).unwrap();
        Command::new(&python)
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap()
    };
    let py = run(&good);
    assert!(py.status.success(), "python rejected: {}", text(&py));
    let summary: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(summary["tree_size"], good["tree_size"]);
    assert_eq!(summary["leaf_index"], good["leaf_index"]);
    assert_eq!(summary["root"], good["root"]);

    // A flipped path hash: the recomputed root is not the signed one.
    let flipped: serde_json::Value = serde_json::from_slice(
        &std::fs::read(vectors.join("inclusion_bad_flipped_hash.json")).unwrap(),
    )
    .unwrap();
    let mut bad = good.clone();
    bad["receipt"] = flipped["receipt"].clone();
    let py = run(&bad);
    assert!(
        !py.status.success(),
        "python accepted a flipped path: {}",
        text(&py)
    );

    // A head whose signature no longer covers its bytes.
    let mut head = hex::decode(good["head"].as_str().unwrap()).unwrap();
    let n = head.len();
    head[n - 40] ^= 1;
    let mut bad = good.clone();
    bad["head"] = serde_json::json!(hex::encode(head));
    let py = run(&bad);
    assert!(
        !py.status.success(),
        "python accepted a tampered head: {}",
        text(&py)
    );
}
