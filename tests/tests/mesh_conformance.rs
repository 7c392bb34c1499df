//! Conformance: every file in `spec/vectors/v1/mesh/` is checked against the implementation.
//! Good vectors are rebuilt from their JSON description and must encode to exactly the bytes
//! in the file; bad vectors must be refused for the reason they name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_cli::commands::roster::failure_code;
use quorate_crypto::PublicKey;
use quorate_protocol::cose;
use quorate_protocol::governance::Governance;
use quorate_protocol::messages::{
    ErrorCode, ErrorFrame, HealthInfo, InferRequest, InferResponse, LogRequest, LogResponse,
    Request, Response, ResponseRejected, check_infer_response,
};
use quorate_protocol::receipt::JobKind;
use quorate_protocol::roster::{Entry, MAX_ROSTER_LEN, ROSTER_CONTENT_TYPE, Role, Roster};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_tests::{quorate, read_json, text, vector_files};
use serde_json::Value;

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn digest(v: &Value) -> [u8; 32] {
    unhex(v).try_into().unwrap()
}

fn opt_digest(v: &Value) -> Option<[u8; 32]> {
    (!v.is_null()).then(|| digest(v))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn roster_from_json(c: &Value) -> Roster {
    Roster {
        governance: match c.get("governance") {
            None => Governance::default(),
            Some(g) => {
                let bytes = unhex(g);
                Governance::from_value(&ciborium::de::from_reader(bytes.as_slice()).unwrap())
                    .unwrap()
            }
        },
        mesh: c["mesh"].as_str().unwrap().into(),
        serial: u(&c["serial"]),
        issued_at: u(&c["issued_at"]),
        expires_at: u(&c["expires_at"]),
        entries: c["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Entry {
                name: e["name"].as_str().unwrap().into(),
                key: PublicKey::from_bytes(&unhex(&e["key"])).unwrap(),
                role: match e["role"].as_str().unwrap() {
                    "node" => Role::Node,
                    "client" => Role::Client,
                    r => panic!("unknown role {r}"),
                },
                addresses: strings(&e["addresses"]),
                models: e["models"].as_array().unwrap().iter().map(digest).collect(),
                providers: strings(&e["providers"]),
            })
            .collect(),
    }
}

fn check_roster(v: &Value, name: &str) {
    let authority = PublicKey::from_bytes(&unhex(&v["authority_key"])).unwrap();
    let bytes = unhex(&v["roster"]);
    let now = u(&v["now"]);
    match Roster::verify(&bytes, &authority, now) {
        Ok(r) => {
            assert_eq!(v["expect"], "valid", "{name}: a bad roster verified");
            let want = roster_from_json(&v["content"]);
            assert_eq!(r, want, "{name}");
            let payload = cose::parse(&bytes, ROSTER_CONTENT_TYPE, MAX_ROSTER_LEN)
                .unwrap()
                .payload;
            assert_eq!(
                want.to_cbor().unwrap(),
                payload,
                "{name}: the JSON content does not encode to the signed payload"
            );
        }
        Err(e) => {
            assert_eq!(v["expect"], "invalid", "{name}: {e}");
            assert_eq!(failure_code(&e), v["error"], "{name}: {e}");
            let detail = v["error_detail"].as_str().unwrap();
            assert!(
                e.to_string().contains(detail),
                "{name}: refused for another reason than {detail:?}: {e}"
            );
        }
    }
}

/// The same vector through `quorate roster show`, as an operator or node would check it.
fn check_roster_cli(v: &Value, name: &str, dir: &std::path::Path) {
    let authority = PublicKey::from_bytes(&unhex(&v["authority_key"])).unwrap();
    let admin = dir.join(format!("{name}.pub"));
    std::fs::write(&admin, authority.to_pem().unwrap()).unwrap();
    let file = dir.join(format!("{name}.cose"));
    std::fs::write(&file, unhex(&v["roster"])).unwrap();
    let o = quorate([
        "roster",
        "show",
        file.to_str().unwrap(),
        "--admin",
        admin.to_str().unwrap(),
        "--at",
        &u(&v["now"]).to_string(),
        "--json",
    ]);
    let out: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{name}: no JSON from show ({e}): {}", text(&o)));
    if v["expect"] == "valid" {
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert_eq!(out["valid"], true, "{name}");
        assert_eq!(out["serial"], v["content"]["serial"], "{name}");
        assert_eq!(
            out["entries"].as_array().unwrap().len(),
            v["content"]["entries"].as_array().unwrap().len()
        );
    } else {
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        assert_eq!(out["valid"], false, "{name}");
        assert_eq!(out["error"], v["error"], "{name}: {out}");
    }
}

fn tensor_from_json(t: &Value) -> Tensor {
    Tensor::new(
        t["name"].as_str().unwrap(),
        DType::from_name(t["dtype"].as_str().unwrap()).unwrap(),
        t["shape"].as_array().unwrap().iter().map(u).collect(),
        unhex(&t["data"]),
    )
    .unwrap()
}

fn tensors(v: &Value) -> Vec<Tensor> {
    v.as_array().unwrap().iter().map(tensor_from_json).collect()
}

fn salts(v: &Value) -> Option<Vec<[u8; 32]>> {
    (!v.is_null()).then(|| v.as_array().unwrap().iter().map(digest).collect())
}

