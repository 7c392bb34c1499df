//! Receipt chains of pipeline jobs (§13.2–§13.5): the document that collects the stage
//! receipts of one job, and the pure checker that verifies their links and reports the first
//! broken one.
//!
//! A chain is valid when, stage by stage and receipt by receipt: the receipt parses and its
//! signature verifies under a trusted key, it is a stage receipt (§4.3) of the chain's job, its
//! model digest is the declared stage model, its previous-receipt field (§4.5, field 11) is the
//! digest of the previous stage's *linked* receipt (absent at stage 1), and each of its input
//! commitments equals the output commitment of the same name of the earlier stage that produced
//! it (the activation link of §13.3). Cross-check receipts of a stage must commit to exactly the
//! inputs of its linked receipt (§13.4).

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{KeyId, PublicKey};

use crate::cbor::{self, read};
use crate::receipt::{self, Commitment, JOB_ID_LEN, JobKind, MAX_RECEIPT_LEN, ReceiptPayload};

/// Format version of a chain document.
pub const CHAIN_VERSION: u64 = 1;
/// Most stages in one chain.
pub const MAX_STAGES: usize = 16;
/// Most receipts per stage (the linked one and its cross-checks).
pub const MAX_REPLICAS: usize = 8;
/// Largest chain document accepted, in bytes (every receipt at its maximum, plus framing).
pub const MAX_CHAIN_LEN: usize = MAX_STAGES * MAX_REPLICAS * (MAX_RECEIPT_LEN + 16) + 4096;

/// One stage of a chain: its declared stage-model digest and its receipts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainStage {
    /// SHA-256 of the stage model file (§13.1 stage-model digest).
    pub model: Digest32,
    /// Receipts for this stage. The first is the *linked* receipt: the next stage's inputs come
    /// from its outputs and its digest is the next stage's `previous`. Any others are
    /// cross-checks (replicas or audits) run on the same inputs (§13.4).
    pub receipts: Vec<Vec<u8>>,
}

/// A receipt chain document (§13.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptChain {
    /// The job id every stage receipt carries.
    pub job_id: [u8; JOB_ID_LEN],
    /// SHA-256 of the whole model the stages were split from, when declared.
    pub source: Option<Digest32>,
    /// The stages in pipeline order.
    pub stages: Vec<ChainStage>,
}

/// A declared pipeline to check a chain against: the stage-model digests in order and,
/// optionally, the digest of the whole model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    /// Stage-model digests, stage 1 first.
    pub stages: Vec<Digest32>,
    /// The whole model's digest, when known.
    pub source: Option<Digest32>,
}

/// Errors decoding a chain document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainDecodeError {
    /// Not deterministic CBOR, too large, or trailing bytes.
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    /// A field is missing or malformed.
    #[error(transparent)]
    Field(#[from] read::FieldError),
    /// Format version not understood.
    #[error("unsupported chain version {0}")]
    Version(u64),
}

mod key {
    pub const VERSION: u64 = 1;
    pub const JOB_ID: u64 = 2;
    pub const SOURCE: u64 = 3;
    pub const STAGES: u64 = 4;
    pub const ALL: [u64; 4] = [1, 2, 3, 4];
    pub const STAGE_MODEL: u64 = 1;
    pub const STAGE_RECEIPTS: u64 = 2;
    pub const STAGE_ALL: [u64; 2] = [1, 2];
}

fn missing(field: &'static str) -> read::FieldError {
    read::FieldError {
        field,
        problem: "missing".into(),
    }
}

impl ReceiptChain {
    /// Deterministic CBOR encoding (§13.2).
    pub fn to_cbor(&self) -> Result<Vec<u8>, cbor::CborError> {
        let mut m = vec![
            (read::int(key::VERSION), read::int(CHAIN_VERSION)),
            (read::int(key::JOB_ID), Value::Bytes(self.job_id.to_vec())),
        ];
        if let Some(s) = self.source {
            m.push((read::int(key::SOURCE), Value::Bytes(s.to_vec())));
        }
        let stages = self
            .stages
            .iter()
            .map(|s| {
                Value::Map(vec![
                    (read::int(key::STAGE_MODEL), Value::Bytes(s.model.to_vec())),
                    (
                        read::int(key::STAGE_RECEIPTS),
                        Value::Array(s.receipts.iter().cloned().map(Value::Bytes).collect()),
                    ),
                ])
            })
            .collect();
        m.push((read::int(key::STAGES), Value::Array(stages)));
        cbor::encode(&Value::Map(m))
    }

