//! Mesh message vectors (§11): requests, responses and receipts, good and tampered.

use std::collections::BTreeMap;

use super::{GENERATED_BY, ISSUED_AT, int, key, pk_hex};
use ciborium::value::Value as Cbor;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::cbor;
use quorate_protocol::messages::{
    ErrorCode, ErrorFrame, HealthInfo, InferRequest, InferResponse, LogRequest, LogResponse,
    Request, Response,
};
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::{DType, Tensor};
use serde_json::{Value, json};

fn tensor_json(t: &Tensor) -> Value {
    json!({"name": t.name(), "dtype": t.dtype().name(), "shape": t.shape(), "data": hex::encode(t.data())})
}

fn salts_json(s: &Option<Vec<[u8; 32]>>) -> Value {
    s.as_ref().map_or(Value::Null, |s| {
        json!(s.iter().map(hex::encode).collect::<Vec<_>>())
    })
}

fn request_json(r: &Request) -> Value {
    match r {
        Request::Health => json!({"type": "health"}),
        Request::Infer(r) => json!({
            "type": "infer",
            "job_id": hex::encode(r.job_id),
            "nonce": hex::encode(&r.nonce),
            "kind": r.kind.code(),
            "model": hex::encode(r.model),
            "inputs": r.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
            "input_salts": salts_json(&r.input_salts),
            "policy": r.policy.map(hex::encode),
            "previous": r.previous.map(hex::encode),
        }),
        // Ensemble messages (§15) have their own vectors in v1/ensemble/.
        Request::EnsembleStart(_) | Request::EnsembleRound(_) | Request::EnsembleInput(_) => {
            json!({"type": "ensemble"})
        }
        Request::Fhe(_) => json!({"type": "fhe (§16, vectors in v1/fhe)"}),
        Request::Log(LogRequest::Head) => json!({"type": "log_head"}),
        Request::Log(LogRequest::Prove {
            leaf_hash,
            tree_size,
        }) => {
            json!({"type": "log_prove", "leaf_hash": hex::encode(leaf_hash), "tree_size": tree_size})
        }
        Request::Log(LogRequest::Consistency { old_size, new_size }) => {
            json!({"type": "log_consistency", "old_size": old_size, "new_size": new_size})
        }
    }
}

