//! Encrypted inference (SPEC §16): quantized linear models evaluated on TFHE ciphertexts.
//!
//! `qlinear` and the model loading of `service` need no tfhe; everything that touches keys or
//! ciphertexts is behind the `fhe` cargo feature (on by default).

#[cfg(feature = "fhe")]
pub mod client;
#[cfg(feature = "fhe")]
pub mod engine;
#[cfg(feature = "fhe")]
pub mod job;
#[cfg(feature = "fhe")]
pub mod keycache;
pub mod qlinear;
pub mod service;
