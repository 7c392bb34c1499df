//! Encrypted-inference messages (§16): server-key upload in chunks, evaluation of a quantized
//! linear model on ciphertexts, and homomorphic aggregation of encrypted scores.
//!
//! Keys and ciphertexts are opaque byte strings here (tfhe `safe_serialization` blobs, §16.2);
//! this layer only bounds their sizes and names them by SHA-256. Decoding them is the node's job.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::{Digest32, sha256};

use quorate_crypto::PublicKey;

use crate::cbor::read;
use crate::messages::common::{MessageError, ResponseRejected};
use crate::receipt::{self, Commitment, JOB_ID_LEN, JobKind, NONCE_LEN, ReceiptPayload};

/// Largest serialized compressed server key accepted (§16.2; tfhe 1.8 default: 57.4 MiB).
pub const MAX_SERVER_KEY_LEN: u64 = 80 << 20;
/// Largest chunk of a server-key upload (§16.3); fits the default 4 MiB request limit.
pub const MAX_KEY_CHUNK_LEN: usize = 1 << 20;
/// Largest input ciphertext list (§16.2; 8 features × 4 planes ≈ 19 KiB).
pub const MAX_INPUT_CIPHERTEXT_LEN: usize = 1 << 20;
/// Largest score ciphertext (§16.2; an `FheInt32` is about 258 KiB).
pub const MAX_SCORE_CIPHERTEXT_LEN: usize = 1 << 20;
/// Most scores one aggregation adds (§16.5).
pub const MAX_AGGREGATE_SCORES: usize = 8;

/// Model digest an aggregation receipt carries: SHA-256 of `quorate-fhe-sum/1` (§16.6).
pub fn aggregate_model_digest() -> Digest32 {
    sha256(b"quorate-fhe-sum/1")
}

pub(crate) mod ty {
    pub const KEY_CHUNK: u64 = 16;
    pub const EVAL: u64 = 17;
    pub const AGGREGATE: u64 = 18;
    pub const KEY_OK: u64 = 116;
    pub const EVAL_OK: u64 = 117;
    pub const AGGREGATE_OK: u64 = 118;
    pub const REQUESTS: [u64; 3] = [KEY_CHUNK, EVAL, AGGREGATE];
    pub const RESPONSES: [u64; 3] = [KEY_OK, EVAL_OK, AGGREGATE_OK];
}

/// An encrypted-inference request (§16.3–§16.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FheRequest {
    /// One chunk of a server-key upload.
    KeyChunk(KeyChunk),
    /// Evaluate a quantized linear model on encrypted features.
    Eval(EvalRequest),
    /// Add encrypted scores.
    Aggregate(AggregateRequest),
}

/// One chunk of a compressed server key (§16.3). Chunks arrive in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChunk {
    /// SHA-256 of the whole serialized key.
    pub key_digest: Digest32,
    /// Length of the whole serialized key.
    pub total_len: u64,
    /// Offset of this chunk in it.
    pub offset: u64,
    /// The chunk bytes.
    pub data: Vec<u8>,
}

/// Evaluation of one model on encrypted features (§16.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalRequest {
    /// Job id chosen by the client.
    pub job_id: [u8; JOB_ID_LEN],
    /// Fresh client nonce.
    pub nonce: Vec<u8>,
    /// SHA-256 of the qlinear model file.
    pub model: Digest32,
    /// Digest of the server key (already uploaded) to compute with.
    pub key_digest: Digest32,
    /// The encrypted input planes (a compact ciphertext list, §16.2).
    pub ciphertext: Vec<u8>,
}

/// Homomorphic sum of encrypted scores (§16.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateRequest {
    /// Job id chosen by the client.
    pub job_id: [u8; JOB_ID_LEN],
    /// Fresh client nonce.
    pub nonce: Vec<u8>,
    /// Digest of the server key to compute with.
    pub key_digest: Digest32,
    /// The encrypted scores to add.
    pub scores: Vec<Vec<u8>>,
}

/// An answer to an [`FheRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FheResponse {
    /// Upload progress (§16.3).
    KeyOk {
        /// The key being uploaded.
        key_digest: Digest32,
        /// Bytes received so far.
        received: u64,
        /// Whether the key is complete, checked and ready.
        ready: bool,
    },
    /// An encrypted score or sum with its receipt (§16.4, §16.5).
    Result {
        /// Whether this answers an aggregation (type 118) rather than an evaluation (117).
        aggregate: bool,
        /// The result ciphertext.
        ciphertext: Vec<u8>,
        /// The signed receipt (§16.6).
        receipt: Vec<u8>,
    },
}

