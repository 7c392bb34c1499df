//! The log, its fork and the documents every §18 vector section draws from. Keys and
//! signatures are deterministic (RFC 8032), so the vectors are reproducible byte for byte.

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use quorate_crypto::SecretKey;
use quorate_crypto::merkle::MerkleLog;
use quorate_protocol::receipt::{JobKind, ReceiptPayload};
use quorate_protocol::tlog::{self, TreeHead, sign_consistency_receipt, sign_inclusion_receipt};
use serde_json::{Value, json};

use super::tamper;

pub const GENERATED_BY: &str = "tests/tests/tlog_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test tlog_vectors)";
pub const T0: u64 = 1_763_900_000;

/// The log's key is key 1 of `keys.json` (seed 01…01); key 2 is another node.
pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

pub fn receipt(job: u8, k: &SecretKey) -> Vec<u8> {
    ReceiptPayload {
        job_id: [job; 16],
        nonce: (0u8..16).collect(),
        kind: JobKind::Infer,
        model_digest: quorate_crypto::tensor_digest::sha256(b"model bytes"),
        inputs: vec![],
        outputs: vec![],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: T0 + u64::from(job),
        previous: None,
        policy: None,
    }
    .sign(k)
    .unwrap()
}

pub struct Log {
    pub receipts: Vec<Vec<u8>>,
    pub tree: MerkleLog,
}

pub fn log_of(n: u8, tag: u8, k: &SecretKey) -> Log {
    let receipts: Vec<Vec<u8>> = (0..n).map(|j| receipt(j ^ tag, k)).collect();
    let tree = MerkleLog::from_leaves(receipts.iter().map(|r| tlog::receipt_leaf_hash(r).unwrap()))
        .unwrap();
    Log { receipts, tree }
}

pub fn head(log: &Log, size: u64, k: &SecretKey) -> Vec<u8> {
    TreeHead {
        log_id: k.public_key().key_id(),
        size,
        root: log.tree.root(size).unwrap(),
        issued_at: T0 + 100 + size,
    }
    .sign(k)
    .unwrap()
}

pub fn vector(kind: &str, description: &str, error: Option<&str>, fields: Value) -> Value {
    let mut v = json!({
        "generated_by": GENERATED_BY,
        "type": kind,
        "spec": "§18",
        "description": description,
        "expect": if error.is_some() { "invalid" } else { "valid" },
        "public_key": hex::encode(key(1).public_key().to_bytes()),
    });
    if let Some(e) = error {
        v["error"] = json!(e);
    }
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

pub fn h(b: &[u8]) -> Value {
    json!(hex::encode(b))
}

pub fn flip_first_hash(items: &mut [Cbor]) {
    if let Cbor::Bytes(b) = &mut tamper::path(items)[0] {
        b[0] ^= 1;
    }
}

/// Writes one vector under `name.json`.
pub fn put(out: &mut BTreeMap<String, Value>, name: &str, v: Value) {
    out.insert(format!("{name}.json"), v);
}

/// What the sections share: the log of key 1 and a fork of it, another node's log, and
/// the honest documents the `_bad_` vectors are made from.
pub struct Fixture {
    pub k: SecretKey,
    pub other: SecretKey,
    pub log: Log,
    pub fork: Log,
    pub other_log: Log,
    pub h3: Vec<u8>,
    pub h6: Vec<u8>,
    pub h9: Vec<u8>,
    /// The inclusion receipt of leaf 4 at size 6.
    pub inc: Vec<u8>,
    /// The consistency receipt 3 → 9.
    pub c: Vec<u8>,
}

pub fn fixture() -> Fixture {
    let (k, other) = (key(1), key(2));
    let log = log_of(9, 0, &k);
    let fork = log_of(9, 0x40, &k);
    let other_log = log_of(6, 0, &other);
    Fixture {
        h3: head(&log, 3, &k),
        h6: head(&log, 6, &k),
        h9: head(&log, 9, &k),
        inc: sign_inclusion_receipt(&log.tree, 4, 6, T0 + 106, &k).unwrap(),
        c: sign_consistency_receipt(&log.tree, 3, 9, T0 + 200, &k).unwrap(),
        k,
        other,
        log,
        fork,
        other_log,
    }
}
