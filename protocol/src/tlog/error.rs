//! Errors decoding transparency-log documents (§18).

use crate::cbor::{CborError, read::FieldError};
use crate::cose::CoseError;

/// Errors decoding a tree head, COSE receipt, promise or bundle (§18.8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// The bytes are not canonical CBOR within the limits (§1.3, §18.9).
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// A COSE_Sign1 violating the §4.1 profile (heads and promises).
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// Not a tagged COSE_Sign1 of the §18.4 shape.
    #[error("not a COSE receipt of the §18.4 shape: {0}")]
    Structure(String),
    /// A protected or unprotected header violates §18.4.
    #[error("header: {0}")]
    Header(String),
    /// The `vds` header is not RFC9162_SHA256 (1).
    #[error("vds is {0}, only RFC9162_SHA256 (1) is understood")]
    Vds(i64),
    /// Header 396 is absent or holds no proof of the expected kind.
    #[error("no {0} proof in header 396 (vdp)")]
    MissingProof(&'static str),
    /// A proof has more hashes than §18.9 allows.
    #[error("a proof of {0} hashes exceeds the limit of 64")]
    ProofTooLong(usize),
    /// A field of a payload or proof is malformed.
    #[error("{0}")]
    Field(String),
    /// A tree size or index outside the §18.9 range, or sizes in the wrong order.
    #[error("size: {0}")]
    Size(String),
    /// A format version other than 1.
    #[error("unsupported version {0}")]
    Version(u64),
}

impl From<FieldError> for TlogError {
    fn from(e: FieldError) -> Self {
        TlogError::Field(e.to_string())
    }
}

impl TlogError {
    /// A stable short name of the failure, as test vectors write it (§18.10).
    pub fn code(&self) -> &'static str {
        match self {
            TlogError::Cbor(_) | TlogError::Cose(_) | TlogError::Structure(_) => "malformed",
            TlogError::Header(_) => "header",
            TlogError::Vds(_) => "vds",
            TlogError::MissingProof(_) => "missing_proof",
            TlogError::ProofTooLong(_) => "proof_too_long",
            TlogError::Field(_) | TlogError::Version(_) => "malformed",
            TlogError::Size(_) => "size",
        }
    }
}
