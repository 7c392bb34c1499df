//! Replays every checked-in fuzz corpus file through the same hooks the fuzz targets call,
//! plus every truncation and a byte flip at every position of each file: a deterministic
//! slice of fuzzing that runs in CI. A panic here is a decoder bug.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_protocol::fuzzing;
use quorate_tests::repo_root;

fn replay(target: &str, hook: fn(&[u8])) {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for f in files {
        let data = std::fs::read(&f).unwrap();
        hook(&data);
        for cut in 0..data.len() {
            hook(&data[..cut]);
        }
        for i in 0..data.len() {
            let mut m = data.clone();
            m[i] ^= 0xa5;
            hook(&m);
        }
    }
}

#[test]
fn strict_signature_corpus() {
    replay(
        "strict_signature",
        quorate_crypto::fuzzing::strict_signature,
    );
}

#[test]
fn receipt_corpus() {
    replay("receipt", fuzzing::receipt);
}

#[test]
fn tensor_npy_corpus() {
    replay("tensor_npy", fuzzing::tensor_npy);
}

#[test]
fn tensor_json_corpus() {
    replay("tensor_json", fuzzing::tensor_json);
}

#[test]
fn roster_corpus() {
    replay("roster", fuzzing::roster);
}

#[test]
fn messages_corpus() {
    replay("messages", fuzzing::messages);
}

#[test]
fn chain_corpus() {
    replay("chain", fuzzing::chain);
}

#[test]
fn evidence_bundle_corpus() {
    replay("evidence_bundle", fuzzing::evidence_bundle);
}

#[test]
fn verified_job_corpus() {
    replay("verified_job", fuzzing::verified_job);
}

#[test]
fn ensemble_messages_corpus() {
    replay("ensemble_messages", fuzzing::ensemble_messages);
}

#[test]
fn ensemble_aggregate_corpus() {
    replay("ensemble_aggregate", fuzzing::ensemble_aggregate);
}

#[test]
fn fhe_messages_corpus() {
    replay("fhe_messages", fuzzing::fhe_messages);
}

#[test]
fn tlog_corpus() {
    replay("tlog", fuzzing::tlog);
}
