//! Tunable limits and timeouts of the transport (§7.6).

use std::time::Duration;

use quinn::VarInt;
use quorate_protocol::wire::frame::MAX_FRAME_LEN;

use crate::error::TransportError;

/// Bytes one stream may have in flight before the receiver reads them (§7.6).
pub const STREAM_WINDOW: u32 = 256 << 10;

/// Tunable limits and timeouts of the transport (§7.6).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// A connection with no traffic for this long is closed (QUIC `max_idle_timeout`).
    pub idle_timeout: Duration,
    /// Interval of keep-alive PINGs on idle connections; `None` disables them.
    pub keep_alive: Option<Duration>,
    /// Upper bound on establishing a connection, handshake included.
    pub connect_timeout: Duration,
    /// Upper bound, on the server, for receiving one complete request.
    pub request_timeout: Duration,
    /// Streams a peer may have open concurrently on one connection.
    pub max_concurrent_bidi_streams: u32,
    /// Largest request payload the server accepts, at most [`MAX_FRAME_LEN`].
    pub max_request_len: u32,
    /// The server's memory budget for requests in flight, in bytes (§7.6): a stream is read
    /// only once `max_request_len` of the budget is free, and holds it until its response
    /// is written, so all peers together never buffer more than this. Must be at least
    /// `max_request_len`.
    pub max_in_flight_bytes: u64,
    /// Handshakes the server runs at once (§7.3.1); an Initial beyond them is refused with
    /// `CONNECTION_REFUSED` before any key agreement or signature is spent on it. At least 1.
    pub max_concurrent_handshakes: usize,
    /// Whether the server validates a client's address with a QUIC Retry before its
    /// handshake (RFC 9000 §8.1, §7.3.1), so a spoofed source address costs the server no
    /// X25519 and no signature.
    pub validate_addresses: bool,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_bidi_streams: 64,
            max_request_len: MAX_FRAME_LEN,
            max_in_flight_bytes: 4 * u64::from(MAX_FRAME_LEN),
            max_concurrent_handshakes: 64,
            validate_addresses: true,
        }
    }
}

impl TransportSettings {
    pub(crate) fn transport_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        if self.max_request_len > MAX_FRAME_LEN {
            return Err(TransportError::InvalidSettings(
                "max_request_len exceeds MAX_FRAME_LEN",
            ));
        }
        if self.max_in_flight_bytes < u64::from(self.max_request_len) {
            return Err(TransportError::InvalidSettings(
                "max_in_flight_bytes must be at least max_request_len",
            ));
        }
        if self.max_concurrent_handshakes == 0 {
            return Err(TransportError::InvalidSettings(
                "max_concurrent_handshakes must be at least 1",
            ));
        }
        if self.keep_alive.is_some_and(|k| k >= self.idle_timeout) {
            return Err(TransportError::InvalidSettings(
                "keep_alive must be shorter than idle_timeout",
            ));
        }
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::InvalidSettings("idle_timeout out of range"))?;
        let mut config = quinn::TransportConfig::default();
        config
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            // §7.6: what one connection may have sent and not yet been read is bounded, so
            // unread streams cannot pile up in memory beyond the request budget; the
            // connection window leaves room for every stream's window plus two requests in
            // progress, so streams waiting for the budget never block the ones being read.
            .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
            .receive_window(
                VarInt::from_u64(
                    u64::from(self.max_concurrent_bidi_streams) * u64::from(STREAM_WINDOW)
                        + 2 * u64::from(self.max_request_len),
                )
                .unwrap_or(VarInt::MAX),
            )
            // §7.5: only bidirectional streams are used.
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(None);
        Ok(config)
    }
}
