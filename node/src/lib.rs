//! quorate node internals: ONNX Runtime execution, attestation, verification, transport.
//! The `quorate` binary (src/main.rs) is a thin CLI over this library.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attest;
pub mod audit;
#[cfg(feature = "fhe")]
pub mod bench_fhe;
pub mod bench_poisoning;
pub mod bench_secagg;
pub mod commands;
pub mod fhe;
pub mod files;
pub mod mesh;
pub mod providers;
pub mod runtime;
#[allow(dead_code)]
pub mod transport;
pub mod verify;
pub mod verify_bundle;
pub mod verify_chain;
pub mod verify_ensemble;
