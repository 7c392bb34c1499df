//! Secure aggregation (§9): SecAgg (Bonawitz et al., CCS 2017) with the consistency round
//! against a semi-malicious server, and SecAgg+ (Bell et al., CCS 2020) sparse neighbour
//! graphs, as sans-IO state machines.
//!
//! - [`config`]: round parameters, overflow budget, SecAgg+ parameter derivation (§9.3, §9.6);
//! - [`messages`] and [`codec`]: wire messages and their strict CBOR codec (§9.8);
//! - [`client`] and [`server`]: the state machines (§9.5);
//! - [`encoding`]: bit-packing, fixed-point and vote encodings (§9.7);
//! - [`graph`]: the neighbour graph (§9.6);
//! - [`fuzzing`]: entry points for the fuzz targets and corpus replay.

#[cfg(test)]
mod attack_l2_tests;
pub mod client;
pub mod codec;
pub mod config;
pub mod encoding;
pub mod fuzzing;
pub mod graph;
#[cfg(test)]
mod late_input_tests;
pub mod messages;
pub mod server;
pub mod sim;

pub use client::{Client, ClientError};
pub use config::{ConfigError, GraphKind, RoundConfig, SparseParameters};
pub use messages::Round;
pub use server::{Aggregate, Outcome, Outgoing, Reject, Server};

/// Counts of the expensive operations a party performed, so that benchmarks can time the
/// same number of raw primitive operations as a bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkCounters {
    /// X25519 key agreements (Montgomery ladder on a peer key).
    pub x25519_agreements: u64,
    /// X25519 public-key derivations (fixed-base).
    pub x25519_keygens: u64,
    /// Masks expanded.
    pub masks: u64,
    /// AES-128-CTR keystream bytes generated for masks.
    pub mask_bytes: u64,
}
