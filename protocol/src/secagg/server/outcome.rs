//! What the server hands back (§9.5): rejections of single messages, the round's outcome
//! (the exact sum or an abort with its reason) and the addressed messages it sends.

use crate::secagg::codec::DecodeError;
use crate::secagg::messages::{AbortCode, Round};

/// Why a client message was rejected. Rejection never changes the round's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Not decodable.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// Bound to another round digest (replayed from another round, or misdirected).
    #[error("message of client {0} belongs to another round (replayed or misdirected)")]
    Replayed(u32),
    /// The signature does not verify under the sender's roster key.
    #[error("bad signature on a message claiming to be from client {0}")]
    BadSignature(u32),
    /// A message for a round other than the open one.
    #[error("out-of-round message from client {sender}: {found:?} while collecting {expected:?}")]
    OutOfRound {
        /// Sender.
        sender: u32,
        /// The open round.
        expected: Round,
        /// The message's round.
        found: Round,
    },
    /// A second message from the same client in the same round.
    #[error("duplicate message from client {0} in this round")]
    Duplicate(u32),
    /// The sender dropped out earlier and may not rejoin.
    #[error("client {0} is not a participant of this round any more")]
    NotEligible(u32),
    /// The content breaks a rule of the round.
    #[error("invalid message from client {sender}: {problem}")]
    Invalid {
        /// Sender.
        sender: u32,
        /// What was wrong.
        problem: &'static str,
    },
    /// The round is over.
    #[error("the round is finished")]
    Finished,
}

/// Why the server aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Too few clients answered a round.
    #[error("too few clients in {round:?}: {have} answered, {need} required")]
    TooFewClients {
        /// The round.
        round: Round,
        /// Answers.
        have: usize,
        /// Required.
        need: usize,
    },
    /// A client of the commitment list did not reveal its graph contribution (§9.5.7). The
    /// graph cannot be computed without it (and must not be computed without it: choosing
    /// whose reveals count would let the server choose the graph, §17.3); the session is
    /// retried.
    #[error("missing graph contributions: {have} revealed of {need} committed")]
    MissingContributions {
        /// Reveals received.
        have: usize,
        /// Clients in the commitment list.
        need: usize,
    },
    /// Too few shares arrived to reconstruct a client's secret.
    #[error("too few shares for client {owner}: {have}, threshold {need}")]
    TooFewShares {
        /// Whose secret.
        owner: u32,
        /// Shares received.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A reconstructed secret does not match its public key or commitment: some shares
    /// were wrong. Using it would give a wrong sum.
    #[error("reconstructed secret of client {owner} does not match its {what}")]
    ReconstructionMismatch {
        /// Whose secret.
        owner: u32,
        /// "mask public key" or "self-mask commitment".
        what: &'static str,
    },
    /// An internal cryptographic failure.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl AbortReason {
    pub(super) fn code(&self) -> AbortCode {
        match self {
            Self::TooFewClients { .. }
            | Self::TooFewShares { .. }
            | Self::MissingContributions { .. } => AbortCode::TooFewClients,
            _ => AbortCode::ReconstructionFailed,
        }
    }
}

/// The result of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The exact sum of the inputs of `contributors`.
    Sum(Aggregate),
    /// The round aborted.
    Aborted {
        /// The round that failed.
        round: Round,
        /// Why.
        reason: AbortReason,
    },
}

/// The aggregate: the sum mod 2^b of the contributors' inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Σ inputs mod 2^b, element-wise.
    pub sum: Vec<u64>,
    /// U3: the clients whose inputs are in the sum.
    pub contributors: Vec<u32>,
    /// Roster members whose inputs are not in the sum.
    pub dropped: Vec<u32>,
}

/// A message to send to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Recipient index.
    pub to: u32,
    /// Encoded server message.
    pub bytes: Vec<u8>,
}
