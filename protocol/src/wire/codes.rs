//! Application error codes carried by QUIC `RESET_STREAM`, `STOP_SENDING` and
//! `CONNECTION_CLOSE` frames (§7.7).
//!
//! These codes say why the transport gave up on a stream or a connection. They never carry
//! details of a verification failure; those go to the local operator's log (§7.7).

/// Why a stream was reset or stopped (§7.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamCode {
    /// The request frame's header announced more octets than the receiver's limit (§8.2).
    FrameTooLarge,
    /// The stream did not hold exactly one well-formed frame (§7.5, §8.3).
    MalformedFrame,
    /// The request was not received completely within the receiver's request timeout (§7.6).
    RequestTimeout,
    /// The receiver could not produce a response (handler failed or is shutting down).
    Internal,
}

impl StreamCode {
    /// Every code, in numeric order.
    pub const ALL: [StreamCode; 4] = [
        StreamCode::FrameTooLarge,
        StreamCode::MalformedFrame,
        StreamCode::RequestTimeout,
        StreamCode::Internal,
    ];

    /// The numeric code on the wire (a QUIC varint).
    pub const fn code(self) -> u32 {
        match self {
            StreamCode::FrameTooLarge => 0x10,
            StreamCode::MalformedFrame => 0x11,
            StreamCode::RequestTimeout => 0x12,
            StreamCode::Internal => 0x13,
        }
    }

    /// Parses a numeric code; `None` for a code this version does not define.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }
}

impl std::fmt::Display for StreamCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamCode::FrameTooLarge => "frame too large for the receiver's limit",
            StreamCode::MalformedFrame => "malformed frame",
            StreamCode::RequestTimeout => "request not received in time",
            StreamCode::Internal => "the receiver could not produce a response",
        })
    }
}

/// Why a connection was closed by the application (§7.7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// Orderly close: no error.
    Done,
    /// The handshake completed but the peer's identity or protocol is not the one required
    /// (§7.3, §7.4); sent when a post-handshake check fails.
    IdentityMismatch,
    /// The endpoint is shutting down.
    Shutdown,
    /// The peer's key is no longer on the endpoint's current roster (§10.3): a new roster
    /// removed it, and connections authenticated with it are closed.
    Revoked,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 4] = [
        CloseCode::Done,
        CloseCode::IdentityMismatch,
        CloseCode::Shutdown,
        CloseCode::Revoked,
    ];

    /// The numeric code on the wire (a QUIC varint).
    pub const fn code(self) -> u32 {
        match self {
            CloseCode::Done => 0x00,
            CloseCode::IdentityMismatch => 0x01,
            CloseCode::Shutdown => 0x02,
            CloseCode::Revoked => 0x03,
        }
    }

    /// Parses a numeric code; `None` for a code this version does not define.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_distinct() {
        for c in StreamCode::ALL {
            assert_eq!(StreamCode::from_code(u64::from(c.code())), Some(c));
        }
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(u64::from(c.code())), Some(c));
        }
        assert_eq!(StreamCode::from_code(0x99), None);
        assert_eq!(CloseCode::from_code(0x99), None);
    }
}
