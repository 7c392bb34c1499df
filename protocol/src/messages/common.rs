//! What every mesh message shares (§11): size limits, the typed error frame (§11.5), the
//! decoding error, the client's refusal of an answer (§11.4) and the tensor codec (§11.1).
//!
//! Job modules (`crate::ensemble`, `crate::fhe`) build on this file; the registry of
//! message kinds in `super` (`messages/mod.rs`) builds on them. Nothing here names a job
//! kind, so imports point one way.

use ciborium::value::Value;

use crate::cbor::{self, read, read::FieldError};
use crate::tensor::{DType, MAX_NAME_LEN, MAX_RANK, Tensor};

/// Largest message accepted (the frame limit of §8).
pub const MAX_MESSAGE_LEN: usize = 16 << 20;
/// Most tensors in one message.
pub const MAX_TENSORS: usize = 64;
/// Most CBOR data items in one message (§11.1). The largest valid message, an inference
/// request with [`MAX_TENSORS`] tensors of the largest rank and their salts, holds under
/// 1000 items; tensor data are byte strings, one item each.
pub const MAX_MESSAGE_ITEMS: usize = 1 << 13;
/// Most elements of any one array or map in a message (§11.1).
pub const MAX_MESSAGE_CONTAINER: usize = 1 << 10;

/// The limits every message is checked against on its raw bytes, before a value tree is
/// built (§11.1, §17.2).
pub const MESSAGE_LIMITS: cbor::Limits = cbor::Limits {
    max_len: MAX_MESSAGE_LEN,
    max_items: MAX_MESSAGE_ITEMS,
    max_container: MAX_MESSAGE_CONTAINER,
    max_depth: cbor::MAX_DEPTH,
};

/// Error codes (§11.5). Codes never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be decoded.
    BadRequest,
    /// The node does not serve that model.
    UnknownModel,
    /// Inputs do not fit the model (names, types, shapes).
    InvalidInput,
    /// A size limit was exceeded.
    TooLarge,
    /// The node is at its concurrency limit; retry elsewhere or later.
    Busy,
    /// The node failed; the message says what it may.
    Internal,
    /// The node is shutting down.
    ShuttingDown,
    /// No ensemble job with that id is open on this node (§15.3).
    UnknownJob,
    /// A round message for a round other than the one the member expects (§15.3).
    WrongRound,
    /// A round message the member already answered, or one bound to another job (§15.3).
    Replayed,
    /// The member's SecAgg state machine refused the message or aborted (§15.3).
    RoundRejected,
    /// The node holds no roster under which it may serve: its roster expired, or the
    /// current roster no longer lists it with its key (§10.3).
    NoValidRoster,
    /// The job is outside the mesh's governance (§10.6): a policy it does not grant, an
    /// ensemble smaller than it allows, a member it does not list for the model.
    NotAllowed,
    /// The node cannot make a receipt durable (its audit log's storage is full, read-only or
    /// failing, §12.4.1); nothing was answered. Retry elsewhere or later.
    StorageUnavailable,
    /// A log request names a leaf, a tree size or a pair of sizes the node has no signed
    /// statement for (§18.12).
    NotInLog,
}

impl ErrorCode {
    const ALL: [ErrorCode; 15] = [
        ErrorCode::NotInLog,
        ErrorCode::StorageUnavailable,
        ErrorCode::NotAllowed,
        ErrorCode::NoValidRoster,
        ErrorCode::UnknownJob,
        ErrorCode::WrongRound,
        ErrorCode::Replayed,
        ErrorCode::RoundRejected,
        ErrorCode::BadRequest,
        ErrorCode::UnknownModel,
        ErrorCode::InvalidInput,
        ErrorCode::TooLarge,
        ErrorCode::Busy,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
    ];
    /// The §11.5 code.
    pub fn code(self) -> u64 {
        match self {
            ErrorCode::BadRequest => 1,
            ErrorCode::UnknownModel => 2,
            ErrorCode::InvalidInput => 3,
            ErrorCode::TooLarge => 4,
            ErrorCode::Busy => 5,
            ErrorCode::Internal => 6,
            ErrorCode::ShuttingDown => 7,
            ErrorCode::UnknownJob => 8,
            ErrorCode::WrongRound => 9,
            ErrorCode::Replayed => 10,
            ErrorCode::RoundRejected => 11,
            ErrorCode::NoValidRoster => 12,
            ErrorCode::NotAllowed => 13,
            ErrorCode::StorageUnavailable => 14,
            ErrorCode::NotInLog => 15,
        }
    }
    pub(crate) fn from_code(c: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == c)
    }
}

