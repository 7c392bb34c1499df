//! Private ensembles (§15): job parameters, the mesh messages that carry secure-aggregation
//! rounds between an aggregator and member nodes, the transcript and the aggregate receipt.
//!
//! The SecAgg machinery itself is §9 (`crate::secagg`); this module binds its rounds to a
//! mesh job id and round number (§15.3), and records what an offline auditor needs to
//! recompute the aggregator's result (§15.5).

//!
//! - [`params`]: the job parameters and the fixed-point scale rule (§15.2);
//! - [`messages`]: start, round and reply messages (§15.3);
//! - [`aggregate`]: transcript and aggregate receipt (§15.5);
//! - [`member_receipt`]: the one check of a member receipt (§15.4), used live and offline;
//! - [`aggregator`] and [`member`]: the sans-IO state machines of both sides (§15.3).

pub mod aggregate;
pub mod aggregator;
pub mod member;
pub mod member_receipt;
pub mod messages;
pub mod params;

#[cfg(test)]
mod prepared_tests;
#[cfg(test)]
mod tests;

pub use aggregate::{
    AggregatePayload, TranscriptEntry, UncheckedAggregate, decode_transcript, encode_transcript,
    is_aggregate, parse_aggregate, receipt_digest, transcript_digest,
};
pub use messages::{EnsembleInput, EnsembleReply, EnsembleRound, EnsembleStart, masked_tensor};
pub use params::{EnsembleParams, Mode, NoiseParams};

/// Most members of one ensemble.
pub const MAX_MEMBERS: usize = 64;
/// Most classes (elements per contribution).
pub const MAX_CLASSES: usize = 1024;
/// Largest SecAgg envelope carried in one round message (bytes).
pub const MAX_ROUND_MESSAGE: usize = 1 << 20;
/// Largest aggregate receipt.
pub const MAX_AGGREGATE_LEN: usize = 256 << 10;
/// Largest transcript file.
pub const MAX_TRANSCRIPT_LEN: usize = 16 << 20;
/// Content type of an aggregate receipt (§15.5).
pub const AGGREGATE_CONTENT_TYPE: &str = "application/vnd.quorate.ensemble-aggregate+cbor";
/// Name of the output commitment in a member receipt: the packed masked vector (§15.4).
pub const MASKED_INPUT_NAME: &str = "secagg_masked_input";
/// Domain tag of the parameters digest.
pub const TAG_PARAMS: &[u8] = b"quorate/v1/ensemble/params\0";
/// Domain tag of the transcript digest.
pub const TAG_TRANSCRIPT: &[u8] = b"quorate/v1/ensemble/transcript\0";
/// Round number of an abort notice (§15.3).
pub const ROUND_ABORT: u8 = 5;

/// §15.4: the commitments to the client's inputs, each under its salt (the same for every
/// member and the aggregate receipt).
pub(crate) fn salted_commitments(
    inputs: &[crate::tensor::Tensor],
    salts: &[[u8; quorate_crypto::tensor_digest::SALT_LEN]],
) -> Vec<crate::receipt::Commitment> {
    inputs
        .iter()
        .zip(salts)
        .map(|(t, salt)| crate::receipt::Commitment::to(t, Some(salt)))
        .collect()
}
