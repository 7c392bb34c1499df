//! Length-prefixed frames (§8.1–§8.3), sans-IO.
//!
//! ```text
//! frame   = length payload
//! length  = 4OCTET            ; unsigned, big-endian, number of payload octets
//! payload = *OCTET            ; exactly `length` octets
//! ```
//!
//! A receiver fixes a limit `max` (at most [`MAX_FRAME_LEN`]) before reading and refuses a
//! frame whose header announces more than `max` octets as soon as the four header octets are
//! known (§8.2), before buffering any of its payload. Payload buffers grow only with octets
//! that actually arrived, never with what the header merely claims.
//!
//! Nothing here performs I/O: the QUIC driver in the node feeds received chunks in and writes
//! the bytes that [`encode_frame`] returns.

/// Length in octets of the frame header (§8.1).
pub const FRAME_HEADER_LEN: usize = 4;

/// Hard upper bound on a frame's payload length: 16 MiB (§8.2).
///
/// A receiver MAY use a lower limit per use; it never accepts a higher one.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Errors of frame encoding and decoding (§8.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header announces (or the sender asked to encode) a payload longer than the limit.
    #[error("frame too large: {len} octets announced, the limit is {max}")]
    TooLarge {
        /// Payload length announced by the header (or offered to the encoder).
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The input ended inside a frame: in its header or in its payload.
    #[error("truncated frame: {missing} more octets were expected")]
    Truncated {
        /// Number of octets still missing to complete the frame.
        missing: u64,
    },
    /// Octets follow the single frame a stream may carry (§7.5).
    #[error("trailing data: {extra} octets after the frame")]
    TrailingBytes {
        /// Number of octets after the end of the frame (at least one).
        extra: usize,
    },
    /// A limit above [`MAX_FRAME_LEN`] was requested.
    #[error("invalid frame limit {0}: the hard maximum is {MAX_FRAME_LEN}")]
    InvalidLimit(u32),
}

/// Checks a receiver's limit (§8.2): at most [`MAX_FRAME_LEN`].
fn check_limit(max: u32) -> Result<u32, FrameError> {
    if max > MAX_FRAME_LEN {
        Err(FrameError::InvalidLimit(max))
    } else {
        Ok(max)
    }
}

/// Encodes the 4-octet header of a payload of `len` octets under limit `max` (§8.1).
pub fn encode_header(len: usize, max: u32) -> Result<[u8; FRAME_HEADER_LEN], FrameError> {
    let max = check_limit(max)?;
    match u32::try_from(len) {
        Ok(len32) if len32 <= max => Ok(len32.to_be_bytes()),
        _ => Err(FrameError::TooLarge {
            len: len as u64,
            max,
        }),
    }
}

/// Parses a frame header and applies the limit (§8.2): returns the payload length.
pub fn decode_header(header: [u8; FRAME_HEADER_LEN], max: u32) -> Result<u32, FrameError> {
    let max = check_limit(max)?;
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(len)
}

/// Encodes one frame: header followed by `payload` (§8.1).
pub fn encode_frame(payload: &[u8], max: u32) -> Result<Vec<u8>, FrameError> {
    let header = encode_header(payload.len(), max)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes exactly one frame occupying all of `bytes` (§8.3): strict, no trailing octets.
pub fn decode_frame(bytes: &[u8], max: u32) -> Result<&[u8], FrameError> {
    let max = check_limit(max)?;
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::Truncated {
            missing: (FRAME_HEADER_LEN - bytes.len()) as u64,
        });
    };
    let len = decode_header(*header, max)? as usize;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated {
            missing: (len - rest.len()) as u64,
        }),
        std::cmp::Ordering::Greater => Err(FrameError::TrailingBytes {
            extra: rest.len() - len,
        }),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

/// Where the incremental decoder stands inside the current frame.
#[derive(Debug, Clone)]
enum State {
    /// Collecting the 4 header octets; `filled` of them are in `buf`.
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        filled: usize,
    },
    /// Collecting `len` payload octets; `buf` holds those received so far.
    Payload { len: usize, buf: Vec<u8> },
    /// A previous input was refused; every later call returns the same error.
    Failed(FrameError),
}

impl State {
    fn empty_header() -> Self {
        State::Header {
            buf: [0; FRAME_HEADER_LEN],
            filled: 0,
        }
    }
}

/// Incremental frame decoder (§8.3): accepts arbitrary chunks, yields complete frames.
///
/// Splitting a byte stream differently never changes the frames or the error it yields. An
/// oversized length is refused as soon as its header is complete. After an error the decoder
/// stays failed: a framing error leaves no way to find the next frame boundary.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: u32,
    state: State,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self {
            max: MAX_FRAME_LEN,
            state: State::empty_header(),
        }
    }
}

