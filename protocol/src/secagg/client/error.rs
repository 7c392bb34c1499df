//! Why a client rejected a message or aborted (§9.5), and which of those are fatal.

use quorate_crypto::secagg::SecaggCryptoError;

use crate::secagg::codec::DecodeError;
use crate::secagg::config::ConfigError;
use crate::secagg::encoding::EncodingError;
use crate::secagg::messages::{AbortCode, Round};

/// Why a client rejected a message or aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The round configuration is invalid.
    #[error("invalid round configuration: {0}")]
    Config(#[from] ConfigError),
    /// The client's index is not on the roster, or its key is not the one listed there.
    #[error("client {0} is not on the roster with this identity key")]
    NotOnRoster(u32),
    /// The input vector does not fit the configuration.
    #[error("invalid input: {0}")]
    Input(#[from] EncodingError),
    /// The input vector has the wrong length.
    #[error("input has {found} elements, the round expects {expected}")]
    InputLength {
        /// `m`.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A message could not be decoded (rejected, not fatal).
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// A message of another round (rejected, not fatal).
    #[error("out-of-round message: expected {expected}, received {found}")]
    OutOfRound {
        /// What the client waits for.
        expected: &'static str,
        /// What arrived.
        found: &'static str,
    },
    /// A message bound to another round digest: replayed or misdirected (rejected, not fatal).
    #[error("message belongs to another round (replayed or misdirected)")]
    Replayed,
    /// `start` was called twice, or a call came after the end.
    #[error("the client is not in a state to do that")]
    WrongState,
    /// The server aborted the round.
    #[error("the server aborted the round: {0:?}")]
    ServerAborted(AbortCode),
    /// Too few neighbours or survivors to continue safely.
    #[error("too few clients in {round:?}: {have}, at least {need} required")]
    TooFew {
        /// The round.
        round: Round,
        /// How many there are.
        have: usize,
        /// How many are required.
        need: usize,
    },
    /// This client is missing from a set it must belong to.
    #[error("this client is missing from the server's {0} set")]
    NotAMember(&'static str),
    /// The server's view contradicts what this client saw: an equivocating or broken
    /// server. The client aborts without revealing any share.
    #[error("inconsistent view from the server: {0}")]
    InconsistentView(&'static str),
    /// A relayed peer message is invalid or badly signed.
    #[error("peer {peer}: {problem}")]
    BadPeerMessage {
        /// The peer.
        peer: u32,
        /// What was wrong.
        problem: &'static str,
    },
    /// A cryptographic operation with a peer's material failed.
    #[error("peer {peer:?}: {source}")]
    Crypto {
        /// The peer involved, if any.
        peer: Option<u32>,
        /// The failure.
        source: SecaggCryptoError,
    },
    /// MaskedInputCollection arrived before the input of a client made without one
    /// (rejected, not fatal).
    #[error("the input is not given yet: it must come before the masked-input round")]
    NoInput,
    /// The server did not answer before the deadline.
    #[error("timed out waiting for the server in {0:?}")]
    Timeout(Round),
}

impl ClientError {
    /// Whether the client has aborted (otherwise the message was only rejected).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::Malformed(_)
                | Self::OutOfRound { .. }
                | Self::Replayed
                | Self::WrongState
                | Self::NoInput
        )
    }
}

pub(super) fn crypto(peer: Option<u32>) -> impl Fn(SecaggCryptoError) -> ClientError {
    move |source| ClientError::Crypto { peer, source }
}
