//! Conformance: every file in `spec/vectors/v1/` is checked against the implementation,
//! through the same verification path `quorate verify` uses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_cli::verify_files::verify_files;
use quorate_crypto::{IdentityError, PublicKey};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_protocol::tensor_file;
use quorate_tests::{read_json, vector_files};
use quorate_verify::TrustStore;
use quorate_verify::receipts::failure_code;
use serde_json::Value;

fn check_receipt(v: &Value, name: &str) {
    let mut trust = TrustStore::default();
    for k in v["trusted_keys"].as_array().unwrap() {
        trust.add(
            PublicKey::from_bytes(&hex::decode(k.as_str().unwrap()).unwrap()).unwrap(),
            "vector key",
        );
    }
    let reveals = match v.get("reveal") {
        Some(r) => tensor_file::parse_json(r.to_string().as_bytes()).unwrap(),
        None => Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.cose");
    std::fs::write(&path, hex::decode(v["receipt"].as_str().unwrap()).unwrap()).unwrap();
    let report = verify_files(&[path], &trust, &reveals).remove(0);
    match v["expect"].as_str().unwrap() {
        "valid" => {
            assert!(report.failure.is_none(), "{name}: {:?}", report.failure);
            let p = report.receipt.unwrap().payload().clone();
            let want = &v["payload"];
            assert_eq!(hex::encode(p.job_id), want["job_id"], "{name}");
            assert_eq!(hex::encode(&p.nonce), want["nonce"], "{name}");
            assert_eq!(hex::encode(p.model_digest), want["model_digest"], "{name}");
            assert_eq!(p.kind.code(), want["kind"].as_u64().unwrap(), "{name}");
            assert_eq!(p.issued_at, want["issued_at"].as_u64().unwrap(), "{name}");
            assert_eq!(
                p.outputs.len(),
                want["outputs"].as_array().unwrap().len(),
                "{name}"
            );
            assert_eq!(report.tensors_checked.len(), reveals.len(), "{name}");
            // Every inclusion receipt the receipt carries in header 394 (in a batch
            // receipt's root, §18.1) was checked.
            let carried = quorate_protocol::tlog::inclusion_receipts_of(
                &hex::decode(v["receipt"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
            assert_eq!(report.logged.len(), carried.len(), "{name}");
        }
        _ => {
            let failure = report
                .failure
                .unwrap_or_else(|| panic!("{name}: a bad vector verified"));
            assert_eq!(failure_code(&failure), v["error"], "{name}: {failure}");
        }
    }
}

#[test]
fn every_vector_file_conforms() {
    let files = vector_files("v1");
    assert!(
        files.len() >= 20,
        "expected the v1 vectors, found {}",
        files.len()
    );
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v = read_json(&path);
        quorate_tests::check_vector_header(&name, &v);
        match v["type"].as_str().unwrap() {
            "keys" => {
                for k in v["keys"].as_array().unwrap() {
                    let seed: [u8; 32] = hex::decode(k["seed"].as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap();
                    let sk = quorate_crypto::SecretKey::from_seed(&seed);
                    assert_eq!(hex::encode(sk.public_key().to_bytes()), k["public_key"]);
                    assert_eq!(sk.public_key().key_id().to_string(), k["key_id"]);
                }
            }
            "weak_keys" => {
                for k in v["keys"].as_array().unwrap() {
                    let bytes = hex::decode(k.as_str().unwrap()).unwrap();
                    assert_eq!(
                        PublicKey::from_bytes(&bytes),
                        Err(IdentityError::WeakKey),
                        "{name}: {k} accepted"
                    );
                }
            }
            "tensor_digests" => {
                for c in v["cases"].as_array().unwrap() {
                    let dtype = DType::from_name(c["dtype"].as_str().unwrap()).unwrap();
                    let shape: Vec<u64> = c["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap())
                        .collect();
                    let t = Tensor::new(
                        "t",
                        dtype,
                        shape,
                        hex::decode(c["data"].as_str().unwrap()).unwrap(),
                    )
                    .unwrap();
                    let salt: Option<[u8; 32]> = c["salt"]
                        .as_str()
                        .map(|s| hex::decode(s).unwrap().try_into().unwrap());
                    assert_eq!(hex::encode(t.digest(salt.as_ref())), c["digest"], "{name}");
                }
            }
            "receipt" => check_receipt(&v, &name),
            other => panic!("{name}: unknown vector type {other}"),
        }
    }
}
