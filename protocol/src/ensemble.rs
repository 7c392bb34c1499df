//! Private ensembles (§15): job parameters, the mesh messages that carry secure-aggregation
//! rounds between an aggregator and member nodes, the transcript and the aggregate receipt.
//!
//! The SecAgg machinery itself is §9 (`crate::secagg`); this module binds its rounds to a
//! mesh job id and round number (§15.3), and records what an offline auditor needs to
//! recompute the aggregator's result (§15.5).

use ciborium::value::Value;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN, sha256};
use quorate_crypto::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};

use crate::cbor::{self, read};
use crate::cose::{self, CoseError, UncheckedSign1};
use crate::messages::MessageError;
use crate::receipt::{Commitment, JOB_ID_LEN, NONCE_LEN};
use crate::secagg::config::{GraphKind, RoundConfig};
use crate::tensor::{DType, MAX_NAME_LEN, Tensor};

/// Most members of one ensemble.
pub const MAX_MEMBERS: usize = 64;
/// Most classes (elements per contribution).
pub const MAX_CLASSES: usize = 1024;
/// Largest SecAgg envelope carried in one round message (bytes).
pub const MAX_ROUND_MESSAGE: usize = 1 << 20;
/// Largest aggregate receipt.
pub const MAX_AGGREGATE_LEN: usize = 256 << 10;
/// Largest transcript file.
pub const MAX_TRANSCRIPT_LEN: usize = 16 << 20;
/// Content type of an aggregate receipt (§15.5).
pub const AGGREGATE_CONTENT_TYPE: &str = "application/vnd.quorate.ensemble-aggregate+cbor";
/// Name of the output commitment in a member receipt: the packed masked vector (§15.4).
pub const MASKED_INPUT_NAME: &str = "secagg_masked_input";
/// Domain tag of the parameters digest.
pub const TAG_PARAMS: &[u8] = b"quorate/v1/ensemble/params\0";
/// Domain tag of the transcript digest.
pub const TAG_TRANSCRIPT: &[u8] = b"quorate/v1/ensemble/transcript\0";
/// Round number of an abort notice (§15.3).
pub const ROUND_ABORT: u8 = 5;

/// What members contribute (§15.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fixed-point class probabilities; the result is their mean.
    Mean,
    /// One-hot votes for the arg-max class; the result is the vote histogram.
    Votes,
}

impl Mode {
    /// Wire code.
    pub fn code(self) -> u64 {
        match self {
            Mode::Mean => 1,
            Mode::Votes => 2,
        }
    }
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mean => "mean",
            Mode::Votes => "votes",
        }
    }
}

/// Distributed DP noise parameters (§15.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseParams {
    /// Target ε, in millionths.
    pub epsilon_micro: u64,
    /// Target δ, in 10^-12 units.
    pub delta_pico: u64,
    /// Skellam parameter μ of each member's noise, in thousandths.
    pub mu_milli: u64,
    /// Each member's noise is clipped to `[-bound, bound]` and offset by `bound`.
    pub bound: u64,
}

/// Everything members and aggregator agree on for one ensemble job (§15.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleParams {
    /// Contribution mode.
    pub mode: Mode,
    /// Fresh SecAgg session id.
    pub session_id: [u8; 32],
    /// The aggregator's identity key: the only peer whose rounds a member answers (§17).
    pub aggregator: PublicKey,
    /// Member nodes' identity keys; a member's SecAgg index is its position.
    pub members: Vec<PublicKey>,
    /// The model each member runs, in member order; each MUST be one the roster lists for
    /// that member (§15.2).
    pub models: Vec<Digest32>,
    /// Classes `K` = SecAgg vector length.
    pub classes: u32,
    /// SecAgg modulus bits.
    pub modulus_bits: u32,
    /// Shamir threshold.
    pub threshold: u32,
    /// Fewest contributors the aggregator may learn a sum of.
    pub min_survivors: u32,
    /// Fixed-point scale is 2^scale_bits (mean mode; 0 for votes).
    pub scale_bits: u32,
    /// Optional DP noise.
    pub noise: Option<NoiseParams>,
}

fn int(v: u64) -> Value {
    read::int(v)
}