fn request_from_json(d: &Value) -> Request {
    match d["type"].as_str().unwrap() {
        "health" => Request::Health,
        "infer" => Request::Infer(InferRequest {
            job_id: unhex(&d["job_id"]).try_into().unwrap(),
            nonce: unhex(&d["nonce"]),
            kind: JobKind::from_code(u(&d["kind"])).unwrap(),
            model: digest(&d["model"]),
            inputs: tensors(&d["inputs"]),
            input_salts: salts(&d["input_salts"]),
            policy: opt_digest(&d["policy"]),
            previous: opt_digest(&d["previous"]),
        }),
        "log_head" => Request::Log(LogRequest::Head),
        "log_prove" => Request::Log(LogRequest::Prove {
            leaf_hash: digest(&d["leaf_hash"]),
            tree_size: d["tree_size"].as_u64(),
        }),
        "log_consistency" => Request::Log(LogRequest::Consistency {
            old_size: u(&d["old_size"]),
            new_size: u(&d["new_size"]),
        }),
        t => panic!("unknown request type {t}"),
    }
}

const ERROR_CODES: [ErrorCode; 7] = [
    ErrorCode::BadRequest,
    ErrorCode::UnknownModel,
    ErrorCode::InvalidInput,
    ErrorCode::TooLarge,
    ErrorCode::Busy,
    ErrorCode::Internal,
    ErrorCode::ShuttingDown,
];

fn response_from_json(d: &Value) -> Response {
    match d["type"].as_str().unwrap() {
        "health" => Response::Health(HealthInfo {
            version: d["version"].as_str().unwrap().into(),
            models: d["models"].as_array().unwrap().iter().map(digest).collect(),
            providers: strings(&d["providers"]),
            in_flight: u(&d["in_flight"]),
            capacity: u(&d["capacity"]),
        }),
        "infer" => Response::Infer(InferResponse {
            outputs: tensors(&d["outputs"]),
            output_salts: salts(&d["output_salts"]),
            receipt: unhex(&d["receipt"]),
            promise: (!d["promise"].is_null()).then(|| unhex(&d["promise"])),
        }),
        "log_head" => Response::Log(LogResponse::Head {
            head: unhex(&d["head"]),
            witnessed: d["witnessed"]
                .as_array()
                .unwrap()
                .iter()
                .map(unhex)
                .collect(),
        }),
        "log_proof" => Response::Log(LogResponse::Proof(unhex(&d["proof"]))),
        "error" => Response::Error(ErrorFrame {
            code: ERROR_CODES
                .into_iter()
                .find(|c| c.code() == u(&d["code"]))
                .unwrap(),
            message: d["message"].as_str().unwrap().into(),
        }),
        t => panic!("unknown response type {t}"),
    }
}

fn rejection_code(e: &ResponseRejected) -> String {
    match e {
        ResponseRejected::Mismatch(what) => (*what).to_string(),
        ResponseRejected::Receipt(_) => "receipt".into(),
        other => format!("unexpected: {other}"),
    }
}

fn check_message(v: &Value, name: &str) {
    let bytes = unhex(&v["message"]);
    let reencodes = v.get("reencodes").is_none_or(|r| r != false);
    let decoded = match v["direction"].as_str().unwrap() {
        "request" => Request::decode(&bytes).map(|r| {
            let want = request_from_json(&v["decoded"]);
            assert_eq!(r, want, "{name}");
            assert_eq!(
                want.encode().unwrap() == bytes,
                reencodes,
                "{name}: encoding"
            );
        }),
        "response" => Response::decode(&bytes).map(|r| {
            let want = response_from_json(&v["decoded"]);
            assert_eq!(r, want, "{name}");
            assert_eq!(
                want.encode().unwrap() == bytes,
                reencodes,
                "{name}: encoding"
            );
            if let (Some(req), Response::Infer(resp)) = (v.get("request"), &r) {
                let Request::Infer(req) = Request::decode(&unhex(req)).unwrap() else {
                    panic!("{name}: the paired request is not an inference request")
                };
                let node = PublicKey::from_bytes(&unhex(&v["node_key"])).unwrap();
                match check_infer_response(&req, resp, &node) {
                    Ok(p) => {
                        assert!(
                            v.get("check_error").is_none(),
                            "{name}: the client accepted it"
                        );
                        assert_eq!(p.job_id, req.job_id, "{name}");
                        assert_eq!(p.nonce, req.nonce, "{name}");
                        assert_eq!(p.policy, req.policy, "{name}");
                    }
                    Err(e) => assert_eq!(
                        rejection_code(&e),
                        v["check_error"].as_str().unwrap_or("(none)"),
                        "{name}: {e}"
                    ),
                }
            }
        }),
        d => panic!("{name}: unknown direction {d}"),
    };
    match decoded {
        Ok(()) => assert!(
            v.get("error_detail").is_none(),
            "{name}: a bad message decoded"
        ),
        Err(e) => {
            let detail = v["error_detail"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a good message failed: {e}"));
            assert!(
                e.to_string().contains(detail),
                "{name}: refused for another reason than {detail:?}: {e}"
            );
        }
    }
}

#[test]
fn every_mesh_vector_conforms() {
    let files = vector_files("v1/mesh");
    assert!(
        files.len() >= 30,
        "expected the mesh vectors, found {}",
        files.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut rosters, mut messages) = (0, 0);
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let v = read_json(&path);
        quorate_tests::check_vector_header(&name, &v);
        match v["type"].as_str().unwrap() {
            "roster" => {
                assert!(name.starts_with("roster_"), "{name}");
                check_roster(&v, &name);
                check_roster_cli(&v, &name, dir.path());
                rosters += 1;
            }
            "message" => {
                assert!(name.starts_with("message_"), "{name}");
                check_message(&v, &name);
                messages += 1;
            }
            other => panic!("{name}: unknown vector type {other}"),
        }
    }
    assert!(
        rosters >= 9 && messages >= 10,
        "{rosters} rosters, {messages} messages"
    );
}
