//! What an aggregator signs and an auditor replays (§15.5): the transcript of accepted
//! SecAgg client messages, its digest, and the aggregate receipt.

use ciborium::value::Value;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::{Digest32, sha256};
use sha2::{Digest, Sha256};

use super::params::{EnsembleParams, exact_fields};
use super::{
    AGGREGATE_CONTENT_TYPE, MAX_AGGREGATE_LEN, MAX_MEMBERS, MAX_ROUND_MESSAGE, MAX_TRANSCRIPT_LEN,
    TAG_TRANSCRIPT,
};
use crate::cbor::{self, read};
use crate::cose::{self, CoseError, UncheckedSign1};
use crate::messages::common::{MAX_TENSORS, MessageError};
use crate::receipt::{Commitment, JOB_ID_LEN, NONCE_LEN};
use crate::tensor::MAX_NAME_LEN;

fn int(v: u64) -> Value {
    read::int(v)
}

fn bad(m: impl Into<String>) -> MessageError {
    MessageError(m.into())
}

/// One accepted SecAgg client message (§15.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// Sender's member index.
    pub member: u32,
    /// SecAgg round 0..=4.
    pub round: u8,
    /// The signed envelope, as received.
    pub envelope: Vec<u8>,
}

/// Encodes a transcript: `[* [member, round, envelope]]` in acceptance order.
pub fn encode_transcript(entries: &[TranscriptEntry]) -> Result<Vec<u8>, MessageError> {
    Ok(cbor::encode(&Value::Array(
        entries
            .iter()
            .map(|e| {
                Value::Array(vec![
                    int(e.member.into()),
                    int(e.round.into()),
                    Value::Bytes(e.envelope.clone()),
                ])
            })
            .collect(),
    ))?)
}

/// Strict decoding of a transcript.
pub fn decode_transcript(bytes: &[u8]) -> Result<Vec<TranscriptEntry>, MessageError> {
    let v = cbor::decode_deterministic(bytes, MAX_TRANSCRIPT_LEN)?;
    read::array(&v, "transcript", 5 * MAX_MEMBERS)?
        .iter()
        .map(|e| {
            let [m, r, env] = read::array(e, "transcript entry", 3)? else {
                return Err(bad("a transcript entry is [member, round, envelope]"));
            };
            let member = read::uint(m, "member")?;
            let round = read::uint(r, "round")?;
            if member >= MAX_MEMBERS as u64 || round > 4 {
                return Err(bad("transcript member or round out of range"));
            }
            Ok(TranscriptEntry {
                member: member as u32,
                round: round as u8,
                envelope: read::bytes_range(env, "envelope", 1, MAX_ROUND_MESSAGE)?.to_vec(),
            })
        })
        .collect()
}

/// The transcript digest bound in the aggregate receipt.
pub fn transcript_digest(bytes: &[u8]) -> Digest32 {
    Sha256::new()
        .chain_update(TAG_TRANSCRIPT)
        .chain_update(bytes)
        .finalize()
        .into()
}

/// The signed content of an aggregate receipt (§15.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatePayload {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: Vec<u8>,
    /// Job parameters.
    pub params: EnsembleParams,
    /// Model digest per member, in member order.
    pub models: Vec<Digest32>,
    /// Commitments (plain) to the client's input tensors.
    pub inputs: Vec<Commitment>,
    /// Members whose inputs are in the sum (SecAgg U3), ascending.
    pub contributors: Vec<u32>,
    /// Members whose inputs are not, ascending.
    pub dropped: Vec<u32>,
    /// The SecAgg sum mod 2^b.
    pub sum: Vec<u64>,
    /// [`transcript_digest`] of the transcript file.
    pub transcript: Digest32,
    /// `(member, receipt digest)` of each contributor's member receipt.
    pub member_receipts: Vec<(u32, Digest32)>,
    /// Unix seconds at signing.
    pub issued_at: u64,
    /// ε actually achieved with `contributors` noisy contributions, in millionths.
    pub epsilon_achieved_micro: Option<u64>,
}

fn uints(v: &[u32]) -> Value {
    Value::Array(v.iter().map(|&x| int(x.into())).collect())
}

