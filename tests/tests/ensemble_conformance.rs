//! Loads `spec/vectors/v1/ensemble/` and checks each file against the implementation (§15).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_crypto::PublicKey;
use quorate_protocol::cbor;
use quorate_protocol::ensemble::{EnsembleParams, Mode, parse_aggregate};
use quorate_protocol::ensemble_audit::{AuditError, audit};
use quorate_protocol::ensemble_dp;
use quorate_protocol::messages::{Request, Response};
use quorate_tests::{check_vector_header, read_json, vector_files};
use serde_json::Value;

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn check_params(v: &Value) -> bool {
    let Ok(value) = cbor::decode_deterministic(&bytes(&v["cbor"]), 1 << 20) else {
        return false;
    };
    match EnsembleParams::from_value(&value) {
        Err(_) => false,
        Ok(p) => {
            assert_eq!(hex::encode(p.digest()), v["digest"].as_str().unwrap());
            assert_eq!(
                hex::encode(p.round_config().digest()),
                v["round_digest"].as_str().unwrap()
            );
            assert_eq!(
                u64::from(p.modulus_bits),
                v["modulus_bits"].as_u64().unwrap()
            );
            assert_eq!(p.max_input().unwrap(), v["max_input"].as_u64().unwrap());
            true
        }
    }
}

fn check_messages(v: &Value) -> bool {
    if let Some(r) = v.get("request") {
        return Request::decode(&bytes(r)).is_ok();
    }
    for r in v["requests"].as_array().unwrap() {
        let b = bytes(r);
        let m = Request::decode(&b).unwrap();
        assert_eq!(m.encode().unwrap(), b, "re-encoding is identical");
    }
    for r in v["responses"].as_array().unwrap() {
        let b = bytes(r);
        let m = Response::decode(&b).unwrap();
        assert_eq!(m.encode().unwrap(), b);
    }
    true
}

fn check_aggregate(v: &Value) -> bool {
    let agg = parse_aggregate(&bytes(&v["aggregate"])).unwrap();
    let key = PublicKey::from_bytes(&bytes(&v["aggregator_public_key"])).unwrap();
    agg.sign1.verify(&key).unwrap();
    let receipts: Vec<Vec<u8>> = v["member_receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(bytes)
        .collect();
    match audit(&agg.payload, &bytes(&v["transcript"]), &receipts) {
        Ok(r) => {
            let want: Vec<u32> = serde_json::from_value(v["contributors"].clone()).unwrap();
            assert_eq!(r.contributors, want);
            let mean: Vec<f64> = serde_json::from_value(v["decoded_mean"].clone()).unwrap();
            assert_eq!(
                agg.payload
                    .params
                    .decode_sum(&agg.payload.sum, r.contributors.len()),
                mean
            );
            true
        }
        Err(e) => {
            let name = match e {
                AuditError::Sum => "Sum",
                AuditError::Contributors { .. } => "Contributors",
                AuditError::Member { .. } => "Member",
                _ => "other",
            };
            assert_eq!(name, v["error"].as_str().unwrap(), "{e}");
            false
        }
    }
}

fn check_dp(v: &Value) -> bool {
    for c in v["cases"].as_array().unwrap() {
        let mode = if c["mode"] == "mean" {
            Mode::Mean
        } else {
            Mode::Votes
        };
        let s = if mode == Mode::Mean { 16 } else { 0 };
        let k = c["classes"].as_u64().unwrap() as u32;
        let n = ensemble_dp::calibrate(
            c["epsilon"].as_f64().unwrap(),
            c["delta"].as_f64().unwrap(),
            mode,
            s,
            k,
            c["members"].as_u64().unwrap() as usize,
        )
        .unwrap();
        assert_eq!(n.mu_milli, c["mu_milli"].as_u64().unwrap());
        assert_eq!(n.bound, c["bound"].as_u64().unwrap());
        let e4 = ensemble_dp::achieved_epsilon(&n, mode, s, k, 4);
        assert!(e4 > c["epsilon"].as_f64().unwrap(), "dropouts raise ε");
    }
    true
}

#[test]
fn ensemble_vectors_conform() {
    let files = vector_files("v1/ensemble");
    assert!(files.len() >= 10, "ensemble vectors missing");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(&f);
        check_vector_header(&name, &v);
        let valid = if name.starts_with("params") {
            check_params(&v)
        } else if name.starts_with("messages") {
            check_messages(&v)
        } else if name.starts_with("aggregate") {
            check_aggregate(&v)
        } else if name.starts_with("dp") {
            check_dp(&v)
        } else {
            panic!("unknown vector {name}")
        };
        assert_eq!(valid, v["expect"] == "valid", "{name}");
    }
}