    /// Strict decoding: size bound first, deterministic CBOR, known keys only, 1 to
    /// [`MAX_STAGES`] stages of 1 to [`MAX_REPLICAS`] receipts of 1 to 64 KiB each. Receipts are
    /// not parsed here; [`check_chain`] does that.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, ChainDecodeError> {
        let value = cbor::decode_deterministic(bytes, MAX_CHAIN_LEN)?;
        let fields = read::int_map(&value, "chain", &key::ALL)?;
        let get = |k: u64| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let version = read::uint(get(key::VERSION).ok_or(missing("version"))?, "version")?;
        if version != CHAIN_VERSION {
            return Err(ChainDecodeError::Version(version));
        }
        let job_id = read::bytes_n(get(key::JOB_ID).ok_or(missing("job id"))?, "job id")?;
        let source = get(key::SOURCE)
            .map(|v| read::bytes_n(v, "source"))
            .transpose()?;
        let list = read::array(
            get(key::STAGES).ok_or(missing("stages"))?,
            "stages",
            MAX_STAGES,
        )?;
        if list.is_empty() {
            return Err(read::FieldError {
                field: "stages",
                problem: "a chain has at least one stage".into(),
            }
            .into());
        }
        let mut stages = Vec::with_capacity(list.len());
        for s in list {
            let f = read::int_map(s, "stage", &key::STAGE_ALL)?;
            let get = |k: u64| f.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            let model = read::bytes_n(
                get(key::STAGE_MODEL).ok_or(missing("stage model"))?,
                "stage model",
            )?;
            let items = read::array(
                get(key::STAGE_RECEIPTS).ok_or(missing("stage receipts"))?,
                "stage receipts",
                MAX_REPLICAS,
            )?;
            if items.is_empty() {
                return Err(read::FieldError {
                    field: "stage receipts",
                    problem: "a stage has at least one receipt".into(),
                }
                .into());
            }
            let receipts = items
                .iter()
                .map(|r| {
                    read::bytes_range(r, "stage receipts", 1, MAX_RECEIPT_LEN).map(<[u8]>::to_vec)
                })
                .collect::<Result<Vec<_>, _>>()?;
            stages.push(ChainStage { model, receipts });
        }
        Ok(Self {
            job_id,
            source,
            stages,
        })
    }

    /// The pipeline this chain declares.
    pub fn declared(&self) -> Pipeline {
        Pipeline {
            stages: self.stages.iter().map(|s| s.model).collect(),
            source: self.source,
        }
    }
}

/// What is wrong at the first broken link (§13.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakKind {
    /// The chain declares a different pipeline than the one expected.
    #[error("the chain declares {found} stages, the pipeline has {expected}")]
    StageCount {
        /// Stages in the chain.
        found: usize,
        /// Stages in the pipeline.
        expected: usize,
    },
    /// The chain's declared stage model or source model is not the pipeline's.
    #[error("declared {what} sha256:{found} is not the pipeline's sha256:{expected}")]
    DeclarationMismatch {
        /// `stage model` or `source model`.
        what: &'static str,
        /// Hex digest in the chain.
        found: String,
        /// Hex digest expected.
        expected: String,
    },
    /// The receipt does not parse (§4.4 steps 1–4).
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// Signed by a key not among the trusted ones.
    #[error("signed by unknown key {0}")]
    UnknownKey(KeyId),
    /// The signature does not verify.
    #[error("bad signature by key {0}")]
    BadSignature(KeyId),
    /// Not a stage receipt.
    #[error("job kind is {0}, a chain holds only stage receipts")]
    WrongKind(&'static str),
    /// A receipt of another job.
    #[error("job id {found} is not the chain's job {expected}")]
    WrongJob {
        /// Hex job id of the receipt.
        found: String,
        /// Hex job id of the chain.
        expected: String,
    },
    /// The receipt attests another model than the declared stage model.
    #[error("model sha256:{found} is not the declared stage model sha256:{expected}")]
    WrongStageModel {
        /// Hex model digest in the receipt.
        found: String,
        /// Hex declared digest.
        expected: String,
    },
    /// Stage 1 names a previous receipt.
    #[error("the first stage names a previous receipt")]
    UnexpectedPrevious,
    /// A later stage names no previous receipt.
    #[error("no previous-receipt digest (field 11)")]
    MissingPrevious,
    /// The previous-receipt digest is not the previous stage's linked receipt.
    #[error("previous-receipt digest {found} is not the previous stage's receipt {expected}")]
    BrokenPrevious {
        /// Hex digest in the receipt.
        found: String,
        /// Hex digest of the previous stage's linked receipt.
        expected: String,
    },
    /// An input commitment differs from the earlier stage's output commitment of that name.
    #[error("input {name:?} does not match output {name:?} of stage {from}")]
    BrokenActivation {
        /// Tensor name.
        name: String,
        /// 1-based stage that produced it.
        from: usize,
    },
    /// A graph input fed to two stages with different commitments.
    #[error("graph input {name:?} differs from the one given to stage {first}")]
    InconsistentInput {
        /// Tensor name.
        name: String,
        /// 1-based stage that first read it.
        first: usize,
    },
    /// A stage after the first reads nothing an earlier stage produced.
    #[error("no input comes from an earlier stage")]
    Unlinked,
    /// The receipt binds another comparison policy (field 12) than the chain's first receipt.
    #[error("policy digest differs from the first stage's")]
    PolicyMismatch,
    /// A cross-check receipt ran on other inputs than the stage's linked receipt.
    #[error("a cross-check on other inputs than the stage's linked receipt")]
    ReplicaInputs,
    /// Two receipts of one stage by the same signer: not an independent cross-check.
    #[error("a second receipt of this stage by the same key {0}")]
    RepeatedSigner(KeyId),
}

