//! Receipt-chain vectors (`spec/vectors/v1/pipeline/`, §13.6): a generator and, independently,
//! a conformance check of every file against the implementation.
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test pipeline_vectors` writes
//! the files; without the variable `generated_vectors_match_the_files` checks that the files on
//! disk are exactly what the generator produces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quorate_crypto::tensor_digest::sha256;
use quorate_crypto::{KeyId, PublicKey, SecretKey};
use quorate_protocol::chain::{ChainStage, Pipeline, ReceiptChain, check_chain};
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use quorate_tests::{check_or_regenerate, check_vector_header, read_json, vector_files};
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/pipeline_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test pipeline_vectors)";
const DIR: &str = "v1/pipeline";
const JOB: [u8; 16] = [0x4a; 16];

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn t(name: &str, v: f32) -> Tensor {
    Tensor::from_f32(name, vec![1, 2], &[v, -v]).unwrap()
}

/// Salted commitment of `t(name, v)` under a salt derived from the name.
fn c(name: &str, v: f32) -> Commitment {
    let salt = sha256(name.as_bytes());
    Commitment::to(&t(name, v), Some(&salt))
}

fn stage_model(i: u8) -> [u8; 32] {
    sha256(format!("stage-{i}.onnx of mlp.onnx cut at h1,h2").as_bytes())
}

fn source() -> [u8; 32] {
    sha256(b"mlp.onnx")
}

fn payload(stage: u8, inputs: Vec<Commitment>, outputs: Vec<Commitment>) -> ReceiptPayload {
    ReceiptPayload {
        job_id: JOB,
        nonce: vec![stage; 32],
        kind: JobKind::Stage,
        model_digest: stage_model(stage),
        inputs,
        outputs,
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.23.2".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: Some([0x70; 32]),
    }
}

/// The good chain: features -> h1 -> h2 -> probabilities, stage 2 on two nodes.
fn good() -> (ReceiptChain, Vec<ReceiptPayload>) {
    let p1 = payload(1, vec![c("features", 1.0)], vec![c("h1", 2.0)]);
    let s1 = p1.sign(&key(1)).unwrap();
    let mut p2 = payload(2, vec![c("h1", 2.0)], vec![c("h2", 3.0)]);
    p2.previous = Some(sha256(&s1));
    let s2 = p2.sign(&key(2)).unwrap();
    let s2b = p2.sign(&key(3)).unwrap();
    let mut p3 = payload(3, vec![c("h2", 3.0)], vec![c("probabilities", 0.25)]);
    p3.previous = Some(sha256(&s2));
    let s3 = p3.sign(&key(1)).unwrap();
    let chain = ReceiptChain {
        job_id: JOB,
        source: Some(source()),
        stages: vec![
            ChainStage {
                model: stage_model(1),
                receipts: vec![s1],
            },
            ChainStage {
                model: stage_model(2),
                receipts: vec![s2, s2b],
            },
            ChainStage {
                model: stage_model(3),
                receipts: vec![s3],
            },
        ],
    };
    (chain, vec![p1, p2, p3])
}

fn pipeline_json(p: &Pipeline) -> Value {
    json!({
        "stages": p.stages.iter().map(hex::encode).collect::<Vec<_>>(),
        "source": p.source.map(hex::encode),
    })
}

fn vector(description: &str, chain_bytes: &[u8], pipeline: &Pipeline, expect: Value) -> Value {
    let mut v = json!({
        "type": "receipt-chain",
        "generated_by": GENERATED_BY,
        "description": description,
        "trusted_keys": (1..=3u8).map(|i| hex::encode(key(i).public_key().to_bytes())).collect::<Vec<_>>(),
        "pipeline": pipeline_json(pipeline),
        "chain": hex::encode(chain_bytes),
    });
    for (k, val) in expect.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let (chain, payloads) = good();
    let declared = chain.declared();
    let valid = json!({"expect": "valid", "signers": [[hex::encode(key(1).public_key().key_id().0)], [hex::encode(key(2).public_key().key_id().0), hex::encode(key(3).public_key().key_id().0)], [hex::encode(key(1).public_key().key_id().0)]]});
    out.insert(
        "chain_good_three_stages.json".into(),
        vector(
            "mlp cut at h1,h2: three stage receipts linked by previous-receipt digests and equal activation commitments; stage 2 cross-checked by a second node",
            &chain.to_cbor().unwrap(),
            &declared,
            valid,
        ),
    );
    let mut bad = |name: &str,
                   what: &str,
                   c: &ReceiptChain,
                   p: &Pipeline,
                   stage: u64,
                   receipt: u64,
                   error: &str| {
        out.insert(
            format!("chain_bad_{name}.json"),
            vector(
                what,
                &c.to_cbor().unwrap(),
                p,
                json!({"expect": "invalid", "broken": {"stage": stage, "receipt": receipt, "error": error}}),
            ),
        );
    };

    // Broken activation link: stage 3 signed on an h2 other than stage 2's output.
    let mut c3 = chain.clone();
    let mut p3 = payloads[2].clone();
    p3.inputs = vec![c("h2", 3.5)];
    c3.stages[2].receipts[0] = p3.sign(&key(1)).unwrap();
    bad(
        "broken_link",
        "stage 3's input commitment to h2 differs from stage 2's output commitment",
        &c3,
        &declared,
        3,
        0,
        "broken_activation",
    );

    // Previous receipt pointing at the cross-check rather than the linked receipt.
    let mut cp = chain.clone();
    let mut p3 = payloads[2].clone();
    p3.previous = Some(sha256(&chain.stages[1].receipts[1]));
    cp.stages[2].receipts[0] = p3.sign(&key(1)).unwrap();
    bad(
        "broken_previous",
        "stage 3 names the digest of a receipt that is not stage 2's linked receipt",
        &cp,
        &declared,
        3,
        0,
        "broken_previous",
    );

    // Stages 2 and 3 swapped, declaration included.
    let mut cs = chain.clone();
    cs.stages.swap(1, 2);
    bad(
        "swapped_stage",
        "stages 2 and 3 in the wrong order (their declarations swapped too)",
        &cs,
        &cs.declared(),
        2,
        0,
        "broken_previous",
    );

    // A receipt for another stage model than the declared one.
    let mut cw = chain.clone();
    let mut p2 = payloads[1].clone();
    p2.model_digest = sha256(b"another model");
    cw.stages[1].receipts[0] = p2.sign(&key(2)).unwrap();
    bad(
        "wrong_stage_model",
        "stage 2's linked receipt attests a model other than the declared stage model",
        &cw,
        &declared,
        2,
        0,
        "wrong_stage_model",
    );

    // The chain is fine but declares another pipeline than the auditor's.
    let mut other = declared.clone();
    other.stages[2] = sha256(b"stage 3 of another split");
    bad(
        "other_pipeline",
        "a valid chain checked against another split's stage digests",
        &chain,
        &other,
        3,
        0,
        "declaration_mismatch",
    );

    // Stage 2 without a previous-receipt field.
    let mut cm = chain.clone();
    let mut p2 = payloads[1].clone();
    p2.previous = None;
    cm.stages[1].receipts[0] = p2.sign(&key(2)).unwrap();
    bad(
        "missing_previous",
        "stage 2's receipt has no previous-receipt digest",
        &cm,
        &declared,
        2,
        0,
        "missing_previous",
    );

    // A stage receipt of another job.
    let mut cj = chain.clone();
    let mut p1 = payloads[0].clone();
    p1.job_id = [0x4b; 16];
    cj.stages[0].receipts[0] = p1.sign(&key(1)).unwrap();
    bad(
        "wrong_job",
        "stage 1's receipt belongs to another job",
        &cj,
        &declared,
        1,
        0,
        "wrong_job",
    );

    // The cross-check signed by the same node as the linked receipt.
    let mut cr = chain.clone();
    cr.stages[1].receipts[1] = chain.stages[1].receipts[0].clone();
    bad(
        "repeated_signer",
        "stage 2's cross-check is the linked receipt again (same signer)",
        &cr,
        &declared,
        2,
        1,
        "repeated_signer",
    );

    // A signature byte flipped.
    let mut cb = chain.clone();
    let n = cb.stages[0].receipts[0].len();
    cb.stages[0].receipts[0][n - 1] ^= 1;
    bad(
        "bad_signature",
        "stage 1's receipt altered after signing",
        &cb,
        &declared,
        1,
        0,
        "bad_signature",
    );

    // Undecodable documents.
    let good_bytes = chain.to_cbor().unwrap();
    let mut trailing = good_bytes.clone();
    trailing.push(0);
    out.insert(
        "chain_bad_trailing_bytes.json".into(),
        vector(
            "a good chain followed by one more byte",
            &trailing,
            &declared,
            json!({"expect": "invalid", "decode_error": true}),
        ),
    );
    let mut empty = chain.clone();
    empty.stages.clear();
    out.insert(
        "chain_bad_no_stages.json".into(),
        vector(
            "a chain without stages",
            &empty.to_cbor().unwrap(),
            &declared,
            json!({"expect": "invalid", "decode_error": true}),
        ),
    );
    out
}

#[test]
fn generated_vectors_match_the_files() {
    check_or_regenerate(DIR, &generate());
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Loads every vector and checks it against the implementation, independently of the
/// generator.
#[test]
fn chain_vectors_conform() {
    let files = vector_files(DIR);
    assert!(files.len() >= 10, "pipeline vectors missing");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let v = read_json(&f);
        check_vector_header(&name, &v);
        assert_eq!(v["type"], "receipt-chain", "{name}");
        let keys: Vec<PublicKey> = v["trusted_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| PublicKey::from_bytes(&hex::decode(k.as_str().unwrap()).unwrap()).unwrap())
            .collect();
        let trusted = |kid: &KeyId| keys.iter().find(|k| k.key_id() == *kid).copied();
        let pipeline = Pipeline {
            stages: v["pipeline"]["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(hex32)
                .collect(),
            source: v["pipeline"]["source"]
                .as_str()
                .map(|_| hex32(&v["pipeline"]["source"])),
        };
        let bytes = hex::decode(v["chain"].as_str().unwrap()).unwrap();
        let decoded = ReceiptChain::from_cbor(&bytes);
        if v["decode_error"] == true {
            assert!(decoded.is_err(), "{name} decodes");
            continue;
        }
        let chain = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(chain.to_cbor().unwrap(), bytes, "{name} does not re-encode");
        match (
            check_chain(&chain, Some(&pipeline), &trusted),
            v["expect"].as_str(),
        ) {
            (Ok(checked), Some("valid")) => {
                let signers: Vec<Vec<String>> = checked
                    .stages
                    .iter()
                    .map(|s| s.iter().map(|r| hex::encode(r.kid.0)).collect())
                    .collect();
                assert_eq!(json!(signers), v["signers"], "{name}");
            }
            (Err(b), Some("invalid")) => {
                let got = json!({"stage": b.stage, "receipt": b.receipt, "error": b.kind.code()});
                assert_eq!(got, v["broken"], "{name}: {b}");
            }
            (r, e) => panic!("{name}: expected {e:?}, got {r:?}"),
        }
    }
}
