//! The mesh messages of an ensemble job (§15.3): the start request, a round request and a
//! member's reply, with their fields inside the request/response maps of §11.1, and the
//! masked-input tensor a member receipt commits to (§15.4).

use ciborium::value::Value;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};

use super::params::EnsembleParams;
use super::{MASKED_INPUT_NAME, MAX_ROUND_MESSAGE, ROUND_ABORT};
use crate::cbor::read;
use crate::messages::common::{MAX_TENSORS, MessageError};
use crate::receipt::{JOB_ID_LEN, NONCE_LEN};
use crate::tensor::{DType, Tensor};

fn int(v: u64) -> Value {
    read::int(v)
}

fn bad(m: impl Into<String>) -> MessageError {
    MessageError(m.into())
}

/// First request of an ensemble job (§15.3): the member runs its model on `inputs` and
/// answers with its SecAgg round-0 message. A *prepared* start (§15.1) carries no input:
/// the input comes in round 2, in an [`EnsembleInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleStart {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: Vec<u8>,
    /// The model this member runs.
    pub model: Digest32,
    /// The client's input tensors; `None` in a prepared start.
    pub inputs: Option<Vec<Tensor>>,
    /// Job parameters.
    pub params: EnsembleParams,
    /// This member's index in `params.members`.
    pub index: u32,
    /// One salt per input, the same for every member: input commitments are salted (§3.3,
    /// §15.4) so receipts do not let anyone brute-force low-entropy features. Empty in a
    /// prepared start.
    pub input_salts: Vec<[u8; SALT_LEN]>,
}

/// Round 2 of a prepared job (§15.1, §15.3): the SecAgg server's masked-input-round message
/// together with the client's input, which the member runs its model on before it masks the
/// output.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleInput {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// The encoded SecAgg server message of round 2.
    pub message: Vec<u8>,
    /// The client's input tensors.
    pub inputs: Vec<Tensor>,
    /// One salt per input, the same for every member (as in [`EnsembleStart`]).
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
            (8, salts_value(&self.input_salts)),
        ]
    }

    pub(crate) fn from_fields(
        f: &[Value],
        inputs: Option<Vec<Tensor>>,
    ) -> Result<Self, MessageError> {
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
        let input_salts = salts_for(&f[7], inputs.as_ref().map_or(0, Vec::len))?;
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

/// The salts of field `v`: exactly one per input (none for a prepared start).
fn salts_for(v: &Value, inputs: usize) -> Result<Vec<[u8; SALT_LEN]>, MessageError> {
    let salts = read::array(v, "input salts", MAX_TENSORS)?
        .iter()
        .map(|s| read::bytes_n::<SALT_LEN>(s, "input salt"))
        .collect::<Result<Vec<_>, _>>()?;
    if salts.len() != inputs {
        return Err(bad(format!(
            "{} input salts for {inputs} inputs: one salt per input",
            salts.len()
        )));
    }
    Ok(salts)
}

fn salts_value(salts: &[[u8; SALT_LEN]]) -> Value {
    Value::Array(salts.iter().map(|s| Value::Bytes(s.to_vec())).collect())
}

impl EnsembleInput {
    pub(crate) fn fields(&self, tensors: Value) -> Vec<(u64, Value)> {
        vec![
            (2, Value::Bytes(self.job_id.to_vec())),
            (3, Value::Bytes(self.message.clone())),
            (4, tensors),
            (5, salts_value(&self.input_salts)),
        ]
    }

    pub(crate) fn from_fields(f: &[Value], inputs: Vec<Tensor>) -> Result<Self, MessageError> {
        if inputs.is_empty() {
            return Err(bad("an ensemble input carries at least one tensor"));
        }
        Ok(Self {
            job_id: read::bytes_n(&f[1], "job id")?,
            message: read::bytes_range(&f[2], "round message", 1, MAX_ROUND_MESSAGE)?.to_vec(),
            input_salts: salts_for(&f[4], inputs.len())?,
            inputs,
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