fn response_json(r: &Response) -> Value {
    match r {
        Response::Health(h) => json!({
            "type": "health",
            "version": h.version,
            "models": h.models.iter().map(hex::encode).collect::<Vec<_>>(),
            "providers": h.providers,
            "in_flight": h.in_flight,
            "capacity": h.capacity,
        }),
        Response::Infer(r) => json!({
            "type": "infer",
            "outputs": r.outputs.iter().map(tensor_json).collect::<Vec<_>>(),
            "output_salts": salts_json(&r.output_salts),
            "receipt": hex::encode(&r.receipt),
            "promise": r.promise.as_ref().map(hex::encode),
        }),
        Response::Error(e) => json!({"type": "error", "code": e.code.code(), "message": e.message}),
        Response::Ensemble(_) => json!({"type": "ensemble"}),
        Response::Fhe(_) => json!({"type": "fhe (§16, vectors in v1/fhe)"}),
        Response::Log(LogResponse::Head { head, witnessed }) => json!({
            "type": "log_head",
            "head": hex::encode(head),
            "witnessed": witnessed.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
        Response::Log(LogResponse::Proof(p)) => {
            json!({"type": "log_proof", "proof": hex::encode(p)})
        }
    }
}

fn message_vector(
    description: &str,
    direction: &str,
    bytes: &[u8],
    decoded: Option<Value>,
    error_detail: Option<&str>,
) -> Value {
    let mut v = json!({
        "generated_by": GENERATED_BY,
        "type": "message",
        "spec": "§11",
        "description": description,
        "expect": if error_detail.is_some() { "invalid" } else { "valid" },
        "direction": direction,
        "message": hex::encode(bytes),
    });
    if let Some(d) = decoded {
        v["decoded"] = d;
    }
    if let Some(e) = error_detail {
        v["error_detail"] = json!(e);
    }
    v
}

const SALT_IN: [u8; 32] = [0x11; 32];
const SALT_OUT: [u8; 32] = [0x22; 32];

fn node_key() -> SecretKey {
    key(0x51)
}

fn infer_request() -> InferRequest {
    InferRequest {
        job_id: [0xa1; 16],
        nonce: (0u8..32).collect(),
        kind: JobKind::Infer,
        model: sha256(b"mlp.onnx bytes"),
        inputs: vec![
            Tensor::from_f32("features", vec![1, 4], &[17.99, 10.38, 122.8, 1001.0]).unwrap(),
        ],
        input_salts: Some(vec![SALT_IN]),
        policy: Some(sha256(b"policy: bitwise")),
        previous: None,
    }
}

fn output() -> Tensor {
    Tensor::from_f32("probabilities", vec![1, 2], &[0.9998326, 0.00016737]).unwrap()
}

fn receipt_for(req: &InferRequest, out: &Tensor, k: &SecretKey) -> Vec<u8> {
    ReceiptPayload {
        job_id: req.job_id,
        nonce: req.nonce.clone(),
        kind: req.kind,
        model_digest: req.model,
        inputs: vec![Commitment::to(&req.inputs[0], Some(&SALT_IN))],
        outputs: vec![Commitment::to(out, Some(&SALT_OUT))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: ISSUED_AT + 60,
        previous: req.previous,
        policy: req.policy,
    }
    .sign(k)
    .unwrap()
}

/// Decodes a message, lets `edit` change its map, and re-encodes it deterministically.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut Vec<(Cbor, Cbor)>)) -> Vec<u8> {
    let mut v: Cbor = ciborium::de::from_reader(bytes).unwrap();
    let Cbor::Map(m) = &mut v else { panic!() };
    edit(m);
    cbor::encode(&v).unwrap()
}

/// An infer response vector that decodes but that the client's check (§11.4) refuses, or
/// accepts when `check_error` is `None`.
fn checked_response(
    description: &str,
    resp: &InferResponse,
    req: &InferRequest,
    check_error: Option<&str>,
) -> Value {
    let r = Response::Infer(resp.clone());
    let bytes = r.encode().unwrap();
    let mut v = message_vector(
        description,
        "response",
        &bytes,
        Some(response_json(&r)),
        None,
    );
    v["spec"] = json!("§11.3, §11.4");
    v["request"] = json!(hex::encode(Request::Infer(req.clone()).encode().unwrap()));
    v["node_key"] = json!(pk_hex(&node_key()));
    if let Some(e) = check_error {
        v["expect"] = json!("invalid");
        v["check_error"] = json!(e);
    }
    v
}

pub(super) fn messages(out: &mut BTreeMap<String, Value>) {
    let mut put = |name: &str, v: Value| {
        out.insert(format!("{name}.json"), v);
    };
    let req = |desc: &str, r: &Request| {
        let b = r.encode().unwrap();
        message_vector(desc, "request", &b, Some(request_json(r)), None)
    };
    let resp = |desc: &str, r: &Response| {
        let b = r.encode().unwrap();
        message_vector(desc, "response", &b, Some(response_json(r)), None)
    };
    let bad =
        |desc: &str, dir: &str, b: &[u8], why: &str| message_vector(desc, dir, b, None, Some(why));

    let health = Request::Health.encode().unwrap();
    put(
        "message_health_request",
        req("a health request: {1: 1}", &Request::Health),
    );
    let ir = infer_request();
    let infer = Request::Infer(ir.clone());
    let infer_bytes = infer.encode().unwrap();
    put(
        "message_infer_request",
        req(
            "an inference request with one salted input and a policy digest",
            &infer,
        ),
    );
    let mut stage = ir.clone();
    stage.kind = JobKind::Stage;
    stage.input_salts = None;
    stage.policy = None;
    stage.previous = Some(sha256(b"previous stage receipt"));
    put(
        "message_infer_request_stage",
        req(
            "a pipeline stage request: unsalted input, previous receipt digest, no policy",
            &Request::Infer(stage),
        ),
    );
    put(
        "message_health_response",
        resp(
            "a node serving two models, one request in flight",
            &Response::Health(HealthInfo {
                version: "quorate 0.1.0".into(),
                models: vec![sha256(b"mlp.onnx bytes"), sha256(b"logistic.onnx bytes")],
                providers: vec![
                    "OpenVINOExecutionProvider".into(),
                    "CPUExecutionProvider".into(),
                ],
                in_flight: 1,
                capacity: 4,
            }),
        ),
    );
    let good = InferResponse {
        outputs: vec![output()],
        output_salts: Some(vec![SALT_OUT]),
        receipt: receipt_for(&ir, &output(), &node_key()),
        promise: None,
    };
    put(
        "message_infer_response",
        checked_response(
            "the answer to message_infer_request: the output, its salt and a receipt that passes the client's check",
            &good,
            &ir,
            None,
        ),
    );
    // The receipt was issued at ISSUED_AT + 60: the promise of the window holding it.
    let promised = InferResponse {
        promise: Some(
            quorate_protocol::tlog::Promise {
                log_id: node_key().public_key().key_id(),
                from: ISSUED_AT + 60,
                until: ISSUED_AT + 65,
                deadline: ISSUED_AT + 72,
            }
            .sign(&node_key())
            .unwrap(),
        ),
        ..good.clone()
    };
    let mut v = checked_response(
        "an infer response carrying the promise of inclusion (field 5, §18.6) of the window its receipt was issued in",
        &promised,
        &ir,
        None,
    );
    v["spec"] = json!("§11.3, §18.6, §18.11.3");
    put("message_infer_response_promise", v);
    let promised_bytes = Response::Infer(promised).encode().unwrap();
    put(
        "message_bad_infer_response_promise_null",
        bad(
            "an infer response with field 5 present as null: a response without a promise has 4 fields",
            "response",
            &edited(&promised_bytes, |m| m[4].1 = Cbor::Null),
            "promise",
        ),
    );
    put(
        "message_error_response",
        resp(
            "a busy node: error code 5",
            &Response::Error(ErrorFrame::new(
                ErrorCode::Busy,
                "at capacity (4 requests); retry elsewhere",
            )),
        ),
    );
    let unknown_code = edited(
        &Response::Error(ErrorFrame::new(ErrorCode::Internal, "from the future"))
            .encode()
            .unwrap(),
        |m| m[1].1 = int(999),
    );
    let mut v = message_vector(
        "an error code this version does not know decodes as 6 (internal), §11.5",
        "response",
        &unknown_code,
        Some(json!({"type": "error", "code": 6, "message": "from the future"})),
        None,
    );
    v["reencodes"] = json!(false);
    put("message_error_response_unknown_code", v);

    log_messages(&mut put);

    // Bad twins.
    let mut trailing = health.clone();
    trailing.push(0x00);
    put(
        "message_bad_trailing_bytes",
        bad(
            "a health request followed by one zero byte",
            "request",
            &trailing,
            "trailing bytes",
        ),
    );
    put(
        "message_bad_missing_field",
        bad(
            "an inference request without field 5 (the model digest)",
            "request",
            &edited(&infer_bytes, |m| {
                m.remove(4);
            }),
            "none missing",
        ),
    );
    put(
        "message_bad_missing_last_field",
        bad(
            "an inference request without field 9 (previous): absent optional values are null, never omitted",
            "request",
            &edited(&infer_bytes, |m| {
                m.pop();
            }),
            "request type 2 with 8 fields",
        ),
    );
    put(
        "message_bad_unknown_field",
        bad(
            "an inference request with a field 10",
            "request",
            &edited(&infer_bytes, |m| m.push((int(10), Cbor::Null))),
            "unknown key 10",
        ),
    );
    put(
        "message_bad_wrong_type",
        bad(
            "a request of type 3, which is not defined",
            "request",
            &[0xa1, 0x01, 0x03],
            "request type 3",
        ),
    );
    put(
        "message_bad_response_as_request",
        bad(
            "a health response (type 101) sent where a request is expected",
            "request",
            &edited(&health, |m| m[0].1 = int(101)),
            "request type 101",
        ),
    );
    put(
        "message_bad_oversized_tensor",
        bad(
            "an input claiming shape [65536, 65536, 65536] float32 with 4 bytes of data: refused before any allocation",
            "request",
            &edited(&infer_bytes, |m| {
                let Cbor::Array(inputs) = &mut m[5].1 else {
                    panic!()
                };
                inputs[0] = Cbor::Array(vec![
                    Cbor::Text("features".into()),
                    int(u64::from(DType::F32.code())),
                    Cbor::Array(vec![int(65536), int(65536), int(65536)]),
                    Cbor::Bytes(vec![0; 4]),
                ]);
            }),
            "more than 67108864 elements",
        ),
    );
    put(
        "message_bad_tensor_length",
        bad(
            "an input of shape [1, 4] float32 with 12 bytes of data",
            "request",
            &edited(&infer_bytes, |m| {
                let Cbor::Array(inputs) = &mut m[5].1 else {
                    panic!()
                };
                let Cbor::Array(t) = &mut inputs[0] else {
                    panic!()
                };
                t[3] = Cbor::Bytes(vec![0; 12]);
            }),
            "needs 16 bytes, found 12",
        ),
    );
    put(
        "message_bad_salt_count",
        bad(
            "one input and two salts",
            "request",
            &edited(&infer_bytes, |m| {
                m[6].1 = Cbor::Array(vec![
                    Cbor::Bytes(vec![0x11; 32]),
                    Cbor::Bytes(vec![0x12; 32]),
                ]);
            }),
            "one salt per input",
        ),
    );
    put(
        "message_bad_output_salt_count",
        bad(
            "an inference response with one output and no salt in a salt list",
            "response",
            &edited(&Response::Infer(good.clone()).encode().unwrap(), |m| {
                m[2].1 = Cbor::Array(vec![]);
            }),
            "one salt per output",
        ),
    );
    put(
        "message_bad_job_kind",
        bad(
            "an inference request for job kind 1 (local), which cannot be requested from a node",
            "request",
            &edited(&infer_bytes, |m| m[3].1 = int(1)),
            "job kind 1 cannot be requested",
        ),
    );
    put(
        "message_bad_short_nonce",
        bad(
            "an inference request with an 8-byte nonce (16 to 64 required)",
            "request",
            &edited(&infer_bytes, |m| m[2].1 = Cbor::Bytes(vec![7; 8])),
            "nonce",
        ),
    );
    let mut non_det = vec![0xa1, 0x01, 0x18, 0x01];
    assert_eq!(health, [0xa1, 0x01, 0x01]);
    put(
        "message_bad_non_deterministic",
        bad(
            "a health request with the type 1 encoded as 0x18 0x01",
            "request",
            &non_det,
            "not deterministically encoded",
        ),
    );
    non_det.clear();
    put(
        "message_bad_empty",
        bad(
            "an empty frame payload",
            "request",
            &non_det,
            "malformed CBOR",
        ),
    );

    // §11.4: responses that decode but that the client refuses.
    let mut other_nonce = ir.clone();
    other_nonce.nonce = vec![0xee; 32];
    let replayed = InferResponse {
        receipt: receipt_for(&other_nonce, &output(), &node_key()),
        ..good.clone()
    };
    put(
        "message_bad_response_replayed",
        checked_response(
            "a correctly signed receipt for another request's nonce (a replay)",
            &replayed,
            &ir,
            Some("nonce"),
        ),
    );
    let swapped = InferResponse {
        outputs: vec![
            Tensor::from_f32("probabilities", vec![1, 2], &[0.00016737, 0.9998326]).unwrap(),
        ],
        ..good.clone()
    };
    put(
        "message_bad_response_output_swapped",
        checked_response(
            "the receipt commits to one output but another is returned",
            &swapped,
            &ir,
            Some("output commitments"),
        ),
    );
    let impostor = InferResponse {
        receipt: receipt_for(&ir, &output(), &key(0x52)),
        ..good
    };
    put(
        "message_bad_response_wrong_node",
        checked_response(
            "a valid receipt signed by another roster node than the one asked",
            &impostor,
            &ir,
            Some("receipt"),
        ),
    );
}

/// Log requests and answers (§18.12), good and bad.
fn log_messages(put: &mut impl FnMut(&str, Value)) {
    let req = |desc: &str, r: LogRequest| {
        let r = Request::Log(r);
        let b = r.encode().unwrap();
        let mut v = message_vector(desc, "request", &b, Some(request_json(&r)), None);
        v["spec"] = json!("§18.12");
        v
    };
    let resp = |desc: &str, r: LogResponse| {
        let r = Response::Log(r);
        let b = r.encode().unwrap();
        let mut v = message_vector(desc, "response", &b, Some(response_json(&r)), None);
        v["spec"] = json!("§18.12");
        v
    };
    let bad = |desc: &str, dir: &str, b: &[u8], why: &str| {
        let mut v = message_vector(desc, dir, b, None, Some(why));
        v["spec"] = json!("§18.12");
        v
    };
    put(
        "message_log_head_request",
        req("the latest signed tree head: {1: 5}", LogRequest::Head),
    );
    put(
        "message_log_prove_request",
        req(
            "the inclusion receipt of a leaf against the first head containing it",
            LogRequest::Prove {
                leaf_hash: sha256(b"a leaf"),
                tree_size: None,
            },
        ),
    );
    put(
        "message_log_prove_at_size_request",
        req(
            "the inclusion receipt of a leaf against the head of 8 leaves",
            LogRequest::Prove {
                leaf_hash: sha256(b"a leaf"),
                tree_size: Some(8),
            },
        ),
    );
    put(
        "message_log_consistency_request",
        req(
            "the consistency receipt between sizes 3 and 8",
            LogRequest::Consistency {
                old_size: 3,
                new_size: 8,
            },
        ),
    );
    let k = node_key();
    let head = quorate_protocol::tlog::TreeHead {
        log_id: k.public_key().key_id(),
        size: 8,
        root: sha256(b"a root"),
        issued_at: ISSUED_AT + 60,
    }
    .sign(&k)
    .unwrap();
    let peer = key(0x52);
    let peer_head = quorate_protocol::tlog::TreeHead {
        log_id: peer.public_key().key_id(),
        size: 3,
        root: sha256(b"another root"),
        issued_at: ISSUED_AT + 55,
    }
    .sign(&peer)
    .unwrap();
    put(
        "message_log_head_response",
        resp(
            "a head of 8 leaves and one witnessed peer head",
            LogResponse::Head {
                head: head.clone(),
                witnessed: vec![peer_head],
            },
        ),
    );
    let consistency = Request::Log(LogRequest::Consistency {
        old_size: 3,
        new_size: 8,
    })
    .encode()
    .unwrap();
    put(
        "message_bad_log_consistency_zero",
        bad(
            "a consistency request from size 0: RFC 9162 proofs start at size 1",
            "request",
            &edited(&consistency, |m| m[1].1 = int(0)),
            "1 ≤ old size ≤ new size",
        ),
    );
    put(
        "message_bad_log_consistency_backwards",
        bad(
            "a consistency request from size 8 back to 3",
            "request",
            &edited(&consistency, |m| {
                m[1].1 = int(8);
                m[2].1 = int(3);
            }),
            "1 ≤ old size ≤ new size",
        ),
    );
    let head_ok = Response::Log(LogResponse::Head {
        head,
        witnessed: vec![],
    })
    .encode()
    .unwrap();
    put(
        "message_bad_log_head_oversized",
        bad(
            "a head answer whose head exceeds 1024 bytes (§18.9)",
            "response",
            &edited(&head_ok, |m| m[1].1 = Cbor::Bytes(vec![0; 1025])),
            "head",
        ),
    );
    put(
        "message_bad_log_proof_empty",
        bad(
            "a proof answer with an empty document",
            "response",
            &edited(
                &Response::Log(LogResponse::Proof(vec![1])).encode().unwrap(),
                |m| m[1].1 = Cbor::Bytes(vec![]),
            ),
            "log proof",
        ),
    );
}
