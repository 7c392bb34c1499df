//! §16 vectors: encrypted-inference messages and receipts, good and `_bad_`, generated here
//! (`QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test fhe_vectors`) and checked
//! by the conformance test below. Ciphertexts are opaque bytes at this layer, so short
//! placeholder blobs stand in for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quorate_crypto::SecretKey;
use quorate_protocol::fhe::{
    self, AggregateRequest, EvalRequest, Expected, FheRequest, FheResponse, KeyChunk,
    aggregate_model_digest, check_receipt, eval_commitments,
};
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::receipt::{JobKind, ReceiptPayload};
use quorate_tests::{check_or_regenerate, check_vector_header, read_json, vector_files};
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/fhe_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test fhe_vectors)";

fn node_key() -> SecretKey {
    SecretKey::from_seed(&[0x16; 32])
}

fn eval_request() -> EvalRequest {
    EvalRequest {
        job_id: [0x11; 16],
        nonce: vec![0x22; 16],
        model: quorate_crypto::tensor_digest::sha256(b"a qlinear model file"),
        key_digest: quorate_crypto::tensor_digest::sha256(b"a compressed server key"),
        ciphertext: b"compact ciphertext list".to_vec(),
    }
}

fn eval_payload(req: &EvalRequest, score: &[u8]) -> ReceiptPayload {
    let (inputs, outputs) = eval_commitments(req, score);
    ReceiptPayload {
        job_id: req.job_id,
        nonce: req.nonce.clone(),
        kind: JobKind::FheMember,
        model_digest: req.model,
        inputs,
        outputs,
        provider: "tfhe-cpu".into(),
        runtime: "tfhe-rs 1.8.2 PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128".into(),
        issued_at: 1_790_000_000,
        previous: None,
        policy: None,
    }
}

fn message(desc: &str, direction: &str, bytes: &[u8], good: bool) -> Value {
    json!({
        "description": desc,
        "direction": direction,
        "expect": if good { "valid" } else { "invalid" },
        "generated_by": GENERATED_BY,
        "message": hex::encode(bytes),
        "spec": "§16",
        "type": "fhe_message",
    })
}

