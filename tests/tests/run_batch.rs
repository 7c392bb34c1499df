//! `quorate run --inputs DIR` (§5): one job per input file, signed under one batch root;
//! every receipt verifies alone with `quorate verify`, its revealed output matches its
//! commitment, and a receipt moved to another job's output, or altered, fails. Bad folders
//! are refused before anything is signed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::to_npy;
use std::time::{Duration, Instant};

use quorate_tests::batch::{keygen, patients, run_batch};
use quorate_tests::{quorate, quorate_bin, repo_root, text};

#[test]
fn every_batch_receipt_verifies_alone_and_binds_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let inputs = dir.path().join("patients");
    patients(&inputs, 5);
    let out = dir.path().join("out");
    let o = run_batch(&inputs, &key, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ran       5 jobs"), "{}", text(&o));

    // All five at once, then each alone with its revealed output.
    let o = quorate([
        "verify",
        out.join("receipts").to_str().unwrap(),
        "--trust",
        &public,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("5 of 5 receipts verified"),
        "{}",
        text(&o)
    );
    for i in [0, 4] {
        let receipt = out.join(format!("receipts/patient-{i:02}.cose"));
        let output = out.join(format!("outputs/patient-{i:02}.json"));
        let o = quorate([
            "verify",
            receipt.to_str().unwrap(),
            "--trust",
            &public,
            "--tensor",
            &format!("probabilities={}", output.display()),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        // A batch receipt starts with an array of five (§5.4), not a COSE tag.
        assert_eq!(std::fs::read(&receipt).unwrap()[0], 0x85);
    }
    // Another job's output does not match this receipt's commitment.
    let o = quorate([
        "verify",
        out.join("receipts/patient-00.cose").to_str().unwrap(),
        "--trust",
        &public,
        "--tensor",
        &format!(
            "probabilities={}",
            out.join("outputs/patient-01.json").display()
        ),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("does not match"), "{}", text(&o));
    // One flipped byte in the leaf payload breaks its inclusion proof.
    let path = out.join("receipts/patient-02.cose");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let o = quorate(["verify", path.to_str().unwrap(), "--trust", &public]);
    assert!(!o.status.success(), "{}", text(&o));
    // The inputs (with their salts) are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("inputs/patient-03.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A folder long enough for the batch's commitments to be made on a second thread: every
/// receipt still verifies and binds its own output, in the order of the files.
#[test]
fn a_batch_committed_on_two_threads_binds_each_output_to_its_own_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let inputs = dir.path().join("patients");
    patients(&inputs, 90);
    let out = dir.path().join("out");
    let o = run_batch(&inputs, &key, &out);
    assert!(o.status.success(), "{}", text(&o));
    let o = quorate([
        "verify",
        out.join("receipts").to_str().unwrap(),
        "--trust",
        &public,
    ]);
    assert!(
        text(&o).contains("90 of 90 receipts verified"),
        "{}",
        text(&o)
    );
    for (receipt, output, binds) in [
        (0, 0, true),
        (70, 70, true),
        (89, 89, true),
        (70, 71, false),
    ] {
        let o = quorate([
            "verify",
            out.join(format!("receipts/patient-{receipt:02}.cose"))
                .to_str()
                .unwrap(),
            "--trust",
            &public,
            "--tensor",
            &format!(
                "probabilities={}",
                out.join(format!("outputs/patient-{output:02}.json"))
                    .display()
            ),
        ]);
        assert_eq!(o.status.success(), binds, "{}", text(&o));
    }
}

/// A `quorate run --inputs` killed (`kill -9`) while it writes its results leaves every file
/// whole or absent, and a receipt only beside its job's complete outputs and inputs: the
/// receipts of a group are written after the group's other files (§12.6.1).
#[test]
fn a_batch_killed_while_writing_leaves_receipts_only_beside_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let inputs = dir.path().join("patients");
    patients(&inputs, 3000);
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(quorate_bin())
        .args(["run", "--model"])
        .arg(repo_root().join("models/mlp.onnx"))
        .arg("--inputs")
        .arg(&inputs)
        .args(["--key", &key, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the first receipt is in place: 3,000 jobs' files take seconds to write.
    let receipts = out.join("receipts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let cut_short = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        let placed = |d: std::fs::ReadDir| {
            d.flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
        };
        if std::fs::read_dir(&receipts).is_ok_and(placed) {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        assert!(Instant::now() < deadline, "no receipt within two minutes");
        std::thread::sleep(Duration::from_millis(2));
    };
    let finished = |sub: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(out.join(sub))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let kept = finished("receipts");
    eprintln!(
        "{} of 3000 receipts in place when the run {}",
        kept.len(),
        if cut_short { "was killed" } else { "ended" }
    );
    assert!(!kept.is_empty());
    // No file in place is torn: every outputs and inputs file parses as tensors.
    for sub in ["outputs", "inputs"] {
        for name in finished(sub) {
            let path = out.join(sub).join(&name);
            let bytes = std::fs::read(&path).unwrap();
            quorate_protocol::tensor_file::parse_any(&bytes, "features")
                .unwrap_or_else(|e| panic!("{} is torn: {e}", path.display()));
        }
    }
    // Every receipt in place has its job's outputs and inputs beside it, and verifies.
    let outputs = finished("outputs");
    let inputs_kept = finished("inputs");
    for receipt in &kept {
        let job = receipt.strip_suffix(".cose").unwrap();
        let json = format!("{job}.json");
        assert!(
            outputs.contains(&json) && inputs_kept.contains(&json),
            "{receipt} without its outputs and inputs"
        );
    }
    let o = quorate(["verify", receipts.to_str().unwrap(), "--trust", &public]);
    let n = kept.len();
    assert!(
        text(&o).contains(&format!("{n} of {n} receipts verified")),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_folders_are_refused_before_anything_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.path().join("out");
    let o = run_batch(&empty, &key, &out);
    assert!(!o.status.success());
    assert!(text(&o).contains("holds no input files"), "{}", text(&o));

    let mixed = dir.path().join("mixed");
    patients(&mixed, 3);
    std::fs::write(mixed.join("patient-01.json"), b"[]").unwrap();
    let o = run_batch(&mixed, &key, &out);
    assert!(!o.status.success());
    assert!(text(&o).contains("named \"patient-01\""), "{}", text(&o));

    let wrong = dir.path().join("wrong");
    patients(&wrong, 2);
    let t = Tensor::from_f32("features", vec![1, 3], &[1.0, 2.0, 3.0]).unwrap();
    std::fs::write(wrong.join("short.npy"), to_npy(&t)).unwrap();
    let o = run_batch(&wrong, &key, &out);
    assert!(!o.status.success());
    assert!(text(&o).contains("short.npy"), "{}", text(&o));
    assert!(!out.join("receipts").exists(), "nothing may be written");
}
