//! Mesh request and response messages (§11) and the client's check of a response.
//!
//! One request per bidirectional stream, in one frame (§8); the response is one frame. All
//! messages are deterministic CBOR maps with a type in field 1.
//!
//! This file is the one registry of message kinds: [`Request`] and [`Response`] name every
//! kind and dispatch on it exhaustively. What the kinds share (limits, error frames, the
//! tensor codec) lives in [`common`], which the job modules import; they never import this
//! file, so the dependency points one way.

use ciborium::value::Value;
use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};

use crate::batch_receipt::AnyReceipt;
use crate::cbor::{self, read};
use crate::receipt::{self, JOB_ID_LEN, JobKind, NONCE_LEN, ReceiptPayload};
use crate::tensor::Tensor;

pub mod common;
mod direct;
pub mod log;

pub use common::{
    ErrorCode, ErrorFrame, MAX_MESSAGE_CONTAINER, MAX_MESSAGE_ITEMS, MAX_MESSAGE_LEN, MAX_TENSORS,
    MESSAGE_LIMITS, MessageError, ResponseRejected,
};
use common::{tensors_from, tensors_value};
pub use log::{LogRequest, LogResponse};

mod ty {
    pub const HEALTH: u64 = 1;
    pub const INFER: u64 = 2;
    pub const HEALTH_OK: u64 = 101;
    pub const INFER_OK: u64 = 102;
    pub const ENSEMBLE_START: u64 = 3;
    pub const ENSEMBLE_ROUND: u64 = 4;
    pub const ENSEMBLE_INPUT: u64 = 8;
    pub const ENSEMBLE_REPLY: u64 = 103;
    pub const ERROR: u64 = 255;
}

/// A request from a client to a node.
// An ensemble start carries the job's parameters inline; a request is decoded once and
// moved, never stored in bulk, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// What the node serves and how busy it is (§11.2).
    Health,
    /// Run a model and sign a receipt (§11.3).
    Infer(InferRequest),
    /// Join a private ensemble: run the model, answer SecAgg round 0 (§15.3).
    EnsembleStart(crate::ensemble::EnsembleStart),
    /// One SecAgg round of an ensemble job (§15.3).
    EnsembleRound(crate::ensemble::EnsembleRound),
    /// Round 2 of a prepared ensemble job, with the client's input (§15.1, §15.3).
    EnsembleInput(crate::ensemble::EnsembleInput),
    /// Encrypted inference (§16).
    Fhe(crate::fhe::FheRequest),
    /// A request about the node's transparency log (§18.12).
    Log(LogRequest),
}

/// An inference request (§11.3).
#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    /// Job id chosen by the client.
    pub job_id: [u8; JOB_ID_LEN],
    /// Fresh client nonce.
    pub nonce: Vec<u8>,
    /// Kind the receipt must carry (infer or stage).
    pub kind: JobKind,
    /// SHA-256 of the model to run.
    pub model: Digest32,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Salts for the input commitments (one per input), or `None` for plain commitments.
    pub input_salts: Option<Vec<[u8; SALT_LEN]>>,
    /// Policy digest to bind into the receipt.
    pub policy: Option<Digest32>,
    /// Previous stage's receipt digest to bind into the receipt.
    pub previous: Option<Digest32>,
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Answer to [`Request::Health`].
    Health(HealthInfo),
    /// Answer to [`Request::Infer`].
    Infer(InferResponse),
    /// Answer to an ensemble request (§15.3).
    Ensemble(crate::ensemble::EnsembleReply),
    /// A typed error (§11.5).
    Error(ErrorFrame),
    /// Answer to [`Request::Fhe`] (§16).
    Fhe(crate::fhe::FheResponse),
    /// Answer to [`Request::Log`] (§18.12).
    Log(LogResponse),
}

/// Health of a node (§11.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthInfo {
    /// `quorate X.Y.Z`.
    pub version: String,
    /// Model digests served.
    pub models: Vec<Digest32>,
    /// Execution provider each served model runs on, in the same order as `models`.
    pub providers: Vec<String>,
    /// Requests being processed.
    pub in_flight: u64,
    /// Concurrent request limit.
    pub capacity: u64,
}