fn bad(m: impl Into<String>) -> MessageError {
    MessageError(m.into())
}

impl EnsembleParams {
    /// Builds parameters with the smallest modulus that fits the overflow budget.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        session_id: [u8; 32],
        aggregator: PublicKey,
        members: Vec<PublicKey>,
        models: Vec<Digest32>,
        classes: u32,
        threshold: u32,
        noise: Option<NoiseParams>,
    ) -> Result<Self, MessageError> {
        let mut p = Self {
            mode,
            session_id,
            aggregator,
            min_survivors: threshold,
            members,
            models,
            classes,
            modulus_bits: 64,
            threshold,
            scale_bits: if mode == Mode::Mean { 16 } else { 0 },
            noise,
        };
        let total = (p.members.len() as u128) * u128::from(p.max_input()?);
        p.modulus_bits = (128 - total.leading_zeros()).clamp(1, 64);
        p.validate()?;
        Ok(p)
    }

    /// `offset` per contribution: the fixed-point offset plus the noise offset.
    pub fn offset(&self) -> u64 {
        let base = match self.mode {
            Mode::Mean => 1u64 << self.scale_bits,
            Mode::Votes => 0,
        };
        base + self.noise.map_or(0, |n| n.bound)
    }

    /// The largest element any member may contribute (§15.2).
    pub fn max_input(&self) -> Result<u64, MessageError> {
        let base = match self.mode {
            Mode::Mean => 2u64 << self.scale_bits,
            Mode::Votes => 1,
        };
        let noise = self.noise.map_or(0, |n| n.bound);
        noise
            .checked_mul(2)
            .and_then(|n| n.checked_add(base))
            .ok_or_else(|| bad("noise bound too large"))
    }

    /// Checks the §15.2 rules and the §9.3 rules of the derived round.
    pub fn validate(&self) -> Result<(), MessageError> {
        if !(2..=MAX_MEMBERS).contains(&self.members.len()) {
            return Err(bad(format!(
                "{} members: an ensemble has 2 to {MAX_MEMBERS}",
                self.members.len()
            )));
        }
        if self.models.len() != self.members.len() {
            return Err(bad(format!(
                "{} models for {} members: one model per member",
                self.models.len(),
                self.members.len()
            )));
        }
        if self.members.contains(&self.aggregator) {
            return Err(bad("the aggregator cannot be one of the members"));
        }
        if !(1..=MAX_CLASSES as u32).contains(&self.classes) {
            return Err(bad(format!(
                "{} classes is outside 1..={MAX_CLASSES}",
                self.classes
            )));
        }
        match self.mode {
            Mode::Mean if !(1..=30).contains(&self.scale_bits) => {
                return Err(bad("mean mode needs scale_bits in 1..=30"));
            }
            Mode::Votes if self.scale_bits != 0 => {
                return Err(bad("votes mode needs scale_bits 0"));
            }
            _ => {}
        }
        // §9.3: against a semi-malicious aggregator the full graph needs 2t > n.
        if 2 * self.threshold as usize <= self.members.len() {
            return Err(bad(format!(
                "threshold {} must exceed half of the {} members",
                self.threshold,
                self.members.len()
            )));
        }
        if let Some(n) = self.noise
            && (n.bound > 1 << 40 || n.epsilon_micro == 0 || n.delta_pico == 0)
        {
            return Err(bad("noise parameters out of range"));
        }
        self.round_config()
            .validate()
            .map_err(|e| bad(format!("round configuration: {e}")))
    }

    /// The SecAgg round this job runs (§15.2): full graph, `max_input` as above.
    pub fn round_config(&self) -> RoundConfig {
        RoundConfig {
            session_id: self.session_id,
            roster: self.members.clone(),
            vector_len: self.classes as usize,
            modulus_bits: self.modulus_bits,
            threshold: self.threshold as usize,
            min_survivors: self.min_survivors as usize,
            graph: GraphKind::Full,
            max_input: self.max_input().unwrap_or(u64::MAX),
        }
    }

    /// The CBOR map of §15.2.
    pub fn to_value(&self) -> Value {
        let noise = match self.noise {
            None => Value::Null,
            Some(n) => Value::Map(vec![
                (int(1), int(n.epsilon_micro)),
                (int(2), int(n.delta_pico)),
                (int(3), int(n.mu_milli)),
                (int(4), int(n.bound)),
            ]),
        };
        Value::Map(vec![
            (int(1), int(self.mode.code())),
            (int(2), Value::Bytes(self.session_id.to_vec())),
            (
                int(3),
                Value::Array(
                    self.members
                        .iter()
                        .map(|k| Value::Bytes(k.to_bytes().to_vec()))
                        .collect(),
                ),
            ),
            (int(4), int(self.classes.into())),
            (int(5), int(self.modulus_bits.into())),
            (int(6), int(self.threshold.into())),
            (int(7), int(self.min_survivors.into())),
            (int(8), int(self.scale_bits.into())),
            (int(9), noise),
            (int(10), Value::Bytes(self.aggregator.to_bytes().to_vec())),
            (
                int(11),
                Value::Array(
                    self.models
                        .iter()
                        .map(|m| Value::Bytes(m.to_vec()))
                        .collect(),
                ),
            ),
        ])
    }

    /// Strict decoding of the §15.2 map, then [`Self::validate`].
    pub fn from_value(v: &Value) -> Result<Self, MessageError> {
        let f = exact_fields(v, "params", 11)?;
        let u32_of = |v: &Value, name: &'static str| -> Result<u32, MessageError> {
            u32::try_from(read::uint(v, name)?).map_err(|_| bad(format!("{name} too large")))
        };
        let mode = match read::uint(f[0], "mode")? {
            1 => Mode::Mean,
            2 => Mode::Votes,
            m => return Err(bad(format!("unknown mode {m}"))),
        };
        let members = read::array(f[2], "members", MAX_MEMBERS)?
            .iter()
            .map(|k| {
                let b: [u8; 32] = read::bytes_n(k, "member key")?;
                PublicKey::from_bytes(&b).map_err(|e| bad(format!("member key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let noise = match f[8] {
            Value::Null => None,
            v => {
                let n = exact_fields(v, "noise", 4)?;
                Some(NoiseParams {
                    epsilon_micro: read::uint(n[0], "epsilon")?,
                    delta_pico: read::uint(n[1], "delta")?,
                    mu_milli: read::uint(n[2], "mu")?,
                    bound: read::uint(n[3], "noise bound")?,
                })
            }
        };
        let aggregator: [u8; 32] = read::bytes_n(f[9], "aggregator key")?;
        let models = read::array(f[10], "models", MAX_MEMBERS)?
            .iter()
            .map(|m| read::bytes_n::<32>(m, "member model"))
            .collect::<Result<Vec<_>, _>>()?;
        let p = Self {
            mode,
            session_id: read::bytes_n(f[1], "session id")?,
            aggregator: PublicKey::from_bytes(&aggregator)
                .map_err(|e| bad(format!("aggregator key: {e}")))?,
            members,
            models,
            classes: u32_of(f[3], "classes")?,
            modulus_bits: u32_of(f[4], "modulus bits")?,
            threshold: u32_of(f[5], "threshold")?,
            min_survivors: u32_of(f[6], "min survivors")?,
            scale_bits: u32_of(f[7], "scale bits")?,
            noise,
        };
        p.validate()?;
        Ok(p)
    }

    /// SHA-256(tag ‖ CBOR(params)): bound into member receipts as `policy` (§15.4).
    pub fn digest(&self) -> Digest32 {
        let bytes = cbor::encode(&self.to_value()).unwrap_or_default();
        Sha256::new()
            .chain_update(TAG_PARAMS)
            .chain_update(bytes)
            .finalize()
            .into()
    }

    /// Decodes a SecAgg sum of `contributors` contributions (§15.2): mean probabilities in
    /// mean mode, vote counts in votes mode. Noise offsets are removed, noise itself stays.
    pub fn decode_sum(&self, sum: &[u64], contributors: usize) -> Vec<f64> {
        let base = i128::from(self.offset()) * contributors as i128;
        sum.iter()
            .map(|&s| {
                let v = (i128::from(s) - base) as f64;
                match self.mode {
                    Mode::Mean => v / (1u64 << self.scale_bits) as f64 / contributors.max(1) as f64,
                    Mode::Votes => v,
                }
            })
            .collect()
    }
}

/// Reads a map whose keys are exactly 1..=n in order.
pub(crate) fn exact_fields<'a>(
    v: &'a Value,
    what: &'static str,
    n: u64,
) -> Result<Vec<&'a Value>, MessageError> {
    let allowed: Vec<u64> = (1..=n).collect();
    let m = read::int_map(v, what, &allowed)?;
    if m.len() as u64 != n || m.iter().enumerate().any(|(i, (k, _))| *k != i as u64 + 1) {
        return Err(bad(format!("{what}: fields must be exactly 1..={n}")));
    }
    Ok(m.into_iter().map(|(_, v)| v).collect())
}

