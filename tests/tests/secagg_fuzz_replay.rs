//! Replays the secure-aggregation fuzz corpus (§9.9) through the same hooks the fuzz
//! targets call. With `QUORATE_REGENERATE_VECTORS=1` it first rewrites the seed corpus from
//! one simulated round of the fuzzing configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quorate_protocol::secagg::codec::Writer;
use quorate_protocol::secagg::fuzzing::{self, FUZZ_CLIENTS, FUZZ_INPUT_0, FUZZ_SEED, fuzz_config};
use quorate_protocol::secagg::messages::{self, Limits, Round};
use quorate_protocol::secagg::sim;

const TARGETS: [&str; 4] = [
    "secagg_client_message",
    "secagg_server_message",
    "secagg_server",
    "secagg_client",
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn hook(target: &str) -> fn(&[u8]) {
    match target {
        "secagg_client_message" => fuzzing::client_message,
        "secagg_server_message" => fuzzing::server_message,
        "secagg_server" => |d| {
            fuzzing::server(d);
        },
        _ => |d| {
            fuzzing::client(d);
        },
    }
}

fn regenerate() {
    let cfg = fuzz_config();
    let mut inputs: Vec<Vec<u64>> = (0..FUZZ_CLIENTS as u64)
        .map(|i| vec![i, 2 * i, 3 * i])
        .collect();
    inputs[0] = FUZZ_INPUT_0.to_vec();
    let mut drops = vec![None; FUZZ_CLIENTS];
    drops[3] = Some(Round::MaskedInputCollection);
    let res = sim::run(&cfg, &FUZZ_SEED, &inputs, &drops, &mut |_| {}).expect("simulated round");
    let write = |target: &str, name: String, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write corpus file");
    };
    for (i, (_, m)) in res.client_messages.iter().enumerate() {
        write("secagg_client_message", format!("msg-{i:02}"), m);
    }
    // Server seeds: the round with client 3 dropping (a timeout tick closes round 2), and
    // a round without dropouts (every round closes when all answered).
    let limits = Limits::of(&cfg);
    let mut server_records = Writer::default();
    let mut last = Round::AdvertiseKeys;
    for (_, m) in &res.client_messages {
        let round = messages::decode_client_message(m, &limits)
            .expect("decodes")
            .round;
        if last == Round::MaskedInputCollection && round == Round::ConsistencyCheck {
            server_records.uint(0);
        }
        last = round;
        server_records.uint(1).bytes(m);
    }
    write(
        "secagg_server",
        "dropout-round".into(),
        &server_records.finish(),
    );
    let full = sim::run(&cfg, &FUZZ_SEED, &inputs, &[], &mut |_| {}).expect("simulated round");
    let mut records = Writer::default();
    for (_, m) in &full.client_messages {
        records.uint(1).bytes(m);
    }
    write("secagg_server", "full-round".into(), &records.finish());
    let mut client_records = Writer::default();
    for (i, o) in res.server_messages.iter().enumerate() {
        write("secagg_server_message", format!("msg-{i:02}"), &o.bytes);
        if o.to == 0 {
            client_records.uint(1).bytes(&o.bytes);
        }
    }
    write(
        "secagg_client",
        "full-round".into(),
        &client_records.finish(),
    );
    // Decoder seeds of a sparse-graph round: graph commitments in round 0, the commitment
    // list, the reveals and the key lists that carry them (§9.5.7).
    let sparse = fuzzing::fuzz_config_sparse();
    let res =
        sim::run(&sparse, &FUZZ_SEED, &inputs, &[], &mut |_| {}).expect("simulated sparse round");
    for (i, (_, m)) in res.client_messages.iter().enumerate() {
        write("secagg_client_message", format!("sparse-msg-{i:02}"), m);
    }
    for (i, o) in res.server_messages.iter().enumerate() {
        write(
            "secagg_server_message",
            format!("sparse-msg-{i:02}"),
            &o.bytes,
        );
    }
}

#[test]
fn corpus_replays_without_panics() {
    if std::env::var("QUORATE_REGENERATE_VECTORS").as_deref() == Ok("1") {
        regenerate();
    }
    for target in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run with QUORATE_REGENERATE_VECTORS=1)",
                    dir.display()
                )
            })
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: empty corpus");
        for f in files {
            let data = std::fs::read(&f).expect("read corpus file");
            hook(target)(&data);
            // Truncations and single-byte flips of every seed must not panic either.
            for cut in [1usize, 7, data.len() / 2] {
                hook(target)(&data[..data.len().saturating_sub(cut)]);
            }
            let mut flipped = data.clone();
            for i in (0..flipped.len()).step_by(97) {
                flipped[i] ^= 0x41;
            }
            hook(target)(&flipped);
        }
    }
}

/// The seed corpus reaches deep into the state machines: the recorded round, replayed
/// through the hooks, completes on both sides (so the fuzzer starts from the end of the
/// protocol, not from its first decoder error).
#[test]
fn state_machine_seeds_complete_the_round() {
    if std::env::var("QUORATE_REGENERATE_VECTORS").as_deref() == Ok("1") {
        return; // the other test is rewriting the files
    }
    let client =
        std::fs::read(corpus_dir("secagg_client").join("full-round")).expect("corpus file");
    assert!(
        fuzzing::client(&client),
        "client seed does not complete the round"
    );
    let server =
        std::fs::read(corpus_dir("secagg_server").join("full-round")).expect("corpus file");
    assert!(
        fuzzing::server(&server),
        "server seed does not produce the sum"
    );
    let dropout =
        std::fs::read(corpus_dir("secagg_server").join("dropout-round")).expect("corpus file");
    assert!(
        fuzzing::server(&dropout),
        "server dropout seed does not produce the sum"
    );
    // A corrupted seed must not complete.
    let mut bad = server.clone();
    let n = bad.len();
    bad.truncate(n / 3);
    assert!(!fuzzing::server(&bad));
}
