//! Errors of the QUIC transport (§7.7) and how quinn's errors map onto them.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{ConnectionError, ReadError, VarInt, WriteError};
use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::wire::frame::FrameError;
use quorate_protocol::wire::{CloseCode, StreamCode};

use crate::tls::{PeerRefusal, TlsError};

/// TLS alert `no_application_protocol` (RFC 7301 §3.2).
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// TLS alert `certificate_required` (RFC 8446 §6.2).
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

/// First QUIC transport error code reserved for TLS alerts (RFC 9001 §4.8).
const CRYPTO_ERROR_BASE: u64 = 0x100;

/// Errors of the QUIC transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A setting is out of range.
    #[error("invalid transport settings: {0}")]
    InvalidSettings(&'static str),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP socket {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS identity or configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused to start a connection (e.g. unusable address, endpoint closing).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: quinn::ConnectError,
    },
    /// The server was already running its maximum of handshakes (§7.3.1); the attempt was
    /// refused before any key agreement.
    #[error("refused: {limit} handshakes already in progress")]
    TooManyHandshakes {
        /// The configured maximum.
        limit: usize,
    },
    /// An operation did not finish in time (§7.6).
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// The limit that ran out.
        after: Duration,
        /// What was being waited for.
        during: &'static str,
    },
    /// This side refused the peer's certificate or handshake signature (§7.3).
    #[error("refused the peer's identity: {0}")]
    RefusedIdentity(PeerRefusal),
    /// The server proved a pinned-format key that is not the one the client meant to reach
    /// (§7.3).
    #[error("unexpected peer: expected key {expected}, the server presented key {presented}")]
    UnexpectedPeer {
        /// Key id the client expected.
        expected: KeyId,
        /// Key id the server presented.
        presented: KeyId,
    },
    /// The peer refused this side's identity with the given TLS alert (§7.3): typically this
    /// node's key is not in the peer's roster.
    #[error(
        "the peer refused this node's identity (TLS alert {alert}); is this node's key in the peer's roster?"
    )]
    RefusedByPeer {
        /// TLS alert description (RFC 8446 §6).
        alert: u8,
    },
    /// The peer does not speak `quorate/1` (§7.4).
    #[error("ALPN mismatch: the peer does not speak quorate/1")]
    AlpnMismatch,
    /// A frame exceeds the limit in force (§8.2): a request too large to send, or a response
    /// whose header announces more than the caller accepts.
    #[error("frame of {len} octets exceeds the limit of {max} octets")]
    FrameTooLarge {
        /// Announced or offered payload length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The peer's response is not exactly one well-formed frame (§7.5, §8.3).
    #[error("malformed response from the peer: {0}")]
    MalformedFrame(FrameError),
    /// The peer abandoned the request with a known code (§7.7.1), e.g. because the request
    /// frame exceeded its limit.
    #[error("the peer abandoned the request: {0}")]
    PeerAbandoned(StreamCode),
    /// The peer reset the stream with a code this version does not define.
    #[error("the peer reset the stream with code {0}")]
    StreamReset(u64),
    /// This server is not accepting new connections at all (§10.3: its roster expired, or
    /// the current roster no longer lists it); the attempt was refused before the handshake.
    #[error("not accepting connections: {0}")]
    NotAccepting(String),
    /// The peer refused the connection before any handshake (QUIC `CONNECTION_REFUSED`): it
    /// accepts no new connections, e.g. because it holds no valid roster (§10.3).
    #[error(
        "the peer refused the connection before the handshake: it is not accepting connections (its roster may have expired or no longer list it)"
    )]
    ConnectionRefused,
    /// The peer closed the connection because this side's key is no longer on its roster
    /// (`REVOKED`, §7.7.2).
    #[error(
        "the peer closed the connection: this side's key is no longer on its roster ({reason})"
    )]
    Revoked {
        /// The reason phrase the peer sent.
        reason: String,
    },
    /// The handshake failed for a reason not covered above.
    #[error("handshake failed: {0}")]
    Handshake(ConnectionError),
    /// The connection is closed (by either side, or after the idle timeout).
    #[error("connection closed: {0}")]
    Closed(ConnectionError),
}

/// Maps a handshake failure to its typed cause.
pub(crate) fn handshake_error(
    e: ConnectionError,
    refusal: Option<PeerRefusal>,
    expected: Option<&PublicKey>,
) -> TransportError {
    match (refusal, expected) {
        (Some(PeerRefusal::NotPinned { key_id }), Some(expected)) => {
            TransportError::UnexpectedPeer {
                expected: expected.key_id(),
                presented: key_id,
            }
        }
        (Some(refusal), _) => TransportError::RefusedIdentity(refusal),
        (None, _) => match crypto_alert(&e) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => TransportError::AlpnMismatch,
            // This server sent certificate_required: the client presented no certificate,
            // which rustls refuses before any verifier runs (§7.3).
            Some(ALERT_CERTIFICATE_REQUIRED) if matches!(e, ConnectionError::TransportError(_)) => {
                TransportError::RefusedIdentity(PeerRefusal::ChainLength(0))
            }
            _ => match connection_error(e) {
                TransportError::Closed(e) => TransportError::Handshake(e),
                other => other,
            },
        },
    }
}

/// The TLS alert carried by a connection error, if it is one (RFC 9001 §4.8).
pub(crate) fn crypto_alert(e: &ConnectionError) -> Option<u8> {
    let code = match e {
        ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        ConnectionError::TransportError(te) => u64::from(te.code),
        _ => return None,
    };
    code.checked_sub(CRYPTO_ERROR_BASE)
        .and_then(|alert| u8::try_from(alert).ok())
}

pub(crate) fn connection_error(e: ConnectionError) -> TransportError {
    match &e {
        ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            return TransportError::ConnectionRefused;
        }
        ConnectionError::ApplicationClosed(close)
            if close.error_code.into_inner() == u64::from(CloseCode::Revoked.code()) =>
        {
            return TransportError::Revoked {
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            };
        }
        _ => {}
    }
    // A crypto error closed by the peer means it refused our identity or protocol.
    if let ConnectionError::ConnectionClosed(_) = &e
        && let Some(alert) = crypto_alert(&e)
    {
        return if alert == ALERT_NO_APPLICATION_PROTOCOL {
            TransportError::AlpnMismatch
        } else {
            TransportError::RefusedByPeer { alert }
        };
    }
    TransportError::Closed(e)
}

pub(crate) fn stream_code(code: VarInt) -> TransportError {
    let code = code.into_inner();
    match StreamCode::from_code(code) {
        Some(known) => TransportError::PeerAbandoned(known),
        None => TransportError::StreamReset(code),
    }
}

pub(crate) fn write_error(e: WriteError) -> TransportError {
    match e {
        WriteError::Stopped(code) => stream_code(code),
        WriteError::ConnectionLost(e) => connection_error(e),
        // The stream was already closed locally, or 0-RTT (never enabled, §7.2) was refused.
        _ => TransportError::Closed(ConnectionError::LocallyClosed),
    }
}

pub(crate) fn read_error(e: ReadError) -> TransportError {
    match e {
        ReadError::Reset(code) => stream_code(code),
        ReadError::ConnectionLost(e) => connection_error(e),
        _ => TransportError::Closed(ConnectionError::LocallyClosed),
    }
}

pub(crate) fn frame_error(e: FrameError) -> TransportError {
    match e {
        FrameError::TooLarge { len, max } => TransportError::FrameTooLarge { len, max },
        other => TransportError::MalformedFrame(other),
    }
}