impl BreakKind {
    /// Stable machine-readable name (§13.3 table), used in reports and vectors.
    pub fn code(&self) -> &'static str {
        match self {
            BreakKind::StageCount { .. } => "stage_count",
            BreakKind::DeclarationMismatch { .. } => "declaration_mismatch",
            BreakKind::Malformed(_) => "malformed",
            BreakKind::UnknownKey(_) => "unknown_key",
            BreakKind::BadSignature(_) => "bad_signature",
            BreakKind::WrongKind(_) => "wrong_kind",
            BreakKind::WrongJob { .. } => "wrong_job",
            BreakKind::WrongStageModel { .. } => "wrong_stage_model",
            BreakKind::UnexpectedPrevious => "unexpected_previous",
            BreakKind::MissingPrevious => "missing_previous",
            BreakKind::BrokenPrevious { .. } => "broken_previous",
            BreakKind::BrokenActivation { .. } => "broken_activation",
            BreakKind::InconsistentInput { .. } => "inconsistent_input",
            BreakKind::Unlinked => "unlinked",
            BreakKind::PolicyMismatch => "policy_mismatch",
            BreakKind::RepeatedSigner(_) => "repeated_signer",
            BreakKind::ReplicaInputs => "replica_inputs",
        }
    }
}

/// The first broken link of a chain: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage {stage}, receipt {receipt}: {kind}")]
pub struct ChainBreak {
    /// 1-based stage index (0 when the chain as a whole does not fit the pipeline).
    pub stage: usize,
    /// 0-based receipt index within the stage (0 is the linked receipt).
    pub receipt: usize,
    /// What is wrong.
    pub kind: BreakKind,
}

/// One checked receipt of a valid chain.
#[derive(Debug, Clone)]
pub struct CheckedReceipt {
    /// Its digest (§4.5).
    pub digest: Digest32,
    /// Its signer's key id.
    pub kid: KeyId,
    /// Its payload.
    pub payload: ReceiptPayload,
}

/// A chain that verified: per stage, the receipts in chain order.
#[derive(Debug, Clone)]
pub struct CheckedChain {
    /// Per stage, its checked receipts (the linked one first).
    pub stages: Vec<Vec<CheckedReceipt>>,
}

impl CheckedChain {
    /// The linked receipt of the last stage: its outputs are the pipeline's outputs.
    pub fn last(&self) -> Option<&CheckedReceipt> {
        self.stages.last().and_then(|s| s.first())
    }
}

fn hex32(d: &[u8]) -> String {
    hex::encode(d)
}

