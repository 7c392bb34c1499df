//! Frame test vectors (`spec/vectors/frames/*.json`, §8).
//!
//! Every file is loaded and checked: good vectors decode to their frames under any chunking
//! and re-encode to their stream; `_bad_` twins fail with the recorded error. The vectors
//! are produced by [`generate`] below; `QUORATE_WRITE_VECTORS=1 cargo test -p
//! quorate-protocol --test frame_vectors` rewrites them, and the `vectors_are_current` test
//! fails whenever the files and the generator disagree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quorate_protocol::wire::frame::{
    FrameDecoder, FrameError, MAX_FRAME_LEN, decode_stream, encode_frame,
};
use serde_json::{Value, json};

const GENERATED_BY: &str = "protocol/tests/frame_vectors.rs::generate (QUORATE_WRITE_VECTORS=1 cargo test -p quorate-protocol --test frame_vectors)";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/frames")
}

fn frame(payload: &[u8]) -> Vec<u8> {
    encode_frame(payload, MAX_FRAME_LEN).unwrap()
}

fn error_json(e: &FrameError) -> Value {
    match e {
        FrameError::TooLarge { len, max } => json!({"kind": "too_large", "len": len, "max": max}),
        FrameError::Truncated { missing } => json!({"kind": "truncated", "missing": missing}),
        other => panic!("no vector kind for {other:?}"),
    }
}

fn vector(
    description: &str,
    max: u32,
    stream: &[u8],
    frames: &[Vec<u8>],
    error: Option<FrameError>,
) -> Value {
    json!({
        "generated_by": GENERATED_BY,
        "spec": "§8.1-§8.3",
        "description": description,
        "max_frame_len": max,
        "stream": hex::encode(stream),
        "frames": frames.iter().map(hex::encode).collect::<Vec<_>>(),
        "error": error.as_ref().map(error_json),
        // False when the stream stops inside a frame without being an error yet: a receiver
        // waits for more octets; only the end of the stream makes it a truncation.
        "complete": error.is_some() || decode_stream(stream, max).is_ok(),
    })
}

/// The vectors, by file name.
fn generate() -> BTreeMap<&'static str, Value> {
    let mut v = BTreeMap::new();
    // A deterministic CBOR map {1: 2} as the payload of one frame.
    let cbor = vec![0xa1, 0x01, 0x02];
    let single = frame(&cbor);
    v.insert(
        "frames_single",
        vector(
            "one frame carrying the CBOR map {1: 2}",
            MAX_FRAME_LEN,
            &single,
            std::slice::from_ref(&cbor),
            None,
        ),
    );
    v.insert(
        "frames_single_bad_truncated",
        vector(
            "the same frame with its last payload octet missing",
            MAX_FRAME_LEN,
            &single[..single.len() - 1],
            &[],
            Some(FrameError::Truncated { missing: 1 }),
        ),
    );

    let long: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
    let seq_frames = vec![Vec::new(), b"hello".to_vec(), long];
    let seq: Vec<u8> = seq_frames.iter().flat_map(|f| frame(f)).collect();
    v.insert(
        "frames_sequence",
        vector(
            "three frames back to back: empty, 'hello', 300 octets (i*7 mod 251)",
            MAX_FRAME_LEN,
            &seq,
            &seq_frames,
            None,
        ),
    );
    let mut seq_cut = seq.clone();
    seq_cut.extend_from_slice(&[0x00, 0x00]);
    v.insert(
        "frames_sequence_bad_truncated_header",
        vector(
            "the same three frames followed by half a header",
            MAX_FRAME_LEN,
            &seq_cut,
            &seq_frames,
            Some(FrameError::Truncated { missing: 2 }),
        ),
    );

    let at_limit = vec![0x42; 16];
    v.insert(
        "frames_at_limit",
        vector(
            "a 16-octet payload under a receiver limit of 16",
            16,
            &frame(&at_limit),
            std::slice::from_ref(&at_limit),
            None,
        ),
    );
    v.insert(
        "frames_at_limit_bad_oversized",
        vector(
            "a 17-octet payload under a receiver limit of 16: refused at the header",
            16,
            &frame(&[0x42; 17]),
            &[],
            Some(FrameError::TooLarge { len: 17, max: 16 }),
        ),
    );

    let max_header = MAX_FRAME_LEN.to_be_bytes();
    v.insert(
        "frames_hard_max_header",
        vector(
            "a header announcing exactly MAX_FRAME_LEN octets, payload not yet received: no error, no frame",
            MAX_FRAME_LEN,
            &max_header,
            &[],
            None,
        ),
    );
    v.insert(
        "frames_hard_max_header_bad_oversized",
        vector(
            "a header announcing MAX_FRAME_LEN + 1 octets: refused before any payload",
            MAX_FRAME_LEN,
            &(MAX_FRAME_LEN + 1).to_be_bytes(),
            &[],
            Some(FrameError::TooLarge {
                len: u64::from(MAX_FRAME_LEN) + 1,
                max: MAX_FRAME_LEN,
            }),
        ),
    );
    v
}