impl FrameDecoder {
    /// A decoder with the hard limit [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing payloads longer than `max` octets; `max` is at most
    /// [`MAX_FRAME_LEN`] (§8.2).
    pub fn with_limit(max: u32) -> Result<Self, FrameError> {
        Ok(Self {
            max: check_limit(max)?,
            state: State::empty_header(),
        })
    }

    /// The limit in force.
    pub fn limit(&self) -> u32 {
        self.max
    }

    /// True when the decoder sits on a frame boundary (no partial frame buffered) and has
    /// not failed.
    pub fn is_at_boundary(&self) -> bool {
        matches!(self.state, State::Header { filled: 0, .. })
    }

    /// Consumes octets from the front of `input` until one frame is complete or `input` is
    /// exhausted. Returns the frame's payload when one completed; octets after it stay in
    /// `input` for the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Header { buf, filled } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (FRAME_HEADER_LEN - *filled).min(input.len());
                    let (head, rest) = input.split_at(take);
                    buf[*filled..*filled + take].copy_from_slice(head);
                    *filled += take;
                    *input = rest;
                    if *filled < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    // §8.2: the limit applies the moment the header is known.
                    match decode_header(*buf, self.max) {
                        Ok(len) => {
                            self.state = State::Payload {
                                len: len as usize,
                                buf: Vec::new(),
                            };
                        }
                        Err(e) => {
                            self.state = State::Failed(e.clone());
                            return Err(e);
                        }
                    }
                }
                State::Payload { len, buf } => {
                    let take = (*len - buf.len()).min(input.len());
                    let (head, rest) = input.split_at(take);
                    // Grows only by octets that arrived.
                    buf.extend_from_slice(head);
                    *input = rest;
                    if buf.len() < *len {
                        return Ok(None);
                    }
                    let frame = std::mem::take(buf);
                    self.state = State::empty_header();
                    return Ok(Some(frame));
                }
            }
        }
    }

    /// Feeds one chunk and returns every frame it completes, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut frames = Vec::new();
        while let Some(frame) = self.decode(&mut chunk)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Declares the end of the input: an error if a frame was left incomplete (§8.3).
    pub fn finish(&self) -> Result<(), FrameError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Header { filled: 0, .. } => Ok(()),
            State::Header { filled, .. } => Err(FrameError::Truncated {
                missing: (FRAME_HEADER_LEN - filled) as u64,
            }),
            State::Payload { len, buf } => Err(FrameError::Truncated {
                missing: (len - buf.len()) as u64,
            }),
        }
    }
}

