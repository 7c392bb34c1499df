//! Generator of `spec/vectors/v1/mesh/` (signed rosters §10, mesh messages §11).
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test mesh_vectors_generate`
//! writes the files; without the variable this test checks that the files on disk are exactly
//! what the generator produces. `mesh_conformance.rs` checks the files against the
//! implementation independently of this generator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::cbor;
use quorate_protocol::cose;
use quorate_protocol::governance::{EnsembleRule, Governance, Grant, Scope, VerificationRule};
use quorate_protocol::messages::{
    ErrorCode, ErrorFrame, HealthInfo, InferRequest, InferResponse, Request, Response,
};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::roster::{Entry, ROSTER_CONTENT_TYPE, Role, Roster};
use quorate_protocol::tensor::{DType, Tensor};
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/mesh_vectors_generate.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test mesh_vectors_generate)";

const ISSUED_AT: u64 = 1_763_900_000;
const VALIDITY: u64 = 30 * 86_400;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn pk_hex(k: &SecretKey) -> String {
    hex::encode(k.public_key().to_bytes())
}

fn int(i: u64) -> Cbor {
    Cbor::Integer(i.into())
}

fn admin() -> SecretKey {
    key(0x41)
}

fn sample_roster() -> Roster {
    let model = |name: &str| sha256(name.as_bytes());
    Roster {
        governance: Default::default(),
        mesh: "hospitals".into(),
        serial: 7,
        issued_at: ISSUED_AT,
        expires_at: ISSUED_AT + VALIDITY,
        entries: vec![
            Entry {
                name: "st-mary-1".into(),
                key: key(0x51).public_key(),
                role: Role::Node,
                addresses: vec!["10.1.0.1:4433".into(), "[fd00::1]:4433".into()],
                models: vec![model("mlp.onnx bytes"), model("logistic.onnx bytes")],
                providers: vec!["openvino:NPU".into(), "cpu".into()],
            },
            Entry {
                name: "st-mary-2".into(),
                key: key(0x52).public_key(),
                role: Role::Node,
                addresses: vec!["10.1.0.2:4433".into()],
                models: vec![model("mlp.onnx bytes")],
                providers: vec!["cpu".into()],
            },
            Entry {
                name: "research-client".into(),
                key: key(0x53).public_key(),
                role: Role::Client,
                addresses: vec![],
                models: vec![],
                providers: vec![],
            },
        ],
    }
}

fn roster_json(r: &Roster) -> Value {
    let mut v = json!({
        "mesh": r.mesh,
        "serial": r.serial,
        "issued_at": r.issued_at,
        "expires_at": r.expires_at,
        "entries": r.entries.iter().map(|e| json!({
            "name": e.name,
            "role": e.role.name(),
            "key": hex::encode(e.key.to_bytes()),
            "addresses": e.addresses,
            "models": e.models.iter().map(hex::encode).collect::<Vec<_>>(),
            "providers": e.providers,
        })).collect::<Vec<_>>(),
    });
    // §10.6: governance as the CBOR of field 7, present only when it is not the default.
    if r.governance != Governance::default() {
        v["governance"] = json!(hex::encode(
            cbor::encode(&r.governance.to_value().unwrap()).unwrap()
        ));
    }
    v
}

/// A governance other than the default: a calibrated tolerance across providers for one
/// model with a quorum of 3, and ensembles of at least 4 members with threshold 3.
fn calibrated_governance() -> Governance {
    let mut g = Governance::default();
    g.verification.push(VerificationRule {
        model: Some([0x77; 32]),
        grants: vec![Grant {
            policy: Policy::Tolerance {
                atol: 0.02,
                rtol: 0.0,
            },
            scope: Scope::AnyProvider,
        }],
        min_quorum: 3,
    });
    g.ensemble = EnsembleRule {
        min_members: 4,
        min_threshold: 3,
    };
    g
}

struct RosterCase<'a> {
    description: &'a str,
    signed: &'a [u8],
    authority: &'a SecretKey,
    now: u64,
    error: Option<(&'a str, &'a str)>,
    content: Option<&'a Roster>,
}

fn roster_vector(c: RosterCase<'_>) -> Value {
    let mut v = json!({
        "generated_by": GENERATED_BY,
        "type": "roster",
        "spec": "§10.1, §10.2, §10.3",
        "description": c.description,
        "expect": if c.error.is_some() { "invalid" } else { "valid" },
        "authority_key": pk_hex(c.authority),
        "now": c.now,
        "roster": hex::encode(c.signed),
    });
    if let Some((code, detail)) = c.error {
        v["error"] = json!(code);
        v["error_detail"] = json!(detail);
    }
    if let Some(r) = c.content {
        v["content"] = roster_json(r);
    }
    v
}

/// Decodes the roster payload, lets `edit` change it, and signs the result as the authority
/// would (a validly signed roster with bad content).
fn resign(r: &Roster, k: &SecretKey, edit: impl FnOnce(&mut Vec<(Cbor, Cbor)>)) -> Vec<u8> {
    let mut v: Cbor = ciborium::de::from_reader(r.to_cbor().unwrap().as_slice()).unwrap();
    let Cbor::Map(m) = &mut v else { panic!() };
    edit(m);
    cose::sign(cbor::encode(&v).unwrap(), ROSTER_CONTENT_TYPE, k).unwrap()
}

fn rosters(out: &mut BTreeMap<String, Value>) {
    let a = admin();
    let r = sample_roster();
    let good = r.sign(&a).unwrap();
    let now = ISSUED_AT + 3600;
    let mut put = |name: &str, c: RosterCase<'_>| {
        out.insert(format!("{name}.json"), roster_vector(c));
    };
    put(
        "roster_good",
        RosterCase {
            description: "two nodes and a client, signed by the roster authority, checked an hour after issue",
            signed: &good,
            authority: &a,
            now,
            error: None,
            content: Some(&r),
        },
    );
    put(
        "roster_good_clock_skew",
        RosterCase {
            description: "checked 300 s before its issue time: the largest clock skew allowed (§10.3)",
            signed: &good,
            authority: &a,
            now: ISSUED_AT - 300,
            error: None,
            content: Some(&r),
        },
    );
    put(
        "roster_bad_expired",
        RosterCase {
            description: "the good roster checked at its expiry time: expires_at is the first second it is invalid",
            signed: &good,
            authority: &a,
            now: r.expires_at,
            error: Some(("expired", "expired at")),
            content: None,
        },
    );
    put(
        "roster_bad_not_yet_valid",
        RosterCase {
            description: "the good roster checked 301 s before its issue time",
            signed: &good,
            authority: &a,
            now: ISSUED_AT - 301,
            error: Some(("not_yet_valid", "in the future")),
            content: None,
        },
    );
    let rogue = key(0x42);
    let foreign = r.sign(&rogue).unwrap();
    put(
        "roster_bad_foreign_signed",
        RosterCase {
            description: "the same content signed by a key that is not the pinned authority",
            signed: &foreign,
            authority: &a,
            now,
            error: Some((
                "foreign_signer",
                "not signed by the trusted roster authority",
            )),
            content: None,
        },
    );
    let mut tampered = good.clone();
    let pos = tampered.windows(9).position(|w| w == b"st-mary-2").unwrap();
    tampered[pos + 8] = b'3';
    put(
        "roster_bad_tampered",
        RosterCase {
            description: "one byte of an entry name changed after signing (st-mary-2 -> st-mary-3)",
            signed: &tampered,
            authority: &a,
            now,
            error: Some(("bad_signature", "altered after signing")),
            content: None,
        },
    );
    let mut dup = r.clone();
    dup.entries[2].key = dup.entries[0].key;
    let dup = dup.sign(&a).unwrap();
    put(
        "roster_bad_duplicate_key",
        RosterCase {
            description: "validly signed; the client entry carries the key of node st-mary-1",
            signed: &dup,
            authority: &a,
            now,
            error: Some(("malformed", "duplicate name or key")),
            content: None,
        },
    );
    let mut dup_name = r.clone();
    dup_name.entries[1].name = "st-mary-1".into();
    let dup_name = dup_name.sign(&a).unwrap();
    put(
        "roster_bad_duplicate_name",
        RosterCase {
            description: "validly signed; two entries are named st-mary-1",
            signed: &dup_name,
            authority: &a,
            now,
            error: Some(("malformed", "duplicate name or key")),
            content: None,
        },
    );
    // A small-order point: (0, -1), encoded 0xec ff .. ff 7f (vectors/v1/keys_bad_weak.json).
    let weak =
        hex::decode("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f").unwrap();
    let weak = resign(&r, &a, |m| {
        let Cbor::Array(entries) = &mut m[5].1 else {
            panic!()
        };
        let Cbor::Map(e) = &mut entries[1] else {
            panic!()
        };
        e[1].1 = Cbor::Bytes(weak);
    });
    put(
        "roster_bad_weak_key",
        RosterCase {
            description: "validly signed; st-mary-2's key is a point of small order (§2.3)",
            signed: &weak,
            authority: &a,
            now,
            error: Some(("malformed", "weak public key")),
            content: None,
        },
    );
    let mut governed = r.clone();
    governed.governance = calibrated_governance();
    let signed = governed.sign(&a).unwrap();
    put(
        "roster_good_governance",
        RosterCase {
            description: "the good roster with governance in field 7 (§10.6): a calibrated policy across providers for one model with quorum 3, ensembles of at least 4 members",
            signed: &signed,
            authority: &a,
            now,
            error: None,
            content: Some(&governed),
        },
    );
    let mut lax = calibrated_governance();
    lax.verification[1].min_quorum = 1;
    let lax_value = lax.to_value().unwrap();
    let one_witness = resign(&r, &a, |m| m.push((int(7), lax_value)));
    put(
        "roster_bad_governance_one_witness",
        RosterCase {
            description: "validly signed; its governance lets a single witness convict (min_quorum 1, §10.6 requires at least 2)",
            signed: &one_witness,
            authority: &a,
            now,
            error: Some(("malformed", "min quorum")),
            content: None,
        },
    );
    let default_value = Governance::default().to_value().unwrap();
    let explicit = resign(&r, &a, |m| m.push((int(7), default_value)));
    put(
        "roster_bad_governance_explicit_default",
        RosterCase {
            description: "validly signed; field 7 spells out the default governance, which §10.6 writes only by omission",
            signed: &explicit,
            authority: &a,
            now,
            error: Some(("malformed", "omit it")),
            content: None,
        },
    );
    let unknown = resign(&r, &a, |m| m.push((int(8), Cbor::Text("x".into()))));
    put(
        "roster_bad_unknown_field",
        RosterCase {
            description: "validly signed; the roster map has a field 8 that version 1 does not define",
            signed: &unknown,
            authority: &a,
            now,
            error: Some(("malformed", "unknown key 8")),
            content: None,
        },
    );
    let bad_role = resign(&r, &a, |m| {
        let Cbor::Array(entries) = &mut m[5].1 else {
            panic!()
        };
        let Cbor::Map(e) = &mut entries[2] else {
            panic!()
        };
        e[2].1 = int(3);
    });
    put(
        "roster_bad_unknown_role",
        RosterCase {
            description: "validly signed; an entry has role 3, which is not defined",
            signed: &bad_role,
            authority: &a,
            now,
            error: Some(("malformed", "unknown role 3")),
            content: None,
        },
    );
    let payload = r.to_cbor().unwrap();
    assert_eq!(
        &payload[..3],
        &[0xa6, 0x01, 0x01],
        "version must come first"
    );
    let mut non_det = vec![0xa6, 0x01, 0x18, 0x01];
    non_det.extend_from_slice(&payload[3..]);
    let non_det = cose::sign(non_det, ROSTER_CONTENT_TYPE, &a).unwrap();
    put(
        "roster_bad_non_deterministic",
        RosterCase {
            description: "validly signed; the payload encodes version 1 as 0x18 0x01 (not shortest form, RFC 8949 §4.2.1)",
            signed: &non_det,
            authority: &a,
            now,
            error: Some(("malformed", "not deterministically encoded")),
            content: None,
        },
    );
    let as_receipt =
        cose::sign(payload, quorate_protocol::receipt::RECEIPT_CONTENT_TYPE, &a).unwrap();
    put(
        "roster_bad_content_type",
        RosterCase {
            description: "the roster content signed by the authority as a receipt: a signature over one kind of document is never accepted as another (§4.1)",
            signed: &as_receipt,
            authority: &a,
            now,
            error: Some(("malformed", "content type")),
            content: None,
        },
    );
}

// Messages.

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
        Request::EnsembleStart(_) | Request::EnsembleRound(_) => json!({"type": "ensemble"}),
        Request::Fhe(_) => json!({"type": "fhe (§16, vectors in v1/fhe)"}),
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
        }),
        Response::Error(e) => json!({"type": "error", "code": e.code.code(), "message": e.message}),
        Response::Ensemble(_) => json!({"type": "ensemble"}),
        Response::Fhe(_) => json!({"type": "fhe (§16, vectors in v1/fhe)"}),
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

fn messages(out: &mut BTreeMap<String, Value>) {
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

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    rosters(&mut out);
    messages(&mut out);
    out
}

#[test]
fn mesh_vectors_on_disk_match_the_generator() {
    quorate_tests::check_or_regenerate("v1/mesh", &generate());
}
