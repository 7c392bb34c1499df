//! Local batches through the `quorate` binary (`quorate run --inputs DIR`, §5): a signing
//! key, a folder of distinct inputs for the bundled `mlp.onnx`, and the run itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::{parse_npy, to_npy};

use crate::{quorate, repo_root, text};

/// A fresh key pair under `dir`: the secret key's path and the public key's.
pub fn keygen(dir: &Path) -> (String, String) {
    let key = dir.join("node.key");
    let o = quorate(["keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let key = key.to_str().unwrap().to_string();
    (key.clone(), format!("{key}.pub"))
}

/// Writes `n` different patients (the bundled sample, shifted) as `patient-NN.npy` files (at
/// least two digits).
pub fn patients(dir: &Path, n: usize) {
    let sample = std::fs::read(repo_root().join("models/samples/features.npy")).unwrap();
    let base = parse_npy(&sample, "features").unwrap().to_f64_vec();
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let values: Vec<f32> = base.iter().map(|v| *v as f32 + i as f32 * 0.1).collect();
        let t = Tensor::from_f32("features", vec![1, 30], &values).unwrap();
        std::fs::write(dir.join(format!("patient-{i:02}.npy")), to_npy(&t)).unwrap();
    }
}

/// `quorate run` of `mlp.onnx` over the folder `inputs`, signed with `key`, written to `out`.
pub fn run_batch(inputs: &Path, key: &str, out: &Path) -> Output {
    quorate([
        "run",
        "--model",
        repo_root().join("models/mlp.onnx").to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--key",
        key,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Runs the independent Python verifier of batch receipts (pycose and `cryptography` for the
/// signed root, the RFC 9162 path walked by hand, `tests/python/verify_batch_receipt.py`)
/// over `receipts` under the PEM key `public`: its exit status and per-receipt summaries.
/// The environment is created by `scripts/setup-python-tests.sh` (run by `scripts/test`).
pub fn python_verify(public: &Path, receipts: &[PathBuf]) -> (bool, Vec<serde_json::Value>) {
    let python = repo_root().join("third_party/venv-tests/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./scripts/setup-python-tests.sh (./scripts/test does it for you)",
        python.display()
    );
    let o = Command::new(&python)
        .arg(repo_root().join("tests/python/verify_batch_receipt.py"))
        .arg(public)
        .args(receipts)
        .output()
        .unwrap();
    let summaries: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("python printed no summary ({e}): {}", text(&o)));
    (o.status.success(), summaries)
}
