//! The transparency log of a node's receipts (§18): RFC 9162 Merkle trees over receipts,
//! signed tree heads, COSE Receipts (RFC 9942) of inclusion and consistency, promises of
//! inclusion, and equivocation bundles. Encoding and strict decoding only; signatures are
//! checked by `quorate-verify`, and the node keeps the log.
//!
//! Every decoder here bounds its input before decoding (§18.9), accepts only deterministic
//! CBOR (§1.3) and never panics.

mod consistency;
mod cose_receipt;
mod equivocation;
mod error;
mod inclusion;
mod leaf;
mod promise;
mod proofs;
mod signed_doc;
mod tree_head;

pub use consistency::{ConsistencyReceipt, sign_consistency_receipt};
pub use cose_receipt::{ProofKind, UncheckedCoseReceipt};
pub use equivocation::EquivocationBundle;
pub use error::TlogError;
pub use inclusion::{InclusionReceipt, TreeStatement, sign_inclusion_receipt};
pub use leaf::{
    attach_inclusion_receipts, inclusion_receipts_of, leaf_bytes, receipt_leaf_hash,
    unprotected_header_is_empty,
};
pub use promise::Promise;
pub use proofs::{ConsistencyProof, InclusionProof};
pub use signed_doc::SignedDoc;
pub use tree_head::TreeHead;

/// COSE header label `receipts` (RFC 9942 §2): the inclusion receipts carried by a receipt.
pub const HEADER_RECEIPTS: i64 = 394;
/// COSE header label `vds`, verifiable data structure (RFC 9942 §2).
pub const HEADER_VDS: i64 = 395;
/// COSE header label `vdp`, verifiable data structure proofs (RFC 9942 §2).
pub const HEADER_VDP: i64 = 396;
/// `vds` value RFC9162_SHA256 (RFC 9942 §5).
pub const VDS_RFC9162_SHA256: i64 = 1;
/// `vdp` map key of inclusion proofs (RFC 9942 §5.2).
pub const VDP_INCLUSION: i64 = -1;
/// `vdp` map key of consistency proofs (RFC 9942 §5.3).
pub const VDP_CONSISTENCY: i64 = -2;
/// Private-use protected header label: the tree size the signed root belongs to (§18.4).
pub const HEADER_TREE_SIZE: i64 = -65537;
/// Private-use protected header label: when the node signed, Unix seconds (§18.4).
pub const HEADER_ISSUED_AT: i64 = -65538;
/// Private-use protected header label of a consistency receipt: the older tree size (§18.5).
pub const HEADER_OLD_SIZE: i64 = -65539;
/// Private-use protected header label of a consistency receipt: the older root (§18.5).
pub const HEADER_OLD_ROOT: i64 = -65540;

/// Content type of a signed tree head (§18.3).
pub const TREE_HEAD_CONTENT_TYPE: &str = "application/vnd.quorate.tree-head+cbor";
/// Content type of a promise of inclusion (§18.6).
pub const PROMISE_CONTENT_TYPE: &str = "application/vnd.quorate.log-promise+cbor";
/// Format version of heads, promises and bundles.
pub const TLOG_VERSION: u64 = 1;

/// Largest signed tree head or promise, in bytes (§18.9).
pub const MAX_SIGNED_DOC_LEN: usize = 1024;
/// Largest inclusion or consistency receipt, in bytes (§18.9).
pub const MAX_COSE_RECEIPT_LEN: usize = 4096;
/// Largest equivocation bundle, in bytes (§18.9).
pub const MAX_BUNDLE_LEN: usize = 3 * MAX_COSE_RECEIPT_LEN;
/// Most inclusion receipts one receipt may carry in header 394 (§18.4).
pub const MAX_ATTACHED_RECEIPTS: usize = 4;
/// Longest promise: the deadline is at most this many seconds after issue (§18.6).
pub const MAX_PROMISE_WINDOW_SECS: u64 = 3600;

pub use quorate_crypto::merkle::{MAX_PROOF_HASHES, MAX_TREE_SIZE};

#[cfg(test)]
mod tests;