fn generate() -> BTreeMap<String, Value> {
    let mut v = BTreeMap::new();
    let chunk = |total_len: u64, offset: u64, data: Vec<u8>| {
        Request::Fhe(FheRequest::KeyChunk(KeyChunk {
            key_digest: [0x33; 32],
            total_len,
            offset,
            data,
        }))
        .encode()
        .unwrap()
    };
    v.insert(
        "key_chunk_good.json".into(),
        message(
            "the second chunk of a 6-byte key",
            "request",
            &chunk(6, 3, vec![4, 5, 6]),
            true,
        ),
    );
    v.insert(
        "key_chunk_bad_past_end.json".into(),
        message(
            "a chunk that ends after the announced key length",
            "request",
            &chunk(6, 4, vec![4, 5, 6]),
            false,
        ),
    );
    v.insert(
        "key_chunk_bad_too_large.json".into(),
        message(
            "a key announced larger than MAX_SERVER_KEY_LEN (80 MiB)",
            "request",
            &chunk(fhe::MAX_SERVER_KEY_LEN + 1, 0, vec![1]),
            false,
        ),
    );
    v.insert(
        "key_chunk_bad_empty.json".into(),
        message(
            "a chunk without bytes",
            "request",
            &chunk(6, 0, vec![]),
            false,
        ),
    );
    let eval = eval_request();
    v.insert(
        "eval_good.json".into(),
        message(
            "an evaluation request",
            "request",
            &Request::Fhe(FheRequest::Eval(eval.clone()))
                .encode()
                .unwrap(),
            true,
        ),
    );
    let mut empty = eval.clone();
    empty.ciphertext = vec![];
    v.insert(
        "eval_bad_empty_ciphertext.json".into(),
        message(
            "an evaluation with an empty ciphertext",
            "request",
            &Request::Fhe(FheRequest::Eval(empty)).encode().unwrap(),
            false,
        ),
    );
    let mut short_nonce = eval.clone();
    short_nonce.nonce = vec![1; 8];
    v.insert(
        "eval_bad_short_nonce.json".into(),
        message(
            "an evaluation with an 8-byte nonce",
            "request",
            &Request::Fhe(FheRequest::Eval(short_nonce))
                .encode()
                .unwrap(),
            false,
        ),
    );
    let agg = AggregateRequest {
        job_id: [0x44; 16],
        nonce: vec![0x55; 16],
        key_digest: eval.key_digest,
        scores: vec![b"score 0".to_vec(), b"score 1".to_vec()],
    };
    v.insert(
        "aggregate_good.json".into(),
        message(
            "an aggregation of two scores",
            "request",
            &Request::Fhe(FheRequest::Aggregate(agg.clone()))
                .encode()
                .unwrap(),
            true,
        ),
    );
    let mut none = agg.clone();
    none.scores.clear();
    v.insert(
        "aggregate_bad_no_scores.json".into(),
        message(
            "an aggregation of nothing",
            "request",
            &Request::Fhe(FheRequest::Aggregate(none)).encode().unwrap(),
            false,
        ),
    );
    let mut many = agg;
    many.scores = vec![b"s".to_vec(); fhe::MAX_AGGREGATE_SCORES + 1];
    v.insert(
        "aggregate_bad_too_many_scores.json".into(),
        message(
            "an aggregation of 9 scores (at most 8)",
            "request",
            &Request::Fhe(FheRequest::Aggregate(many)).encode().unwrap(),
            false,
        ),
    );
    v.insert(
        "key_ok_good.json".into(),
        message(
            "upload progress: ready",
            "response",
            &Response::Fhe(FheResponse::KeyOk {
                key_digest: [0x33; 32],
                received: 6,
                ready: true,
            })
            .encode()
            .unwrap(),
            true,
        ),
    );

    // Receipts over an evaluation: the good one, and one committing to another server key.
    let score = b"encrypted score".to_vec();
    let key = node_key();
    let good = eval_payload(&eval, &score).sign(&key).unwrap();
    let receipt = |desc: &str, bytes: &[u8], good: bool| {
        json!({
            "description": desc,
            "expect": if good { "valid" } else { "invalid" },
            "generated_by": GENERATED_BY,
            "node_public_key": hex::encode(key.public_key().to_bytes()),
            "request": hex::encode(Request::Fhe(FheRequest::Eval(eval.clone())).encode().unwrap()),
            "response": hex::encode(Response::Fhe(FheResponse::Result { aggregate: false, ciphertext: score.clone(), receipt: bytes.to_vec() }).encode().unwrap()),
            "receipt": hex::encode(bytes),
            "spec": "§16.6",
            "type": "fhe_receipt",
        })
    };
    v.insert(
        "receipt_eval_good.json".into(),
        receipt(
            "an evaluation receipt matching request and response",
            &good,
            true,
        ),
    );
    let mut other = eval_payload(&eval, &score);
    other.inputs[1].digest = [0x99; 32];
    v.insert(
        "receipt_eval_bad_server_key.json".into(),
        receipt(
            "signed, but committing to another server key than the request named",
            &other.sign(&key).unwrap(),
            false,
        ),
    );
    let mut kind = eval_payload(&eval, &score);
    kind.kind = JobKind::Infer;
    v.insert(
        "receipt_eval_bad_kind.json".into(),
        receipt(
            "signed, but of kind infer instead of fhe-member",
            &kind.sign(&key).unwrap(),
            false,
        ),
    );
    let mut sum_model = eval_payload(&eval, &score);
    sum_model.model_digest = aggregate_model_digest();
    v.insert(
        "receipt_eval_bad_model.json".into(),
        receipt(
            "signed, but naming the aggregation digest as the model",
            &sum_model.sign(&key).unwrap(),
            false,
        ),
    );
    v
}

#[test]
fn fhe_vectors_are_current() {
    check_or_regenerate("v1/fhe", &generate());
}

fn hex_field(v: &Value, f: &str) -> Vec<u8> {
    hex::decode(v[f].as_str().unwrap()).unwrap()
}

#[test]
fn fhe_vectors_conform() {
    let files = vector_files("v1/fhe");
    assert!(files.len() >= 10, "fhe vectors missing");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(&path);
        check_vector_header(&name, &v);
        let valid = v["expect"] == "valid";
        match v["type"].as_str().unwrap() {
            "fhe_message" => {
                let bytes = hex_field(&v, "message");
                let ok = if v["direction"] == "request" {
                    matches!(Request::decode(&bytes), Ok(Request::Fhe(_)))
                } else {
                    matches!(Response::decode(&bytes), Ok(Response::Fhe(_)))
                };
                assert_eq!(ok, valid, "{name}");
            }
            "fhe_receipt" => {
                let Ok(Request::Fhe(FheRequest::Eval(req))) =
                    Request::decode(&hex_field(&v, "request"))
                else {
                    panic!("{name}: request")
                };
                let Ok(Response::Fhe(FheResponse::Result {
                    ciphertext,
                    receipt,
                    ..
                })) = Response::decode(&hex_field(&v, "response"))
                else {
                    panic!("{name}: response")
                };
                let key = quorate_crypto::PublicKey::from_bytes(&hex_field(&v, "node_public_key"))
                    .unwrap();
                let (inputs, outputs) = eval_commitments(&req, &ciphertext);
                let expected = Expected {
                    job_id: &req.job_id,
                    nonce: &req.nonce,
                    model: req.model,
                    inputs,
                    outputs,
                };
                assert_eq!(
                    check_receipt(&receipt, &expected, &key).is_ok(),
                    valid,
                    "{name}"
                );
            }
            t => panic!("{name}: unknown type {t}"),
        }
    }
}