/// Checks a chain (§13.3): against `pipeline` when given (else against the chain's own
/// declaration), with signatures checked under the keys `trusted` returns. Returns the first
/// broken link in stage order, receipts of a stage in order, checks of a receipt in the order of
/// §13.3.
pub fn check_chain(
    chain: &ReceiptChain,
    pipeline: Option<&Pipeline>,
    trusted: &dyn Fn(&KeyId) -> Option<PublicKey>,
) -> Result<CheckedChain, ChainBreak> {
    let whole = |kind| ChainBreak {
        stage: 0,
        receipt: 0,
        kind,
    };
    if let Some(p) = pipeline {
        if p.stages.len() != chain.stages.len() {
            return Err(whole(BreakKind::StageCount {
                found: chain.stages.len(),
                expected: p.stages.len(),
            }));
        }
        if let (Some(want), Some(have)) = (p.source, chain.source)
            && want != have
        {
            return Err(whole(BreakKind::DeclarationMismatch {
                what: "source model",
                found: hex32(&have),
                expected: hex32(&want),
            }));
        }
        for (i, (want, stage)) in p.stages.iter().zip(&chain.stages).enumerate() {
            if *want != stage.model {
                return Err(ChainBreak {
                    stage: i + 1,
                    receipt: 0,
                    kind: BreakKind::DeclarationMismatch {
                        what: "stage model",
                        found: hex32(&stage.model),
                        expected: hex32(want),
                    },
                });
            }
        }
    }
    let mut checked: Vec<Vec<CheckedReceipt>> = Vec::with_capacity(chain.stages.len());
    for (si, stage) in chain.stages.iter().enumerate() {
        let mut this: Vec<CheckedReceipt> = Vec::with_capacity(stage.receipts.len());
        for (ri, bytes) in stage.receipts.iter().enumerate() {
            let at = |kind| ChainBreak {
                stage: si + 1,
                receipt: ri,
                kind,
            };
            let r = check_one(chain, &checked, si, stage, bytes, trusted).map_err(at)?;
            if let Some(first) = checked.first().and_then(|s| s.first()).or(this.first())
                && first.payload.policy != r.payload.policy
            {
                return Err(at(BreakKind::PolicyMismatch));
            }
            if this.iter().any(|o| o.kid == r.kid) {
                return Err(at(BreakKind::RepeatedSigner(r.kid)));
            }
            if let Some(linked) = this.first()
                && linked.payload.inputs != r.payload.inputs
            {
                return Err(at(BreakKind::ReplicaInputs));
            }
            this.push(r);
        }
        checked.push(this);
    }
    Ok(CheckedChain { stages: checked })
}

/// The checks of §13.3 on one receipt of stage `si` (0-based), given the stages before it.
fn check_one(
    chain: &ReceiptChain,
    earlier: &[Vec<CheckedReceipt>],
    si: usize,
    stage: &ChainStage,
    bytes: &[u8],
    trusted: &dyn Fn(&KeyId) -> Option<PublicKey>,
) -> Result<CheckedReceipt, BreakKind> {
    let r = receipt::parse(bytes).map_err(|e| BreakKind::Malformed(e.to_string()))?;
    let kid = r.kid();
    let key = trusted(&kid).ok_or(BreakKind::UnknownKey(kid))?;
    r.sign1
        .verify(&key)
        .map_err(|_| BreakKind::BadSignature(kid))?;
    let p = r.payload;
    if p.kind != JobKind::Stage {
        return Err(BreakKind::WrongKind(p.kind.name()));
    }
    if p.job_id != chain.job_id {
        return Err(BreakKind::WrongJob {
            found: hex32(&p.job_id),
            expected: hex32(&chain.job_id),
        });
    }
    if p.model_digest != stage.model {
        return Err(BreakKind::WrongStageModel {
            found: hex32(&p.model_digest),
            expected: hex32(&stage.model),
        });
    }
    match (si, p.previous, earlier.last().and_then(|s| s.first())) {
        (0, Some(_), _) => return Err(BreakKind::UnexpectedPrevious),
        (0, None, _) => {}
        (_, None, _) => return Err(BreakKind::MissingPrevious),
        (_, Some(found), Some(prev)) if found != prev.digest => {
            return Err(BreakKind::BrokenPrevious {
                found: hex32(&found),
                expected: hex32(&prev.digest),
            });
        }
        _ => {}
    }
    check_inputs(&p.inputs, earlier, si)?;
    Ok(CheckedReceipt {
        digest: receipt::receipt_digest(bytes),
        kid,
        payload: p,
    })
}

/// Activation links (§13.3): an input named like an output of an earlier stage must carry that
/// stage's output commitment (the latest such stage, since names are unique in an ONNX graph a
/// name has one producer); any other input is a graph input and must be committed alike in every
/// stage reading it.
fn check_inputs(
    inputs: &[Commitment],
    earlier: &[Vec<CheckedReceipt>],
    si: usize,
) -> Result<(), BreakKind> {
    let mut linked = 0usize;
    for c in inputs {
        let producer = earlier.iter().enumerate().rev().find_map(|(k, s)| {
            s.first()
                .and_then(|r| r.payload.outputs.iter().find(|o| o.name == c.name))
                .map(|o| (k, o))
        });
        if let Some((k, o)) = producer {
            if o != c {
                return Err(BreakKind::BrokenActivation {
                    name: c.name.clone(),
                    from: k + 1,
                });
            }
            linked += 1;
            continue;
        }
        let first_reader = earlier.iter().enumerate().find_map(|(k, s)| {
            s.first()
                .and_then(|r| r.payload.inputs.iter().find(|i| i.name == c.name))
                .map(|i| (k, i))
        });
        if let Some((k, i)) = first_reader
            && i != c
        {
            return Err(BreakKind::InconsistentInput {
                name: c.name.clone(),
                first: k + 1,
            });
        }
    }
    if si > 0 && linked == 0 {
        return Err(BreakKind::Unlinked);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