/// The result of an inference (§11.3).
#[derive(Clone, Debug, PartialEq)]
pub struct InferResponse {
    /// Output tensors.
    pub outputs: Vec<Tensor>,
    /// Salts of the output commitments, or `None` when unsalted.
    pub output_salts: Option<Vec<[u8; SALT_LEN]>>,
    /// The signed receipt; with its inclusion receipt in header 394 when the node proves
    /// inclusion in its reply (§18.11.3).
    pub receipt: Vec<u8>,
    /// The node's promise to include the receipt in its log (§18.6), when it answers with
    /// one instead of an inclusion receipt (field 5; absent otherwise).
    pub promise: Option<Vec<u8>>,
}

fn salts_from(v: &Value) -> Result<Option<Vec<[u8; SALT_LEN]>>, MessageError> {
    match v {
        Value::Null => Ok(None),
        v => Ok(Some(
            read::array(v, "salts", MAX_TENSORS)?
                .iter()
                .map(|s| read::bytes_n(s, "salt"))
                .collect::<Result<_, _>>()?,
        )),
    }
}

fn digest_from(v: &Value, field: &'static str) -> Result<Option<Digest32>, MessageError> {
    match v {
        Value::Null => Ok(None),
        v => Ok(Some(read::bytes_n(v, field)?)),
    }
}

fn map(entries: Vec<(u64, Value)>) -> Result<Vec<u8>, MessageError> {
    Ok(cbor::encode(&Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (read::int(k), v))
            .collect(),
    ))?)
}

/// Decodes a map and returns its fields 1..=n in order, all required. The raw bytes are
/// checked against [`MESSAGE_LIMITS`] before any value is built, and the decoded tree is
/// moved, never copied (§11.1, §17.2).
fn fields(bytes: &[u8], n: u64) -> Result<(u64, Vec<Value>), MessageError> {
    let v = cbor::decode_deterministic_with(bytes, &MESSAGE_LIMITS)?;
    if !matches!(v, Value::Map(_)) {
        return Err(MessageError("a message is a map".into()));
    }
    let allowed: Vec<u64> = (1..=n).collect();
    let keys: Vec<u64> = read::int_map(&v, "message", &allowed)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    // Fields are numbered 1..=count with none missing, so position i holds field i + 1.
    if keys.iter().enumerate().any(|(i, k)| *k != i as u64 + 1) {
        return Err(MessageError(
            "message fields must be 1, 2, 3, … with none missing".into(),
        ));
    }
    let Value::Map(entries) = v else {
        return Err(MessageError("a message is a map".into()));
    };
    let kind = entries
        .first()
        .map(|(_, v)| read::uint(v, "type"))
        .transpose()?;
    let kind = kind.ok_or_else(|| MessageError("field 1 (type) missing".into()))?;
    Ok((kind, entries.into_iter().map(|(_, v)| v).collect()))
}

