//! Encrypted inference jobs (SPEC §16): the node's service and the client's side. The engine,
//! the model format and the key cache live in `quorate_fhe`; everything that touches keys or
//! ciphertexts is behind the `fhe` cargo feature (on by default).

#[cfg(feature = "fhe")]
pub mod client;
#[cfg(feature = "fhe")]
pub mod job;
pub mod service;
