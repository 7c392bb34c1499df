//! Log requests and their answers (§18.12): a node's latest signed tree head with the heads
//! of its peers it witnessed, the inclusion receipt of a leaf, the consistency receipt
//! between two sizes. The documents themselves are §18's; these messages only carry them.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;

use super::common::MessageError;
use crate::cbor::read;
use crate::tlog::{MAX_COSE_RECEIPT_LEN, MAX_SIGNED_DOC_LEN};

/// Most peer heads one head answer carries (§18.12): one per roster member is plenty.
pub const MAX_WITNESSED_HEADS: usize = 256;

/// A request about a node's transparency log (§18.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRequest {
    /// The latest signed tree head, signed now if the log grew since the last one, and the
    /// latest heads of its peers the node keeps (type 5).
    Head,
    /// The inclusion receipt of a leaf (type 6): against the first head containing it, or
    /// against the head of `tree_size` leaves.
    Prove {
        /// The leaf hash (§18.2).
        leaf_hash: Digest32,
        /// A size the node signed a head for, or `None` for the first head containing it.
        tree_size: Option<u64>,
    },
    /// The consistency receipt between two sizes the node signed heads for (type 7).
    Consistency {
        /// The older size, at least 1.
        old_size: u64,
        /// The newer size, at least `old_size`.
        new_size: u64,
    },
}

/// A node's answer to a [`LogRequest`] (§18.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogResponse {
    /// Answer to [`LogRequest::Head`] (type 105).
    Head {
        /// The node's own latest signed tree head (§18.3).
        head: Vec<u8>,
        /// The latest signed head of each peer the node fetched one from (§18.11.6).
        witnessed: Vec<Vec<u8>>,
    },
    /// Answer to [`LogRequest::Prove`] or [`LogRequest::Consistency`]: an inclusion or a
    /// consistency receipt (type 106).
    Proof(Vec<u8>),
}

pub(super) mod ty {
    pub const HEAD: u64 = 5;
    pub const PROVE: u64 = 6;
    pub const CONSISTENCY: u64 = 7;
    pub const HEAD_OK: u64 = 105;
    pub const PROOF: u64 = 106;
}

fn opt_uint(v: Option<u64>) -> Value {
    v.map_or(Value::Null, read::int)
}

impl LogRequest {
    /// The fields of the message, type first.
    pub(super) fn entries(&self) -> Vec<(u64, Value)> {
        match self {
            LogRequest::Head => vec![(1, read::int(ty::HEAD))],
            LogRequest::Prove {
                leaf_hash,
                tree_size,
            } => vec![
                (1, read::int(ty::PROVE)),
                (2, Value::Bytes(leaf_hash.to_vec())),
                (3, opt_uint(*tree_size)),
            ],
            LogRequest::Consistency { old_size, new_size } => vec![
                (1, read::int(ty::CONSISTENCY)),
                (2, read::int(*old_size)),
                (3, read::int(*new_size)),
            ],
        }
    }

    /// Whether `kind` is a log request type.
    pub(super) fn is_type(kind: u64) -> bool {
        matches!(kind, ty::HEAD | ty::PROVE | ty::CONSISTENCY)
    }

    /// Decodes the fields of a log request of type `kind`.
    pub(super) fn decode(kind: u64, f: &[Value]) -> Result<Self, MessageError> {
        match (kind, f.len()) {
            (ty::HEAD, 1) => Ok(LogRequest::Head),
            (ty::PROVE, 3) => Ok(LogRequest::Prove {
                leaf_hash: read::bytes_n(&f[1], "leaf hash")?,
                tree_size: match &f[2] {
                    Value::Null => None,
                    v => Some(read::uint(v, "tree size")?),
                },
            }),
            (ty::CONSISTENCY, 3) => {
                let old_size = read::uint(&f[1], "old size")?;
                let new_size = read::uint(&f[2], "new size")?;
                if old_size == 0 || old_size > new_size {
                    return Err(MessageError(format!(
                        "consistency needs 1 ≤ old size ≤ new size, not {old_size} and {new_size}"
                    )));
                }
                Ok(LogRequest::Consistency { old_size, new_size })
            }
            (k, n) => Err(MessageError(format!(
                "log request type {k} with {n} fields is not defined"
            ))),
        }
    }
}

impl LogResponse {
    /// The fields of the message, type first.
    pub(super) fn entries(&self) -> Vec<(u64, Value)> {
        match self {
            LogResponse::Head { head, witnessed } => vec![
                (1, read::int(ty::HEAD_OK)),
                (2, Value::Bytes(head.clone())),
                (
                    3,
                    Value::Array(witnessed.iter().map(|h| Value::Bytes(h.clone())).collect()),
                ),
            ],
            LogResponse::Proof(doc) => {
                vec![(1, read::int(ty::PROOF)), (2, Value::Bytes(doc.clone()))]
            }
        }
    }

    /// Whether `kind` is a log response type.
    pub(super) fn is_type(kind: u64) -> bool {
        matches!(kind, ty::HEAD_OK | ty::PROOF)
    }

    /// Decodes the fields of a log response of type `kind`; documents are bounded by §18.9
    /// here and checked by their own decoders where they are used.
    pub(super) fn decode(kind: u64, f: &[Value]) -> Result<Self, MessageError> {
        match (kind, f.len()) {
            (ty::HEAD_OK, 3) => Ok(LogResponse::Head {
                head: read::bytes_range(&f[1], "head", 1, MAX_SIGNED_DOC_LEN)?.to_vec(),
                witnessed: read::array(&f[2], "witnessed heads", MAX_WITNESSED_HEADS)?
                    .iter()
                    .map(|h| {
                        read::bytes_range(h, "witnessed head", 1, MAX_SIGNED_DOC_LEN)
                            .map(<[u8]>::to_vec)
                    })
                    .collect::<Result<_, _>>()?,
            }),
            (ty::PROOF, 2) => Ok(LogResponse::Proof(
                read::bytes_range(&f[1], "log proof", 1, MAX_COSE_RECEIPT_LEN)?.to_vec(),
            )),
            (k, n) => Err(MessageError(format!(
                "log response type {k} with {n} fields is not defined"
            ))),
        }
    }
}
