//! One request, one response: the stream-per-request exchange of §7.5 on the client side,
//! and the frame reading both sides share, through the sans-IO frame codec of §8.

use std::time::{Duration, Instant};

use quinn::{ReadError, RecvStream};
use quorate_protocol::wire::frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_header};

use crate::deadline::response_deadline;
use crate::error::{TransportError, connection_error, frame_error, read_error, write_error};

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// The longest any exchange is waited for, whatever the budget (30 days).
const LONGEST_WAIT: Duration = Duration::from_secs(30 * 86_400);

/// Why reading a frame from a stream failed.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The octets received are not exactly one acceptable frame.
    Frame(FrameError),
    /// The stream or connection failed.
    Stream(ReadError),
}

/// Reads exactly one frame and the end of the stream (§7.5) through the sans-IO decoder.
pub(crate) async fn read_frame(recv: &mut RecvStream, max: u32) -> Result<Vec<u8>, ReadFailure> {
    let mut decoder = FrameDecoder::with_limit(max).map_err(ReadFailure::Frame)?;
    let mut frame = None;
    while let Some(chunk) = recv
        .read_chunk(READ_CHUNK, true)
        .await
        .map_err(ReadFailure::Stream)?
    {
        let mut input: &[u8] = &chunk.bytes;
        if frame.is_none() {
            frame = decoder.decode(&mut input).map_err(ReadFailure::Frame)?;
        }
        if !input.is_empty() {
            return Err(ReadFailure::Frame(FrameError::TrailingBytes {
                extra: input.len(),
            }));
        }
    }
    decoder.finish().map_err(ReadFailure::Frame)?;
    frame.ok_or(ReadFailure::Frame(FrameError::Truncated {
        missing: quorate_protocol::wire::FRAME_HEADER_LEN as u64,
    }))
}

/// Sends one request on a fresh bidirectional stream and returns the response payload
/// (§7.5), accepting responses up to [`MAX_FRAME_LEN`].
pub async fn request(
    conn: &quinn::Connection,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    request_with_limit(conn, payload, MAX_FRAME_LEN, timeout).await
}

/// Sends one request like [`request`], waiting for the response as long as the compute
/// `budget` plus network time that follows the connection's measured RTT (§7.6.1). The RTT is
/// read again whenever the deadline comes, so a path that turns slow during the exchange
/// extends it, within [`crate::deadline::RESPONSE_MARGIN_CAP`].
pub async fn request_within(
    conn: &quinn::Connection,
    payload: &[u8],
    budget: Duration,
) -> Result<Vec<u8>, TransportError> {
    let start = Instant::now();
    // Clamped so that a huge budget cannot overflow the clock.
    let deadline = || {
        let wait = response_deadline(budget, conn.rtt()).min(LONGEST_WAIT);
        start.checked_add(wait).unwrap_or(start)
    };
    let exchange = request_with_limit(conn, payload, MAX_FRAME_LEN, Duration::MAX);
    tokio::pin!(exchange);
    loop {
        let due = deadline();
        match tokio::time::timeout_at(due.into(), &mut exchange).await {
            Ok(answer) => return answer,
            // The RTT rose while we waited: the deadline moved on.
            Err(_) if Instant::now() < deadline() => {}
            Err(_) => {
                return Err(TransportError::Timeout {
                    after: start.elapsed(),
                    during: "waiting for a response",
                });
            }
        }
    }
}

/// [`request`] with a lower limit on the response payload (§8.2).
pub async fn request_with_limit(
    conn: &quinn::Connection,
    payload: &[u8],
    max_response_len: u32,
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    let header = encode_header(payload.len(), MAX_FRAME_LEN).map_err(frame_error)?;
    if max_response_len > MAX_FRAME_LEN {
        return Err(TransportError::InvalidSettings(
            "max_response_len exceeds MAX_FRAME_LEN",
        ));
    }
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(connection_error)?;
        send.write_all(&header).await.map_err(write_error)?;
        send.write_all(payload).await.map_err(write_error)?;
        // Finishing fails only if the stream was already reset, which write_all reported.
        let _ = send.finish();
        read_frame(&mut recv, max_response_len)
            .await
            .map_err(|failure| match failure {
                ReadFailure::Frame(e) => frame_error(e),
                ReadFailure::Stream(e) => read_error(e),
            })
    };
    if timeout == Duration::MAX {
        return exchange.await;
    }
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TransportError::Timeout {
            after: timeout,
            during: "waiting for a response",
        })?
}