/// First request of an ensemble job (§15.3): the member runs its model on `inputs` and
/// answers with its SecAgg round-0 message.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleStart {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: Vec<u8>,
    /// The model this member runs.
    pub model: Digest32,
    /// The client's input tensors.
    pub inputs: Vec<Tensor>,
    /// Job parameters.
    pub params: EnsembleParams,
    /// This member's index in `params.members`.
    pub index: u32,
    /// One salt per input, the same for every member: input commitments are salted (§3.3,
    /// §15.4) so receipts do not let anyone brute-force low-entropy features.
    pub input_salts: Vec<[u8; SALT_LEN]>,
}

/// A SecAgg server message for round `round` of job `job_id` (§15.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleRound {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// 1..=4 (the SecAgg server message kind), or 5 for an abort notice.
    pub round: u8,
    /// The encoded SecAgg server message.
    pub message: Vec<u8>,
}

/// A member's answer (§15.3): its SecAgg client message of round `round`, and in round 2
/// its member receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleReply {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// 0..=4, or 5 acknowledging an abort notice.
    pub round: u8,
    /// The signed SecAgg client envelope (empty for round 4 with nothing to say, or 5).
    pub message: Vec<u8>,
    /// The member receipt, in round 2 only.
    pub receipt: Option<Vec<u8>>,
}

