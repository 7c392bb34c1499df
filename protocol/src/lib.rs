//! quorate's protocol layer: tensors and their file formats, deterministic CBOR, receipts
//! (COSE_Sign1), batch receipts, and the sans-IO state machines of later jobs.
//!
//! Nothing here performs I/O or reads a clock: callers pass bytes and `now` in.
//! Section numbers (`§N`) refer to `spec/SPEC.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod audit_log;
pub mod batch_receipt;
pub mod cbor;
pub mod chain;
pub mod cose;
pub mod ensemble;
pub mod ensemble_audit;
pub mod ensemble_dp;
pub mod ensemble_rules;
pub mod evidence;
pub mod fhe;
pub mod fuzzing;
pub mod governance;
pub mod messages;
pub mod policy;
pub mod receipt;
pub mod roster;
pub mod secagg;
pub mod tensor;
pub mod tensor_file;
pub mod time;
pub mod tlog;
pub mod verified_job;
pub mod wire;