fn job(f: &[Value]) -> Result<([u8; JOB_ID_LEN], Vec<u8>), MessageError> {
    Ok((
        read::bytes_n(&f[1], "job id")?,
        read::bytes_range(&f[2], "nonce", *NONCE_LEN.start(), *NONCE_LEN.end())?.to_vec(),
    ))
}

impl FheRequest {
    /// The map entries of its §16 encoding.
    pub(crate) fn entries(&self) -> Vec<(u64, Value)> {
        match self {
            FheRequest::KeyChunk(c) => vec![
                (1, read::int(ty::KEY_CHUNK)),
                (2, Value::Bytes(c.key_digest.to_vec())),
                (3, read::int(c.total_len)),
                (4, read::int(c.offset)),
                (5, Value::Bytes(c.data.clone())),
            ],
            FheRequest::Eval(r) => vec![
                (1, read::int(ty::EVAL)),
                (2, Value::Bytes(r.job_id.to_vec())),
                (3, Value::Bytes(r.nonce.clone())),
                (4, Value::Bytes(r.model.to_vec())),
                (5, Value::Bytes(r.key_digest.to_vec())),
                (6, Value::Bytes(r.ciphertext.clone())),
            ],
            FheRequest::Aggregate(r) => vec![
                (1, read::int(ty::AGGREGATE)),
                (2, Value::Bytes(r.job_id.to_vec())),
                (3, Value::Bytes(r.nonce.clone())),
                (4, Value::Bytes(r.key_digest.to_vec())),
                (
                    5,
                    Value::Array(r.scores.iter().map(|s| Value::Bytes(s.clone())).collect()),
                ),
            ],
        }
    }

    /// Whether `kind` is a §16 request type.
    pub(crate) fn is_type(kind: u64) -> bool {
        ty::REQUESTS.contains(&kind)
    }