fn uints_from(v: &Value, what: &'static str, max: usize) -> Result<Vec<u32>, MessageError> {
    let out: Vec<u32> = read::array(v, what, max)?
        .iter()
        .map(|x| {
            read::uint(x, what).and_then(|x| {
                u32::try_from(x).map_err(|_| read::FieldError {
                    field: what,
                    problem: "too large".into(),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    if out.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad(format!("{what} must be strictly ascending")));
    }
    Ok(out)
}

impl AggregatePayload {
    /// Deterministic CBOR of §15.5.
    pub fn to_cbor(&self) -> Result<Vec<u8>, MessageError> {
        let commitments = Value::Array(
            self.inputs
                .iter()
                .map(|c| {
                    Value::Array(vec![
                        Value::Text(c.name.clone()),
                        Value::Bytes(c.digest.to_vec()),
                        Value::Bool(c.salted),
                    ])
                })
                .collect(),
        );
        let v = Value::Map(vec![
            (int(1), int(1)),
            (int(2), Value::Bytes(self.job_id.to_vec())),
            (int(3), Value::Bytes(self.nonce.clone())),
            (int(4), self.params.to_value()),
            (
                int(5),
                Value::Array(
                    self.models
                        .iter()
                        .map(|m| Value::Bytes(m.to_vec()))
                        .collect(),
                ),
            ),
            (int(6), commitments),
            (int(7), uints(&self.contributors)),
            (int(8), uints(&self.dropped)),
            (
                int(9),
                Value::Array(self.sum.iter().map(|&s| int(s)).collect()),
            ),
            (int(10), Value::Bytes(self.transcript.to_vec())),
            (
                int(11),
                Value::Array(
                    self.member_receipts
                        .iter()
                        .map(|(m, d)| {
                            Value::Array(vec![int((*m).into()), Value::Bytes(d.to_vec())])
                        })
                        .collect(),
                ),
            ),
            (int(12), int(self.issued_at)),
            (
                int(13),
                self.epsilon_achieved_micro.map_or(Value::Null, int),
            ),
        ]);
        Ok(cbor::encode(&v)?)
    }

    /// Strict decoding.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, MessageError> {
        let v = cbor::decode_deterministic(bytes, MAX_AGGREGATE_LEN)?;
        let f = exact_fields(&v, "aggregate", 13)?;
        if read::uint(f[0], "version")? != 1 {
            return Err(bad("unsupported aggregate receipt version"));
        }
        let params = EnsembleParams::from_value(f[3])?;
        let n = params.members.len();
        let models = read::array(f[4], "models", n)?
            .iter()
            .map(|m| read::bytes_n(m, "model"))
            .collect::<Result<Vec<Digest32>, _>>()?;
        if models.len() != n {
            return Err(bad("one model digest per member is required"));
        }
        let inputs = read::array(f[5], "inputs", MAX_TENSORS)?
            .iter()
            .map(|c| {
                let [name, digest, salted] = read::array(c, "input commitment", 3)? else {
                    return Err(bad("a commitment is [name, digest, salted]"));
                };
                Ok(Commitment {
                    name: read::text(name, "name", MAX_NAME_LEN)?.to_string(),
                    digest: read::bytes_n(digest, "digest")?,
                    salted: read::boolean(salted, "salted")?,
                })
            })
            .collect::<Result<Vec<_>, MessageError>>()?;
        let sum = read::array(f[8], "sum", params.classes as usize)?
            .iter()
            .map(|s| read::uint(s, "sum"))
            .collect::<Result<Vec<_>, _>>()?;
        let member_receipts = read::array(f[10], "member receipts", n)?
            .iter()
            .map(|e| {
                let [m, d] = read::array(e, "member receipt", 2)? else {
                    return Err(bad("a member receipt entry is [member, digest]"));
                };
                Ok((read::uint(m, "member")? as u32, read::bytes_n(d, "digest")?))
            })
            .collect::<Result<Vec<_>, MessageError>>()?;
        Ok(Self {
            job_id: read::bytes_n(f[1], "job id")?,
            nonce: read::bytes_range(f[2], "nonce", *NONCE_LEN.start(), *NONCE_LEN.end())?.to_vec(),
            models,
            inputs,
            contributors: uints_from(f[6], "contributors", n)?,
            dropped: uints_from(f[7], "dropped", n)?,
            sum,
            transcript: read::bytes_n(f[9], "transcript")?,
            member_receipts,
            issued_at: read::uint(f[11], "issued_at")?,
            epsilon_achieved_micro: match f[12] {
                Value::Null => None,
                v => Some(read::uint(v, "epsilon achieved")?),
            },
            params,
        })
    }

    /// Signs as a COSE_Sign1 with the aggregator's key.
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, CoseError> {
        let payload = self.to_cbor().map_err(|e| CoseError::Structure(e.0))?;
        cose::sign(payload, AGGREGATE_CONTENT_TYPE, key)
    }
}

/// A parsed aggregate receipt whose signature is not yet checked.
#[derive(Debug, Clone)]
pub struct UncheckedAggregate {
    /// The COSE layer.
    pub sign1: UncheckedSign1,
    /// The payload.
    pub payload: AggregatePayload,
}

/// Parses an aggregate receipt strictly.
pub fn parse_aggregate(bytes: &[u8]) -> Result<UncheckedAggregate, MessageError> {
    let sign1 = cose::parse(bytes, AGGREGATE_CONTENT_TYPE, MAX_AGGREGATE_LEN)
        .map_err(|e| bad(e.to_string()))?;
    let payload = AggregatePayload::from_cbor(&sign1.payload)?;
    Ok(UncheckedAggregate { sign1, payload })
}

/// Whether `bytes` look like an aggregate receipt (the content type parses).
pub fn is_aggregate(bytes: &[u8]) -> bool {
    cose::parse(bytes, AGGREGATE_CONTENT_TYPE, MAX_AGGREGATE_LEN).is_ok()
}

/// SHA-256 of a file, for the member receipt digests (§4.5).
pub fn receipt_digest(bytes: &[u8]) -> Digest32 {
    sha256(bytes)
}
