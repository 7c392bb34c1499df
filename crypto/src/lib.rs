//! Cryptographic building blocks of quorate.
//!
//! Everything here is a pure function or a value type: no I/O, no clock, no async.
//! Section numbers (`§N`) refer to `spec/SPEC.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod batch;
pub mod fuzzing;
pub mod identity;
pub mod merkle;
#[cfg(feature = "os-rng")]
pub mod random;
pub mod secagg;
mod strict;
pub mod tensor_digest;

pub use identity::{IdentityError, KeyId, PublicKey, SecretKey, Signature};
pub use strict::ed25519_arithmetic;
