//! `quorate keygen`, `run` and `verify` as a user runs them, on the bundled models with the
//! real ONNX Runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use quorate_tests::{quorate, read_json, repo_root, text};

fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(name);
    let o = quorate(["keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    key
}

fn run_model(model: &str, input: &str, key: &Path, out: &Path) -> std::process::Output {
    let root = repo_root();
    quorate([
        "run",
        "--model",
        root.join("models").join(model).to_str().unwrap(),
        "--input",
        root.join("models/samples").join(input).to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn pub_of(key: &Path) -> String {
    format!("{}.pub", key.display())
}

#[test]
fn keygen_writes_private_key_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "node.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(Path::new(&pub_of(&key)).is_file());
    let before = std::fs::read(&key).unwrap();
    let again = quorate(["keygen", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "refused keygen must not touch the key"
    );
    let forced = quorate(["keygen", "--out", key.to_str().unwrap(), "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn run_matches_reference_outputs_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "node.key");
    let expected = read_json(&repo_root().join("models/samples/expected.json"));
    for (model, input) in [
        ("mlp.onnx", "features.npy"),
        ("logistic.onnx", "features.json"),
        ("hospital-3.onnx", "features.npy"),
    ] {
        let out = dir.path().join(model);
        let o = run_model(model, input, &key, &out);
        assert!(o.status.success(), "{model}: {}", text(&o));
        let outputs = read_json(&out.join("outputs.json"));
        let got: Vec<f32> = outputs["tensors"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want: Vec<f32> = expected[model][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            got, want,
            "{model}: Rust ORT output differs from the Python reference"
        );

        let receipt = out.join("receipt.cose");
        let v = quorate([
            "verify",
            receipt.to_str().unwrap(),
            "--trust",
            &pub_of(&key),
            "--tensor",
            &format!("probabilities={}", out.join("outputs.json").display()),
            "--tensor",
            &format!("features={}", out.join("inputs.json").display()),
        ]);
        assert!(v.status.success(), "{}", text(&v));
        assert!(
            text(&v).contains("revealed tensors match: probabilities, features"),
            "{}",
            text(&v)
        );
    }
}

#[test]
fn verify_names_the_reason_for_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "node.key");
    let other = keygen(dir.path(), "other.key");
    let out = dir.path().join("out");
    assert!(
        run_model("mlp.onnx", "features.npy", &key, &out)
            .status
            .success()
    );
    let receipt = out.join("receipt.cose");
    let bytes = std::fs::read(&receipt).unwrap();

    let verify_json = |path: &Path, trust: &Path, extra: &[String]| {
        let mut args = vec![
            "verify".to_string(),
            path.display().to_string(),
            "--trust".into(),
            pub_of(trust),
            "--json".into(),
        ];
        args.extend_from_slice(extra);
        let o = quorate(&args);
        let report: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
        (o.status.code(), report)
    };

    let (code, report) = verify_json(&receipt, &other, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(report["receipts"][0]["error"], "unknown_key");

    // Every byte flip, anywhere in the receipt, fails with a reason.
    let flipped = dir.path().join("flipped.cose");
    for i in (0..bytes.len()).step_by(3) {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        std::fs::write(&flipped, &t).unwrap();
        let (code, report) = verify_json(&flipped, &key, &[]);
        assert_eq!(code, Some(1), "flip at byte {i} verified");
        let err = report["receipts"][0]["error"].as_str().unwrap().to_string();
        assert!(
            ["malformed", "bad_signature", "unknown_key"].contains(&err.as_str()),
            "byte {i}: {err}"
        );
    }

    // A revealed tensor that differs from the committed one.
    let outputs_path = out.join("outputs.json");
    let mut outputs = read_json(&outputs_path);
    outputs["tensors"][0]["data"][0] = serde_json::json!(0.5);
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, outputs.to_string()).unwrap();
    let (code, report) = verify_json(
        &receipt,
        &key,
        &[
            "--tensor".into(),
            format!("probabilities={}", forged.display()),
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(report["receipts"][0]["error"], "tensor_mismatch");

    // Good and bad together: exit 1, the good one still reported OK.
    std::fs::write(&flipped, [&bytes[..], &[0u8]].concat()).unwrap();
    let o = quorate([
        "verify",
        receipt.to_str().unwrap(),
        flipped.to_str().unwrap(),
        "--trust",
        &pub_of(&key),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("OK   ") && t.contains("FAIL ") && t.contains("trailing bytes"),
        "{t}"
    );
}

#[test]
fn bad_inputs_and_keys_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "node.key");
    let root = repo_root();
    let bad_shape = dir.path().join("bad.json");
    std::fs::write(
        &bad_shape,
        r#"{"tensors":[{"name":"features","dtype":"float32","shape":[1,3],"data":[1,2,3]}]}"#,
    )
    .unwrap();
    let wrong_name = dir.path().join("name.json");
    std::fs::write(&wrong_name, r#"{"tensors":[{"name":"x","dtype":"float32","shape":[1,30],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]}]}"#).unwrap();
    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY\x01\x00\xff\xffgarbage").unwrap();
    let cases = [
        (bad_shape, "does not fit features float32[?, 30]"),
        (wrong_name, "missing input \"features\""),
        (garbage, "not a valid .npy file"),
    ];
    for (input, message) in cases {
        let o = quorate([
            "run",
            "--model",
            root.join("models/mlp.onnx").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains(message),
            "expected {message:?} in {}",
            text(&o)
        );
        assert!(
            !dir.path().join("o/receipt.cose").exists(),
            "no receipt for a refused input"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_model("mlp.onnx", "features.npy", &key, &dir.path().join("o"));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("readable by other users"), "{}", text(&o));
}

#[test]
fn demo_runs_a_mesh_and_its_kept_receipts_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let o = quorate(["demo", "--nodes", "3", "--keep", keep.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("refused:"), "{t}");
    assert!(t.contains("verified offline: ensemble job"), "{t}");
    // Later demo steps add jobs, so only the receipts of step 3 have a fixed count.
    assert!(t.contains("audit-log records, 0 failures"), "{t}");
    // The verified job (§14): the poisoned last node caught, its bundle kept and verified.
    assert!(t.contains("CAUGHT node-3"), "{t}");
    // The log monitor (§18.13) kept every node's head and saw each log only grow.
    assert!(
        t.contains("3a. a log monitor keeps every node's signed tree head"),
        "{t}"
    );
    assert!(t.contains("append-only node-1"), "{t}");
    assert!(t.contains("0 problems, 0 evidence bundles"), "{t}");
    let m = quorate([
        "verify",
        keep.join("monitor").to_str().unwrap(),
        "--roster",
        keep.join("roster.cose").to_str().unwrap(),
        "--admin",
        keep.join("admin.pub").to_str().unwrap(),
    ]);
    let mt = text(&m);
    assert!(m.status.success(), "{mt}");
    assert!(mt.contains("signed tree head of node-1"), "{mt}");
    assert!(mt.contains("consistency receipt of node-1"), "{mt}");
    let bundles: Vec<_> = std::fs::read_dir(keep.join("evidence")).unwrap().collect();
    assert_eq!(bundles.len(), 1, "{t}");
    let b = quorate([
        "verify",
        keep.join("evidence").to_str().unwrap(),
        "--roster",
        keep.join("roster.cose").to_str().unwrap(),
        "--admin",
        keep.join("admin.pub").to_str().unwrap(),
        "--json",
    ]);
    assert!(b.status.success(), "{}", text(&b));
    let j: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(j["bundles"][0]["convicted"][0]["signer"], "node-3", "{j}");
    let v = quorate([
        "verify",
        keep.join("receipts").to_str().unwrap(),
        "--roster",
        keep.join("roster.cose").to_str().unwrap(),
        "--admin",
        keep.join("admin.pub").to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    // Receipts returned by the mesh carry their node's inclusion receipt (§18.11.3).
    assert!(
        text(&v).contains("mlp-node-1.cose") && text(&v).contains("in the signer's log: leaf"),
        "{}",
        text(&v)
    );
    // 3 mlp jobs, 2 ensemble members (the third is killed mid-round), the ensemble's
    // aggregate receipt, and whatever the later steps add: every one verifies.
    let line = text(&v)
        .lines()
        .find(|l| l.ends_with("receipts verified"))
        .unwrap()
        .to_string();
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        nums.len() == 2 && nums[0] == nums[1] && nums[1] >= 6,
        "{line}"
    );
}
