//! Every batch receipt of `quorate run --inputs` (§5.3) verifies alone with independent,
//! non-Rust code: pycose and `cryptography` for the signed root, the RFC 9162 path walked by
//! hand in Python. A receipt whose path, index, leaf or root signature was altered does not.
//! The Python environment is created by `scripts/setup-python-tests.sh` (run by `scripts/test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use ciborium::value::Value;
use quorate_tests::batch::{keygen, patients, python_verify, run_batch};
use quorate_tests::{quorate, text};

/// The five parts of a batch receipt, `[1, leaf, index, path, root]`.
fn parts(bytes: &[u8]) -> Vec<Value> {
    match ciborium::de::from_reader(bytes).unwrap() {
        Value::Array(a) if a.len() == 5 => a,
        v => panic!("not a batch receipt: {v:?}"),
    }
}

fn encode(parts: Vec<Value>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&Value::Array(parts), &mut out).unwrap();
    out
}

#[test]
fn batch_receipts_verify_alone_in_python_and_altered_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let public = PathBuf::from(public);
    // Enough inputs for the batch to be committed on two threads, and a size that is not a
    // power of two, so that paths differ in length.
    let n = 90;
    let inputs = dir.path().join("in");
    patients(&inputs, n);
    let out = dir.path().join("out");
    let o = run_batch(&inputs, &key, &out);
    assert!(o.status.success(), "{}", text(&o));
    let receipts: Vec<PathBuf> = (0..n)
        .map(|i| out.join(format!("receipts/patient-{i:02}.cose")))
        .collect();

    let (ok, summaries) = python_verify(&public, &receipts);
    assert!(ok, "python rejected a batch receipt: {summaries:?}");
    assert_eq!(summaries.len(), n);
    let mut indices: Vec<u64> = summaries
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..n as u64).collect::<Vec<_>>());
    assert!(
        summaries
            .iter()
            .all(|s| s["size"] == n && s["root"] == summaries[0]["root"])
    );
    // Python read the same payloads quorate signed.
    for (s, path) in summaries.iter().zip(&receipts) {
        let parsed =
            quorate_protocol::batch_receipt::parse_any(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(s["job_id"], hex::encode(parsed.payload().job_id));
        assert_eq!(
            s["outputs"][0][1],
            hex::encode(parsed.payload().outputs[0].digest)
        );
    }

    // Each alteration, applied to a copy of one receipt, is refused.
    let original = std::fs::read(&receipts[37]).unwrap();
    let other = parts(&std::fs::read(&receipts[38]).unwrap());
    let alter = |f: &dyn Fn(&mut Vec<Value>)| {
        let mut p = parts(&original);
        f(&mut p);
        encode(p)
    };
    let walk = "does not lead to the signed root";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "a flipped path hash",
            walk,
            alter(&|p| {
                if let Value::Array(path) = &mut p[3]
                    && let Some(Value::Bytes(h)) = path.first_mut()
                {
                    h[5] ^= 1;
                }
            }),
        ),
        (
            "another index",
            walk,
            alter(&|p| p[2] = Value::Integer(38.into())),
        ),
        (
            "another job's leaf",
            walk,
            alter(&|p| p[1] = other[1].clone()),
        ),
        (
            "a path one hash short",
            "path too short",
            alter(&|p| {
                if let Value::Array(path) = &mut p[3] {
                    path.pop();
                }
            }),
        ),
        (
            "a root whose signature does not cover it",
            "bad signature",
            alter(&|p| {
                if let Value::Bytes(root) = &mut p[4] {
                    let n = root.len();
                    root[n - 10] ^= 1;
                }
            }),
        ),
    ];
    for (what, why, bytes) in cases {
        let path = dir.path().join("altered.cose");
        std::fs::write(&path, &bytes).unwrap();
        let (ok, summaries) = python_verify(&public, std::slice::from_ref(&path));
        assert!(!ok, "python accepted {what}: {summaries:?}");
        assert_eq!(summaries[0]["ok"], false, "{what}");
        let error = summaries[0]["error"].as_str().unwrap();
        assert!(error.contains(why), "{what}: {error}");
        // quorate refuses it too.
        let o = quorate([
            "verify",
            path.to_str().unwrap(),
            "--trust",
            public.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "quorate accepted {what}: {}", text(&o));
    }
}
