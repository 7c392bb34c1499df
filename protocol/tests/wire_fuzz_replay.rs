//! Replays the `wire_frames` fuzz corpus (`fuzz/corpus/wire_frames/`) through the fuzzing
//! hook, so every seed and every minimised finding stays a regression test without
//! cargo-fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn wire_frames_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_frames");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/wire_frames exists") {
        let path = entry.expect("readable corpus entry").path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).expect("readable corpus file");
        quorate_protocol::wire::fuzzing::frame_decoder(&data);
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "expected the seed corpus, replayed {replayed} files"
    );
}

#[test]
fn hook_oracle_holds_for_every_chunking_seed() {
    // The hook asserts that chunked and single-shot decoding agree; walk every chunk-size
    // seed over a stream with one good frame and one truncated frame.
    let stream = [0u8, 0, 0, 1, b'z', 0, 0, 0, 5, b'a', b'b'];
    for seed in 0..=255u8 {
        let mut data = 64u32.to_be_bytes().to_vec();
        data.push(seed);
        data.extend_from_slice(&stream);
        quorate_protocol::wire::fuzzing::frame_decoder(&data);
    }
}