/// Decodes a whole byte stream into frames (§8.3): every frame must be complete.
pub fn decode_stream(bytes: &[u8], max: u32) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut decoder = FrameDecoder::with_limit(max)?;
    let frames = decoder.push(bytes)?;
    decoder.finish()?;
    Ok(frames)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream_of(frames: &[Vec<u8>]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| encode_frame(f, MAX_FRAME_LEN).unwrap())
            .collect()
    }

    /// Feeds `bytes` in chunks whose sizes cycle through `sizes` (each at least 1).
    fn decode_split(bytes: &[u8], sizes: &[usize], max: u32) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut decoder = FrameDecoder::with_limit(max)?;
        let mut frames = Vec::new();
        let mut rest = bytes;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            frames.extend(decoder.push(chunk)?);
        }
        decoder.finish()?;
        Ok(frames)
    }

    #[test]
    fn header_is_big_endian() {
        assert_eq!(
            encode_header(0x0102_0304, MAX_FRAME_LEN),
            Err(FrameError::TooLarge {
                len: 0x0102_0304,
                max: MAX_FRAME_LEN
            })
        );
        assert_eq!(
            encode_header(0x0001_0203, MAX_FRAME_LEN).unwrap(),
            [0, 1, 2, 3]
        );
        assert_eq!(encode_frame(b"abc", 3).unwrap(), b"\0\0\0\x03abc");
    }

    #[test]
    fn one_frame_strict() {
        assert_eq!(decode_frame(b"\0\0\0\x02hi", 16).unwrap(), b"hi");
        assert_eq!(
            decode_frame(b"\0\0\0\x02hi!", 16),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
        assert_eq!(
            decode_frame(b"\0\0\0\x02h", 16),
            Err(FrameError::Truncated { missing: 1 })
        );
        assert_eq!(
            decode_frame(b"\0\0", 16),
            Err(FrameError::Truncated { missing: 2 })
        );
        assert_eq!(
            decode_frame(b"\0\0\0\x11", 16),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
    }

    #[test]
    fn limit_cannot_exceed_hard_maximum() {
        assert_eq!(
            FrameDecoder::with_limit(MAX_FRAME_LEN + 1).err(),
            Some(FrameError::InvalidLimit(MAX_FRAME_LEN + 1))
        );
        assert!(encode_frame(b"", MAX_FRAME_LEN + 1).is_err());
        assert_eq!(
            FrameDecoder::with_limit(MAX_FRAME_LEN).unwrap().limit(),
            MAX_FRAME_LEN
        );
    }

    #[test]
    fn oversized_header_refused_before_payload_arrives() {
        let mut d = FrameDecoder::with_limit(1024).unwrap();
        // Three header octets: undecided yet.
        assert_eq!(d.push(&[0xff, 0xff, 0xff]).unwrap(), Vec::<Vec<u8>>::new());
        // Fourth octet completes the header: refused at once, with no payload sent.
        assert_eq!(
            d.push(&[0xff]),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: 1024
            })
        );
        // The decoder stays failed.
        assert!(d.push(b"\0\0\0\0").is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn exact_limit_accepted_and_empty_frames_allowed() {
        let stream = stream_of(&[vec![7u8; 16], vec![], vec![1]]);
        assert_eq!(
            decode_stream(&stream, 16).unwrap(),
            vec![vec![7u8; 16], vec![], vec![1]]
        );
        assert_eq!(
            decode_stream(&stream, 15),
            Err(FrameError::TooLarge { len: 16, max: 15 })
        );
    }

    #[test]
    fn decode_leaves_following_octets_in_input() {
        let stream = stream_of(&[b"one".to_vec(), b"two".to_vec()]);
        let mut d = FrameDecoder::new();
        let mut input = &stream[..];
        assert_eq!(d.decode(&mut input).unwrap(), Some(b"one".to_vec()));
        assert_eq!(input.len(), 7);
        assert!(d.is_at_boundary());
        assert_eq!(d.decode(&mut input).unwrap(), Some(b"two".to_vec()));
        assert!(input.is_empty());
        assert_eq!(d.decode(&mut input).unwrap(), None);
    }

    #[test]
    fn truncation_reports_missing_octets() {
        let stream = stream_of(&[b"hello".to_vec()]);
        for cut in 1..stream.len() {
            // Inside the header only the header's own octets are known to be missing.
            let missing = if cut < FRAME_HEADER_LEN {
                FRAME_HEADER_LEN - cut
            } else {
                stream.len() - cut
            };
            let got = decode_stream(&stream[..cut], MAX_FRAME_LEN);
            assert_eq!(
                got,
                Err(FrameError::Truncated {
                    missing: missing as u64
                }),
                "cut {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            sizes in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let stream = stream_of(&frames);
            prop_assert_eq!(decode_split(&stream, &sizes, MAX_FRAME_LEN)?, frames.clone());
            prop_assert_eq!(decode_stream(&stream, MAX_FRAME_LEN)?, frames);
        }

        #[test]
        fn oversized_and_truncated_inputs_give_the_same_typed_error_under_any_split(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
            max in 0u32..64,
            cut in any::<prop::sample::Index>(),
            sizes in proptest::collection::vec(1usize..16, 1..6),
        ) {
            let stream = stream_of(&frames);
            let cut = cut.index(stream.len() + 1);
            let input = &stream[..cut];
            let whole = decode_stream(input, max);
            let split = decode_split(input, &sizes, max);
            prop_assert_eq!(&whole, &split);
            // The expected outcome, computed independently of the decoder.
            let mut expected = Ok(Vec::new());
            let mut at = 0usize;
            for f in &frames {
                if at + FRAME_HEADER_LEN > cut {
                    if at < cut {
                        expected = Err(FrameError::Truncated { missing: (at + FRAME_HEADER_LEN - cut) as u64 });
                    }
                    break;
                }
                if f.len() as u32 > max {
                    expected = Err(FrameError::TooLarge { len: f.len() as u64, max });
                    break;
                }
                let end = at + FRAME_HEADER_LEN + f.len();
                if end > cut {
                    expected = Err(FrameError::Truncated { missing: (end - cut) as u64 });
                    break;
                }
                if let Ok(v) = expected.as_mut() { v.push(f.clone()); }
                at = end;
            }
            prop_assert_eq!(whole, expected);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in any::<u32>()) {
            let _ = decode_stream(&bytes, max);
            let _ = decode_frame(&bytes, max);
        }
    }
}