impl Request {
    /// Deterministic CBOR encoding (§11.1).
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        match self {
            Request::Health => map(vec![(1, read::int(ty::HEALTH))]),
            Request::Infer(r) => Ok(direct::infer_request(r)),
            Request::EnsembleStart(r) => {
                let mut f = vec![(1, read::int(ty::ENSEMBLE_START))];
                let inputs = r.inputs.as_deref().map_or(Value::Null, tensors_value);
                f.extend(r.fields(inputs));
                map(f)
            }
            Request::EnsembleInput(r) => {
                let mut f = vec![(1, read::int(ty::ENSEMBLE_INPUT))];
                f.extend(r.fields(tensors_value(&r.inputs)));
                map(f)
            }
            Request::EnsembleRound(r) => {
                let mut f = vec![(1, read::int(ty::ENSEMBLE_ROUND))];
                f.extend(r.fields());
                map(f)
            }
            Request::Fhe(r) => map(r.entries()),
            Request::Log(r) => map(r.entries()),
        }
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let (kind, mut f) = fields(bytes, 9)?;
        match (kind, f.len()) {
            (ty::HEALTH, 1) => Ok(Request::Health),
            (k, _) if crate::fhe::FheRequest::is_type(k) => {
                Ok(Request::Fhe(crate::fhe::FheRequest::decode(k, &f)?))
            }
            (k, _) if LogRequest::is_type(k) => Ok(Request::Log(LogRequest::decode(k, &f)?)),
            (ty::INFER, 9) => {
                let kind_code = read::uint(&f[3], "kind")?;
                let kind = JobKind::from_code(kind_code)
                    .filter(|k| matches!(k, JobKind::Infer | JobKind::Stage))
                    .ok_or_else(|| {
                        MessageError(format!("job kind {kind_code} cannot be requested"))
                    })?;
                let r = InferRequest {
                    job_id: read::bytes_n(&f[1], "job id")?,
                    nonce: read::bytes_range(&f[2], "nonce", *NONCE_LEN.start(), *NONCE_LEN.end())?
                        .to_vec(),
                    kind,
                    model: read::bytes_n(&f[4], "model")?,
                    inputs: tensors_from(&mut f[5])?,
                    input_salts: salts_from(&f[6])?,
                    policy: digest_from(&f[7], "policy")?,
                    previous: digest_from(&f[8], "previous")?,
                };
                if r.input_salts
                    .as_ref()
                    .is_some_and(|s| s.len() != r.inputs.len())
                {
                    return Err(MessageError("one salt per input is required".into()));
                }
                Ok(Request::Infer(r))
            }
            (ty::ENSEMBLE_START, 8) => Ok(Request::EnsembleStart({
                let inputs = match f[4] {
                    Value::Null => None,
                    _ => Some(tensors_from(&mut f[4])?),
                };
                crate::ensemble::EnsembleStart::from_fields(&f, inputs)?
            })),
            (ty::ENSEMBLE_INPUT, 5) => Ok(Request::EnsembleInput({
                let inputs = tensors_from(&mut f[3])?;
                crate::ensemble::EnsembleInput::from_fields(&f, inputs)?
            })),
            (ty::ENSEMBLE_ROUND, 4) => Ok(Request::EnsembleRound(
                crate::ensemble::EnsembleRound::from_fields(&f)?,
            )),
            (k, n) => Err(MessageError(format!(
                "request type {k} with {n} fields is not defined"
            ))),
        }
    }
}

impl Response {
    /// Deterministic CBOR encoding (§11.1).
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        match self {
            Response::Health(h) => map(vec![
                (1, read::int(ty::HEALTH_OK)),
                (2, Value::Text(h.version.clone())),
                (
                    3,
                    Value::Array(h.models.iter().map(|m| Value::Bytes(m.to_vec())).collect()),
                ),
                (
                    4,
                    Value::Array(h.providers.iter().map(|p| Value::Text(p.clone())).collect()),
                ),
                (5, read::int(h.in_flight)),
                (6, read::int(h.capacity)),
            ]),
            Response::Infer(r) => Ok(direct::infer_response(r)),
            Response::Ensemble(r) => {
                let mut f = vec![(1, read::int(ty::ENSEMBLE_REPLY))];
                f.extend(r.fields());
                map(f)
            }
            Response::Error(e) => map(vec![
                (1, read::int(ty::ERROR)),
                (2, read::int(e.code.code())),
                (3, Value::Text(e.message.clone())),
            ]),
            Response::Fhe(r) => map(r.entries()),
            Response::Log(r) => map(r.entries()),
        }
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let (kind, mut f) = fields(bytes, 6)?;
        match (kind, f.len()) {
            (k, _) if crate::fhe::FheResponse::is_type(k) => {
                Ok(Response::Fhe(crate::fhe::FheResponse::decode(k, &f)?))
            }
            (k, _) if LogResponse::is_type(k) => Ok(Response::Log(LogResponse::decode(k, &f)?)),
            (ty::HEALTH_OK, 6) => Ok(Response::Health(HealthInfo {
                version: read::text(&f[1], "version", 64)?.to_string(),
                models: read::array(&f[2], "models", MAX_TENSORS)?
                    .iter()
                    .map(|m| read::bytes_n(m, "model"))
                    .collect::<Result<_, _>>()?,
                providers: read::array(&f[3], "providers", MAX_TENSORS)?
                    .iter()
                    .map(|p| read::text(p, "provider", 128).map(str::to_string))
                    .collect::<Result<_, _>>()?,
                in_flight: read::uint(&f[4], "in_flight")?,
                capacity: read::uint(&f[5], "capacity")?,
            })),
            (ty::INFER_OK, 4 | 5) => {
                let r = InferResponse {
                    outputs: tensors_from(&mut f[1])?,
                    output_salts: salts_from(&f[2])?,
                    receipt: read::bytes_range(&f[3], "receipt", 1, receipt::MAX_RECEIPT_LEN)?
                        .to_vec(),
                    promise: f
                        .get(4)
                        .map(|p| {
                            read::bytes_range(p, "promise", 1, crate::tlog::MAX_SIGNED_DOC_LEN)
                        })
                        .transpose()?
                        .map(<[u8]>::to_vec),
                };
                if r.output_salts
                    .as_ref()
                    .is_some_and(|s| s.len() != r.outputs.len())
                {
                    return Err(MessageError("one salt per output is required".into()));
                }
                Ok(Response::Infer(r))
            }
            (ty::ENSEMBLE_REPLY, 5) => Ok(Response::Ensemble(
                crate::ensemble::EnsembleReply::from_fields(&f)?,
            )),
            (ty::ERROR, 3) => {
                let code = read::uint(&f[1], "code")?;
                Ok(Response::Error(ErrorFrame {
                    code: ErrorCode::from_code(code).unwrap_or(ErrorCode::Internal),
                    message: read::text(&f[2], "message", 1024)?.to_string(),
                }))
            }
            (k, n) => Err(MessageError(format!(
                "response type {k} with {n} fields is not defined"
            ))),
        }
    }
}