impl EnsembleStart {
    pub(crate) fn fields(&self, tensors: Value) -> Vec<(u64, Value)> {
        vec![
            (2, Value::Bytes(self.job_id.to_vec())),
            (3, Value::Bytes(self.nonce.clone())),
            (4, Value::Bytes(self.model.to_vec())),
            (5, tensors),
            (6, self.params.to_value()),
            (7, int(self.index.into())),
            (
                8,
                Value::Array(
                    self.input_salts
                        .iter()
                        .map(|s| Value::Bytes(s.to_vec()))
                        .collect(),
                ),
            ),
        ]
    }

    pub(crate) fn from_fields(f: &[Value], inputs: Vec<Tensor>) -> Result<Self, MessageError> {
        let params = EnsembleParams::from_value(&f[5])?;
        let index = read::uint(&f[6], "index")?;
        if index >= params.members.len() as u64 {
            return Err(bad(format!(
                "member index {index} is not on the member list"
            )));
        }
        let model: Digest32 = read::bytes_n(&f[3], "model")?;
        if params.models.get(index as usize) != Some(&model) {
            return Err(bad(
                "the model is not the one the parameters list for this member",
            ));
        }
        let input_salts = read::array(&f[7], "input salts", crate::messages::MAX_TENSORS)?
            .iter()
            .map(|s| read::bytes_n::<SALT_LEN>(s, "input salt"))
            .collect::<Result<Vec<_>, _>>()?;
        if input_salts.len() != inputs.len() {
            return Err(bad(format!(
                "{} input salts for {} inputs: one salt per input",
                input_salts.len(),
                inputs.len()
            )));
        }
        Ok(Self {
            job_id: read::bytes_n(&f[1], "job id")?,
            nonce: read::bytes_range(&f[2], "nonce", *NONCE_LEN.start(), *NONCE_LEN.end())?
                .to_vec(),
            model: read::bytes_n(&f[3], "model")?,
            inputs,
            params,
            index: index as u32,
            input_salts,
        })
    }
}