/// Rewrites the files from [`generate`] once per run when `QUORATE_WRITE_VECTORS` is set.
fn write_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("QUORATE_WRITE_VECTORS").is_none() {
            return;
        }
        std::fs::create_dir_all(dir()).unwrap();
        for (name, value) in &generate() {
            let text = serde_json::to_string_pretty(value).unwrap() + "\n";
            std::fs::write(dir().join(format!("{name}.json")), text).unwrap();
        }
    });
}

fn load_all() -> BTreeMap<String, Value> {
    write_if_asked();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir()).expect("spec/vectors/frames exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.insert(name, value);
    }
    out
}

#[test]
fn vectors_are_current() {
    let generated = generate();
    let on_disk = load_all();
    let names: Vec<&String> = on_disk.keys().collect();
    assert_eq!(
        names,
        generated.keys().collect::<Vec<_>>(),
        "vector files differ from the generator"
    );
    for (name, value) in &generated {
        assert_eq!(&on_disk[*name], value, "{name} is stale");
    }
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).unwrap()
}

/// Decodes `stream` octet by octet; returns the frames seen and the first error.
fn decode_bytewise(stream: &[u8], max: u32) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
    let mut decoder = FrameDecoder::with_limit(max).unwrap();
    let mut frames = Vec::new();
    for b in stream {
        match decoder.push(std::slice::from_ref(b)) {
            Ok(f) => frames.extend(f),
            Err(e) => return (frames, Err(e)),
        }
    }
    let end = decoder.finish();
    (frames, end)
}

#[test]
fn every_vector_decodes_as_recorded() {
    let vectors = load_all();
    assert!(
        vectors.len() >= 8,
        "expected the frame vectors, found {}",
        vectors.len()
    );
    for (name, v) in &vectors {
        assert!(
            v["generated_by"].is_string(),
            "{name}: generated_by missing"
        );
        let max = u32::try_from(v["max_frame_len"].as_u64().unwrap()).unwrap();
        let stream = hex_field(v, "stream");
        let frames: Vec<Vec<u8>> = v["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| hex::decode(f.as_str().unwrap()).unwrap())
            .collect();
        let (seen, end) = decode_bytewise(&stream, max);
        assert_eq!(seen, frames, "{name}: frames decoded before the end");
        let whole = decode_stream(&stream, max);
        if v["error"].is_null() {
            if v["complete"] == Value::Bool(false) {
                // An incomplete frame: no error yet while streaming, truncated at the end.
                let mut d = FrameDecoder::with_limit(max).unwrap();
                assert_eq!(d.push(&stream).unwrap(), Vec::<Vec<u8>>::new(), "{name}");
                assert!(
                    matches!(d.finish(), Err(FrameError::Truncated { .. })),
                    "{name}"
                );
                continue;
            }
            assert_eq!(end, Ok(()), "{name}");
            assert_eq!(whole.as_ref(), Ok(&frames), "{name}");
            let reencoded: Vec<u8> = frames
                .iter()
                .flat_map(|f| encode_frame(f, max).unwrap())
                .collect();
            assert_eq!(reencoded, stream, "{name}: re-encoding");
            assert!(
                !name.contains("_bad_"),
                "{name}: a bad vector without an error"
            );
        } else {
            assert!(
                name.contains("_bad_"),
                "{name}: an error vector must be a _bad_ twin"
            );
            let expected = match v["error"]["kind"].as_str().unwrap() {
                "too_large" => FrameError::TooLarge {
                    len: v["error"]["len"].as_u64().unwrap(),
                    max: u32::try_from(v["error"]["max"].as_u64().unwrap()).unwrap(),
                },
                "truncated" => FrameError::Truncated {
                    missing: v["error"]["missing"].as_u64().unwrap(),
                },
                other => panic!("{name}: unknown error kind {other}"),
            };
            assert_eq!(end, Err(expected.clone()), "{name}: bytewise");
            assert_eq!(whole, Err(expected), "{name}: whole");
        }
    }
}

#[test]
fn every_good_vector_has_a_bad_twin() {
    let vectors = load_all();
    for name in vectors.keys().filter(|n| !n.contains("_bad_")) {
        assert!(
            vectors
                .keys()
                .any(|b| b.starts_with(&format!("{name}_bad_"))),
            "{name} has no _bad_ twin"
        );
    }
}
