//! Encrypted inference (SPEC §16): quantized linear models evaluated on TFHE ciphertexts.
//!
//! [`qlinear`] (the model format) needs no tfhe; the engine and the server-key cache, which
//! touch keys and ciphertexts, are behind the `tfhe` cargo feature (which the `quorate`
//! binary's default `fhe` feature turns on).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "tfhe")]
pub mod engine;
#[cfg(feature = "tfhe")]
pub mod keycache;
pub mod qlinear;

/// The TFHE library this engine is built on, for the node's and client's key and ciphertext
/// types, so every crate uses the one version pinned here.
#[cfg(feature = "tfhe")]
pub use tfhe;