    /// Decodes the fields (field 1 first) of a §16 request of type `kind`.
    pub(crate) fn decode(kind: u64, f: &[Value]) -> Result<Self, MessageError> {
        match (kind, f.len()) {
            (ty::KEY_CHUNK, 5) => {
                let c = KeyChunk {
                    key_digest: read::bytes_n(&f[1], "key digest")?,
                    total_len: read::uint(&f[2], "total length")?,
                    offset: read::uint(&f[3], "offset")?,
                    data: read::bytes_range(&f[4], "chunk", 1, MAX_KEY_CHUNK_LEN)?.to_vec(),
                };
                if c.total_len == 0 || c.total_len > MAX_SERVER_KEY_LEN {
                    return Err(MessageError(format!(
                        "server key length {} is outside 1..={MAX_SERVER_KEY_LEN}",
                        c.total_len
                    )));
                }
                if c.offset.saturating_add(c.data.len() as u64) > c.total_len {
                    return Err(MessageError("chunk ends past the key length".into()));
                }
                Ok(FheRequest::KeyChunk(c))
            }
            (ty::EVAL, 6) => {
                let (job_id, nonce) = job(f)?;
                Ok(FheRequest::Eval(EvalRequest {
                    job_id,
                    nonce,
                    model: read::bytes_n(&f[3], "model")?,
                    key_digest: read::bytes_n(&f[4], "key digest")?,
                    ciphertext: read::bytes_range(
                        &f[5],
                        "ciphertext",
                        1,
                        MAX_INPUT_CIPHERTEXT_LEN,
                    )?
                    .to_vec(),
                }))
            }
            (ty::AGGREGATE, 5) => {
                let (job_id, nonce) = job(f)?;
                let scores = read::array(&f[4], "scores", MAX_AGGREGATE_SCORES)?
                    .iter()
                    .map(|s| {
                        read::bytes_range(s, "score", 1, MAX_SCORE_CIPHERTEXT_LEN)
                            .map(<[u8]>::to_vec)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if scores.is_empty() {
                    return Err(MessageError(
                        "an aggregation needs at least one score".into(),
                    ));
                }
                Ok(FheRequest::Aggregate(AggregateRequest {
                    job_id,
                    nonce,
                    key_digest: read::bytes_n(&f[3], "key digest")?,
                    scores,
                }))
            }
            (k, n) => Err(MessageError(format!(
                "request type {k} with {n} fields is not defined"
            ))),
        }
    }
}

impl FheResponse {
    /// The map entries of its §16 encoding.
    pub(crate) fn entries(&self) -> Vec<(u64, Value)> {
        match self {
            FheResponse::KeyOk {
                key_digest,
                received,
                ready,
            } => vec![
                (1, read::int(ty::KEY_OK)),
                (2, Value::Bytes(key_digest.to_vec())),
                (3, read::int(*received)),
                (4, Value::Bool(*ready)),
            ],
            FheResponse::Result {
                aggregate,
                ciphertext,
                receipt,
            } => vec![
                (
                    1,
                    read::int(if *aggregate {
                        ty::AGGREGATE_OK
                    } else {
                        ty::EVAL_OK
                    }),
                ),
                (2, Value::Bytes(ciphertext.clone())),
                (3, Value::Bytes(receipt.clone())),
            ],
        }
    }

    /// Whether `kind` is a §16 response type.
    pub(crate) fn is_type(kind: u64) -> bool {
        ty::RESPONSES.contains(&kind)
    }

    /// Decodes the fields (field 1 first) of a §16 response of type `kind`.
    pub(crate) fn decode(kind: u64, f: &[Value]) -> Result<Self, MessageError> {
        match (kind, f.len()) {
            (ty::KEY_OK, 4) => {
                let received = read::uint(&f[2], "received")?;
                if received > MAX_SERVER_KEY_LEN {
                    return Err(MessageError("received exceeds the key limit".into()));
                }
                Ok(FheResponse::KeyOk {
                    key_digest: read::bytes_n(&f[1], "key digest")?,
                    received,
                    ready: read::boolean(&f[3], "ready")?,
                })
            }
            (ty::EVAL_OK | ty::AGGREGATE_OK, 3) => Ok(FheResponse::Result {
                aggregate: kind == ty::AGGREGATE_OK,
                ciphertext: read::bytes_range(&f[1], "ciphertext", 1, MAX_SCORE_CIPHERTEXT_LEN)?
                    .to_vec(),
                receipt: read::bytes_range(&f[2], "receipt", 1, crate::receipt::MAX_RECEIPT_LEN)?
                    .to_vec(),
            }),
            (k, n) => Err(MessageError(format!(
                "response type {k} with {n} fields is not defined"
            ))),
        }
    }
}

/// Names of the commitments in an encrypted-inference receipt (§16.6).
pub mod commitment {
    /// The input ciphertext list of an evaluation.
    pub const INPUT: &str = "fhe:input";
    /// The server key computed with.
    pub const SERVER_KEY: &str = "fhe:server-key";
    /// The encrypted score of an evaluation.
    pub const SCORE: &str = "fhe:score";
    /// The `i`-th score of an aggregation is `fhe:score.{i}`.
    pub const SCORE_PREFIX: &str = "fhe:score.";
    /// The encrypted sum of an aggregation.
    pub const SUM: &str = "fhe:sum";
}

/// The commitments of a receipt over an evaluation (§16.6): inputs `fhe:input` (SHA-256 of
/// the input ciphertext bytes) and `fhe:server-key` (the key digest), output `fhe:score`.
pub fn eval_commitments(req: &EvalRequest, score: &[u8]) -> (Vec<Commitment>, Vec<Commitment>) {
    (
        vec![
            blob(commitment::INPUT, sha256(&req.ciphertext)),
            blob(commitment::SERVER_KEY, req.key_digest),
        ],
        vec![blob(commitment::SCORE, sha256(score))],
    )
}

/// The commitments of a receipt over an aggregation (§16.6): inputs `fhe:score.0`, … and
/// `fhe:server-key`, output `fhe:sum`.
pub fn aggregate_commitments(
    req: &AggregateRequest,
    sum: &[u8],
) -> (Vec<Commitment>, Vec<Commitment>) {
    let mut inputs: Vec<Commitment> = req
        .scores
        .iter()
        .enumerate()
        .map(|(i, s)| Commitment {
            name: format!("{}{i}", commitment::SCORE_PREFIX),
            digest: sha256(s),
            salted: false,
        })
        .collect();
    inputs.push(blob(commitment::SERVER_KEY, req.key_digest));
    (inputs, vec![blob(commitment::SUM, sha256(sum))])
}

fn blob(name: &str, digest: Digest32) -> Commitment {
    Commitment {
        name: name.to_string(),
        digest,
        salted: false,
    }
}

/// What a client expects of an encrypted-inference receipt.
pub struct Expected<'a> {
    /// Job id sent.
    pub job_id: &'a [u8; JOB_ID_LEN],
    /// Nonce sent.
    pub nonce: &'a [u8],
    /// Model digest (the sum digest of [`aggregate_model_digest`] for aggregations).
    pub model: Digest32,
    /// Input commitments expected.
    pub inputs: Vec<Commitment>,
    /// Output commitments expected.
    pub outputs: Vec<Commitment>,
}

/// Checks a receipt returned with an encrypted result (§16.6): the node's signature, kind
/// `fhe-member`, job id, nonce, model, and every commitment against the bytes actually sent
/// and received.
pub fn check_receipt(
    receipt_bytes: &[u8],
    expected: &Expected<'_>,
    node_key: &PublicKey,
) -> Result<ReceiptPayload, ResponseRejected> {
    let r = receipt::parse(receipt_bytes).map_err(|e| ResponseRejected::Receipt(e.to_string()))?;
    r.sign1
        .verify(node_key)
        .map_err(|e| ResponseRejected::Receipt(e.to_string()))?;
    let p = r.payload;
    let mismatch = ResponseRejected::Mismatch;
    if p.kind != JobKind::FheMember {
        return Err(mismatch("job kind"));
    }
    if &p.job_id != expected.job_id || p.nonce != expected.nonce {
        return Err(mismatch("job id or nonce"));
    }
    if p.model_digest != expected.model {
        return Err(mismatch("model digest"));
    }
    if p.policy.is_some() || p.previous.is_some() {
        return Err(mismatch("policy or previous receipt"));
    }
    if p.inputs != expected.inputs {
        return Err(mismatch("input ciphertext or server key commitments"));
    }
    if p.outputs != expected.outputs {
        return Err(mismatch("result ciphertext commitment"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Request, Response};

    fn all_requests() -> Vec<FheRequest> {
        vec![
            FheRequest::KeyChunk(KeyChunk {
                key_digest: [1; 32],
                total_len: 10,
                offset: 4,
                data: vec![7; 6],
            }),
            FheRequest::Eval(EvalRequest {
                job_id: [2; 16],
                nonce: vec![3; 16],
                model: [4; 32],
                key_digest: [5; 32],
                ciphertext: vec![6; 100],
            }),
            FheRequest::Aggregate(AggregateRequest {
                job_id: [2; 16],
                nonce: vec![3; 16],
                key_digest: [5; 32],
                scores: vec![vec![1; 10], vec![2; 10]],
            }),
        ]
    }

    #[test]
    fn fhe_messages_roundtrip() {
        for r in all_requests() {
            let r = Request::Fhe(r);
            assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        }
        for r in [
            FheResponse::KeyOk {
                key_digest: [1; 32],
                received: 5,
                ready: false,
            },
            FheResponse::Result {
                aggregate: true,
                ciphertext: vec![1; 5],
                receipt: vec![2; 5],
            },
            FheResponse::Result {
                aggregate: false,
                ciphertext: vec![1; 5],
                receipt: vec![2; 5],
            },
        ] {
            let r = Response::Fhe(r);
            assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn fhe_bounds_are_enforced() {
        let chunk = |total_len, offset, len| {
            Request::Fhe(FheRequest::KeyChunk(KeyChunk {
                key_digest: [1; 32],
                total_len,
                offset,
                data: vec![0; len],
            }))
            .encode()
            .unwrap()
        };
        assert!(Request::decode(&chunk(10, 8, 4)).is_err(), "past the end");
        assert!(Request::decode(&chunk(MAX_SERVER_KEY_LEN + 1, 0, 4)).is_err());
        assert!(Request::decode(&chunk(10, 0, 0)).is_err(), "empty chunk");
        assert!(Request::decode(&chunk(u64::MAX, u64::MAX, 4)).is_err());
        let big = Request::Fhe(FheRequest::Eval(EvalRequest {
            job_id: [2; 16],
            nonce: vec![3; 16],
            model: [4; 32],
            key_digest: [5; 32],
            ciphertext: vec![6; MAX_INPUT_CIPHERTEXT_LEN + 1],
        }));
        assert!(Request::decode(&big.encode().unwrap()).is_err());
        let none = Request::Fhe(FheRequest::Aggregate(AggregateRequest {
            job_id: [2; 16],
            nonce: vec![3; 16],
            key_digest: [5; 32],
            scores: vec![],
        }));
        assert!(Request::decode(&none.encode().unwrap()).is_err());
    }
}