/// Checks an inference response against the request and the node's pinned key (§11.4):
/// signature, job id, nonce, kind, model, policy, previous, and every commitment against the
/// tensors and salts actually sent and received. Returns the verified payload.
pub fn check_infer_response(
    request: &InferRequest,
    response: &InferResponse,
    node_key: &PublicKey,
) -> Result<ReceiptPayload, ResponseRejected> {
    check_infer_response_with(request, response, node_key, &|r: &AnyReceipt| {
        r.sign1().verify(node_key).map_err(|e| e.to_string())
    })
}

/// [`check_infer_response`] with the signature check of step 2 done by `verify_signature`,
/// which must verify the receipt's signed bytes and signature under `node_key` (a client may
/// skip a batch root it verified already for another reply of the same group, §12.4.2).
pub fn check_infer_response_with(
    request: &InferRequest,
    response: &InferResponse,
    node_key: &PublicKey,
    verify_signature: &dyn Fn(&AnyReceipt) -> Result<(), String>,
) -> Result<ReceiptPayload, ResponseRejected> {
    // A single receipt, or a batch receipt when the node signed its commit's group at once
    // (§5.4, §12.4.2): either verifies alone.
    let r = crate::batch_receipt::parse_any(&response.receipt)
        .map_err(|e| ResponseRejected::Receipt(e.to_string()))?;
    if r.kid() != node_key.key_id() {
        return Err(ResponseRejected::Receipt(
            "signed by another key than the node's".into(),
        ));
    }
    verify_signature(&r).map_err(ResponseRejected::Receipt)?;
    let p = r.into_payload();
    let mismatch = ResponseRejected::Mismatch;
    if p.job_id != request.job_id {
        return Err(mismatch("job id"));
    }
    if p.nonce != request.nonce {
        return Err(mismatch("nonce"));
    }
    if p.kind != request.kind {
        return Err(mismatch("job kind"));
    }
    if p.model_digest != request.model {
        return Err(mismatch("model digest"));
    }
    if p.policy != request.policy || p.previous != request.previous {
        return Err(mismatch("policy or previous receipt"));
    }
    let salt_of =
        |s: &Option<Vec<[u8; SALT_LEN]>>, i: usize| s.as_ref().and_then(|s| s.get(i).copied());
    if p.inputs.len() != request.inputs.len()
        || p.inputs
            .iter()
            .zip(&request.inputs)
            .enumerate()
            .any(|(i, (c, t))| {
                c.name != t.name() || !c.matches(t, salt_of(&request.input_salts, i).as_ref())
            })
    {
        return Err(mismatch("input commitments"));
    }
    if p.outputs.len() != response.outputs.len()
        || p.outputs
            .iter()
            .zip(&response.outputs)
            .enumerate()
            .any(|(i, (c, t))| {
                c.name != t.name() || !c.matches(t, salt_of(&response.output_salts, i).as_ref())
            })
    {
        return Err(mismatch("output commitments"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> InferRequest {
        InferRequest {
            job_id: [1; 16],
            nonce: vec![2; 16],
            kind: JobKind::Infer,
            model: [3; 32],
            inputs: vec![Tensor::from_f32("features", vec![1, 2], &[1.0, 2.0]).unwrap()],
            input_salts: Some(vec![[4; 32]]),
            policy: None,
            previous: None,
        }
    }

    #[test]
    fn messages_roundtrip() {
        let r = Request::Infer(request());
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        assert_eq!(
            Request::decode(&Request::Health.encode().unwrap()).unwrap(),
            Request::Health
        );
        let e = Response::Error(ErrorFrame::new(ErrorCode::Busy, "busy"));
        assert_eq!(Response::decode(&e.encode().unwrap()).unwrap(), e);
        let h = Response::Health(HealthInfo {
            version: "quorate 0.1.0".into(),
            models: vec![[1; 32]],
            providers: vec!["CPUExecutionProvider".into()],
            in_flight: 0,
            capacity: 4,
        });
        assert_eq!(Response::decode(&h.encode().unwrap()).unwrap(), h);
    }

    #[test]
    fn long_error_messages_are_cut_at_a_character_boundary() {
        let e = ErrorFrame::new(ErrorCode::Internal, "€".repeat(400));
        assert_eq!(e.message.len(), 1023);
        let r = Response::Error(e);
        assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bytes in [
            &b""[..],
            b"\xa1\x01\x03",
            b"\xa1\x01\x02",
            b"\x00",
            b"\xff\xff",
        ] {
            assert!(Request::decode(bytes).is_err());
            assert!(Response::decode(bytes).is_err());
        }
    }

    #[test]
    fn client_check_catches_every_mismatch() {
        let key = quorate_crypto::SecretKey::from_seed(&[9; 32]);
        let req = request();
        let out = Tensor::from_f32("probabilities", vec![1, 2], &[0.1, 0.9]).unwrap();
        let payload = ReceiptPayload {
            job_id: req.job_id,
            nonce: req.nonce.clone(),
            kind: JobKind::Infer,
            model_digest: req.model,
            inputs: vec![receipt::Commitment::to(&req.inputs[0], Some(&[4; 32]))],
            outputs: vec![receipt::Commitment::to(&out, Some(&[5; 32]))],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime 1.31.1".into(),
            issued_at: 1,
            previous: None,
            policy: None,
        };
        let resp = InferResponse {
            outputs: vec![out.clone()],
            output_salts: Some(vec![[5; 32]]),
            receipt: payload.sign(&key).unwrap(),
            promise: None,
        };
        assert!(check_infer_response(&req, &resp, &key.public_key()).is_ok());
        let other = quorate_crypto::SecretKey::from_seed(&[8; 32]).public_key();
        assert!(matches!(
            check_infer_response(&req, &resp, &other),
            Err(ResponseRejected::Receipt(_))
        ));
        let mut tampered = resp.clone();
        tampered.outputs[0] = Tensor::from_f32("probabilities", vec![1, 2], &[0.9, 0.1]).unwrap();
        assert_eq!(
            check_infer_response(&req, &tampered, &key.public_key()),
            Err(ResponseRejected::Mismatch("output commitments"))
        );
        let mut other_job = req.clone();
        other_job.nonce = vec![7; 16];
        assert_eq!(
            check_infer_response(&other_job, &resp, &key.public_key()),
            Err(ResponseRejected::Mismatch("nonce"))
        );
    }
}
