//! Entry points for the fuzz targets in `fuzz/fuzz_targets/wire_*.rs`.
//!
//! Each hook takes arbitrary bytes, must never panic on any input, and asserts the
//! properties a bug would break; a panic is therefore a finding.

use super::frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, decode_stream, encode_frame};

/// Feeds the incremental frame decoder in fuzzer-chosen chunk sizes.
///
/// Layout of `data`: octets 0..4 choose the limit (big-endian, reduced modulo
/// `MAX_FRAME_LEN + 1`), octet 4 seeds the chunk sizes, the rest is the stream. Checks that
/// the chunked decoding yields exactly what a single-chunk decoding yields (frames or error),
/// that no frame exceeds the limit, and that re-encoding the frames reproduces the input
/// prefix they came from.
pub fn frame_decoder(data: &[u8]) {
    let Some((limit, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max = u32::from_be_bytes(*limit) % (MAX_FRAME_LEN + 1);
    let Some((&seed, stream)) = rest.split_first() else {
        return;
    };

    let whole = decode_stream(stream, max);

    let chunked: Result<Vec<Vec<u8>>, FrameError> = (|| {
        let mut decoder = FrameDecoder::with_limit(max)?;
        let mut frames = Vec::new();
        let mut input = stream;
        let mut state = seed;
        while !input.is_empty() {
            // A small xorshift walk over chunk sizes 1..=64 derived from the seed.
            state ^= state << 3;
            state ^= state >> 5;
            state ^= state << 1;
            let n = (usize::from(state) % 64 + 1).min(input.len());
            let (chunk, tail) = input.split_at(n);
            input = tail;
            frames.extend(decoder.push(chunk)?);
        }
        decoder.finish()?;
        Ok(frames)
    })();

    assert_eq!(whole, chunked, "chunking changed the decoding");
    if let Ok(frames) = whole {
        let mut reencoded = Vec::with_capacity(stream.len());
        for frame in &frames {
            assert!(frame.len() <= max as usize, "frame over the limit");
            let bytes = encode_frame(frame, max);
            assert!(
                bytes.is_ok(),
                "a decoded frame does not re-encode: {bytes:?}"
            );
            reencoded.extend_from_slice(bytes.as_deref().unwrap_or_default());
        }
        assert_eq!(reencoded, stream, "re-encoding differs from the input");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    #[test]
    fn hook_accepts_short_and_odd_inputs() {
        super::frame_decoder(b"");
        super::frame_decoder(b"\0\0\0");
        super::frame_decoder(b"\0\0\0\x10\x07\0\0\0\x02hi\0\0\0\0");
        super::frame_decoder(b"\xff\xff\xff\xff\x01\xff\xff\xff\xff");
        super::frame_decoder(b"\0\0\0\x01\x00\0\0\0\x02hi");
    }
}
