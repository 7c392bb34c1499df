//! Offline verification of every quorate artefact from its bytes: receipts, batch receipts
//! and audit logs (§6), evidence bundles (§14.7), receipt chains (§13.3), aggregate receipts
//! (§15.5), FHE receipts with revealed blobs (§16.6) and the transparency log: tree heads,
//! inclusion and consistency receipts, promises and equivocation bundles (§18.8).
//!
//! Depends only on `quorate-protocol` and `quorate-crypto`: no ONNX Runtime, no network, no
//! async runtime, no TFHE, and no file system — artefacts are handed in as bytes with a label
//! each. The `quorate verify` command, the browser page and the Python package are shells
//! around it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod aggregate;
pub mod bundle;
pub mod chain;
pub mod named;
pub mod receipts;
pub mod signature_cache;
pub mod tlog;
mod trust;

pub use trust::TrustStore;