/// A typed error sent to the peer (§11.5).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorFrame {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human-readable detail (never secrets).
    pub message: String,
}

impl ErrorFrame {
    /// Builds an error frame.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        // Cut at a character boundary: `String::truncate` panics inside a character.
        let mut cut = message.len().min(1024);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        Self { code, message }
    }
}

/// Errors decoding a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct MessageError(pub String);

impl From<FieldError> for MessageError {
    fn from(e: FieldError) -> Self {
        MessageError(e.to_string())
    }
}
impl From<cbor::CborError> for MessageError {
    fn from(e: cbor::CborError) -> Self {
        MessageError(e.to_string())
    }
}
impl From<crate::tensor::TensorError> for MessageError {
    fn from(e: crate::tensor::TensorError) -> Self {
        MessageError(e.to_string())
    }
}

/// One tensor as `[name, dtype, shape, data]` (§11.1); shared with evidence bundles (§14.6).
pub(crate) fn tensor_value(t: &Tensor) -> Value {
    Value::Array(vec![
        Value::Text(t.name().to_string()),
        read::int(u64::from(t.dtype().code())),
        Value::Array(t.shape().iter().map(|&d| read::int(d)).collect()),
        Value::Bytes(t.data().to_vec()),
    ])
}

/// Decodes a tensor written by [`tensor_value`].
pub(crate) fn tensor_from(v: &Value) -> Result<Tensor, MessageError> {
    tensor_take(&mut v.clone())
}

/// [`tensor_from`], moving the tensor's data out of the decoded value instead of copying it
/// (a message's value is dropped once decoded, §11.1).
fn tensor_take(v: &mut Value) -> Result<Tensor, MessageError> {
    let shape_err = || MessageError("a tensor is [name, dtype, shape, data]".into());
    read::array(v, "tensor", 4)?;
    let Value::Array(items) = v else {
        return Err(shape_err());
    };
    let [name, dtype, shape, data] = items.as_mut_slice() else {
        return Err(shape_err());
    };
    let code = read::uint(dtype, "dtype")?;
    let dtype = u8::try_from(code)
        .ok()
        .and_then(DType::from_code)
        .ok_or_else(|| MessageError(format!("unknown dtype code {code}")))?;
    let shape = read::array(shape, "shape", MAX_RANK)?
        .iter()
        .map(|d| read::uint(d, "shape"))
        .collect::<Result<_, _>>()?;
    let Value::Bytes(data) = data else {
        return Err(MessageError("tensor data must be a byte string".into()));
    };
    Ok(Tensor::new(
        read::text(name, "tensor name", MAX_NAME_LEN)?,
        dtype,
        shape,
        std::mem::take(data),
    )?)
}

/// The tensors of a message, in order (§11.1).
pub(crate) fn tensors_value(list: &[Tensor]) -> Value {
    Value::Array(list.iter().map(tensor_value).collect())
}

/// Decodes at most [`MAX_TENSORS`] tensors written by [`tensors_value`].
pub(crate) fn tensors_from(v: &mut Value) -> Result<Vec<Tensor>, MessageError> {
    read::array(v, "tensors", MAX_TENSORS)?;
    let Value::Array(list) = v else {
        return Err(MessageError("tensors must be an array".into()));
    };
    list.iter_mut().map(tensor_take).collect()
}

/// Why a client refuses a node's answer (§11.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseRejected {
    /// The response could not be decoded.
    #[error(transparent)]
    Malformed(#[from] MessageError),
    /// The node answered with an error.
    #[error("node error {0}")]
    NodeError(ErrorFrame),
    /// The receipt is malformed or its signature does not verify under the node's pinned key.
    #[error("receipt rejected: {0}")]
    Receipt(String),
    /// The receipt does not match the request or the returned tensors.
    #[error("receipt does not match: {0}")]
    Mismatch(&'static str),
    /// An answer of another type.
    #[error("unexpected response type")]
    Unexpected,
}