impl EnsembleRound {
    pub(crate) fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (2, Value::Bytes(self.job_id.to_vec())),
            (3, int(self.round.into())),
            (4, Value::Bytes(self.message.clone())),
        ]
    }

    pub(crate) fn from_fields(f: &[Value]) -> Result<Self, MessageError> {
        let round = read::uint(&f[2], "round")?;
        if !(1..=u64::from(ROUND_ABORT)).contains(&round) {
            return Err(bad(format!("round {round} is outside 1..=5")));
        }
        Ok(Self {
            job_id: read::bytes_n(&f[1], "job id")?,
            round: round as u8,
            message: read::bytes_range(&f[3], "round message", 1, MAX_ROUND_MESSAGE)?.to_vec(),
        })
    }
}

impl EnsembleReply {
    pub(crate) fn fields(&self) -> Vec<(u64, Value)> {
        vec![
            (2, Value::Bytes(self.job_id.to_vec())),
            (3, int(self.round.into())),
            (4, Value::Bytes(self.message.clone())),
            (
                5,
                self.receipt
                    .as_ref()
                    .map_or(Value::Null, |r| Value::Bytes(r.clone())),
            ),
        ]
    }

    pub(crate) fn from_fields(f: &[Value]) -> Result<Self, MessageError> {
        let round = read::uint(&f[2], "round")?;
        if round > u64::from(ROUND_ABORT) {
            return Err(bad(format!("round {round} is outside 0..=5")));
        }
        let receipt = match &f[4] {
            Value::Null => None,
            v => {
                Some(read::bytes_range(v, "receipt", 1, crate::receipt::MAX_RECEIPT_LEN)?.to_vec())
            }
        };
        Ok(Self {
            job_id: read::bytes_n(&f[1], "job id")?,
            round: round as u8,
            message: read::bytes_range(&f[3], "round message", 0, MAX_ROUND_MESSAGE)?.to_vec(),
            receipt,
        })
    }
}

/// The tensor a member receipt commits to as its output: the packed masked vector as
/// `uint8[len]` (§15.4). Its plain (§3.2) digest is what the receipt carries.
pub fn masked_tensor(packed: &[u8]) -> Result<Tensor, MessageError> {
    Ok(Tensor::new(
        MASKED_INPUT_NAME,
        DType::U8,
        vec![packed.len() as u64],
        packed.to_vec(),
    )?)
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
        let inputs = read::array(f[5], "inputs", crate::messages::MAX_TENSORS)?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mode: Mode) -> EnsembleParams {
        let members = (0..5u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]).public_key())
            .collect();
        let aggregator = SecretKey::from_seed(&[99; 32]).public_key();
        EnsembleParams::new(
            mode,
            [7; 32],
            aggregator,
            members,
            vec![[4; 32]; 5],
            2,
            3,
            None,
        )
        .unwrap()
    }

    #[test]
    fn params_roundtrip_and_modulus_fits_the_budget() {
        for mode in [Mode::Mean, Mode::Votes] {
            let p = params(mode);
            assert_eq!(EnsembleParams::from_value(&p.to_value()).unwrap(), p);
            let total = 5u128 * u128::from(p.max_input().unwrap());
            assert!(total < 1u128 << p.modulus_bits);
            assert!(total >= 1u128 << (p.modulus_bits - 1));
        }
        assert_eq!(params(Mode::Votes).modulus_bits, 3);
    }

    #[test]
    fn bad_params_are_rejected() {
        let mut p = params(Mode::Mean);
        p.threshold = 9;
        assert!(EnsembleParams::from_value(&p.to_value()).is_err());
        let mut p = params(Mode::Mean);
        p.modulus_bits = 2;
        assert!(EnsembleParams::from_value(&p.to_value()).is_err());
        let mut p = params(Mode::Mean);
        p.threshold = 2;
        p.min_survivors = 2;
        assert!(p.validate().is_err(), "2t > n is required");
        let mut p = params(Mode::Votes);
        p.members.truncate(1);
        assert!(p.validate().is_err());
    }

    #[test]
    fn decode_removes_offsets() {
        let p = params(Mode::Mean);
        let s = 1u64 << 16;
        // Two contributions of 0.25 and 0.75 on class 0.
        let sum = [(s / 4 + s) + (3 * s / 4 + s)];
        assert_eq!(p.decode_sum(&sum, 2), vec![0.5]);
    }
}
