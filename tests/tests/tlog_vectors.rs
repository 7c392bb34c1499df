//! §18 vectors: signed tree heads, inclusion and consistency receipts, promises,
//! equivocation bundles and audit logs against a head, good and `_bad_`, generated here
//! (`QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test tlog_vectors`) and
//! checked by the conformance test below through `quorate-verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "tlog_vectors/tamper.rs"]
mod tamper;

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use quorate_crypto::merkle::MerkleLog;
use quorate_crypto::{PublicKey, SecretKey};
use quorate_protocol::audit_log;
use quorate_protocol::receipt::{JobKind, ReceiptPayload};
use quorate_protocol::tlog::{
    self, EquivocationBundle, Promise, TreeHead, sign_consistency_receipt, sign_inclusion_receipt,
};
use quorate_tests::{check_or_regenerate, check_vector_header, read_json, vector_files};
use quorate_verify::tlog::{self as verify, NotProven, Verdict};
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/tlog_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test tlog_vectors)";
const T0: u64 = 1_763_900_000;

/// The log's key is key 1 of `keys.json` (seed 01…01); key 2 is another node.
fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn receipt(job: u8, k: &SecretKey) -> Vec<u8> {
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

struct Log {
    receipts: Vec<Vec<u8>>,
    tree: MerkleLog,
}

fn log_of(n: u8, tag: u8, k: &SecretKey) -> Log {
    let receipts: Vec<Vec<u8>> = (0..n).map(|j| receipt(j ^ tag, k)).collect();
    let tree = MerkleLog::from_leaves(receipts.iter().map(|r| tlog::receipt_leaf_hash(r).unwrap()))
        .unwrap();
    Log { receipts, tree }
}

fn head(log: &Log, size: u64, k: &SecretKey) -> Vec<u8> {
    TreeHead {
        log_id: k.public_key().key_id(),
        size,
        root: log.tree.root(size).unwrap(),
        issued_at: T0 + 100 + size,
    }
    .sign(k)
    .unwrap()
}

fn vector(kind: &str, description: &str, error: Option<&str>, fields: Value) -> Value {
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

fn h(b: &[u8]) -> Value {
    json!(hex::encode(b))
}

fn flip_first_hash(items: &mut [Cbor]) {
    if let Cbor::Bytes(b) = &mut tamper::path(items)[0] {
        b[0] ^= 1;
    }
}

fn generate() -> BTreeMap<String, Value> {
    let (k, other) = (key(1), key(2));
    let log = log_of(9, 0, &k);
    let fork = log_of(9, 0x40, &k);
    let mut out = BTreeMap::new();
    let mut put = |name: &str, v: Value| {
        out.insert(format!("{name}.json"), v);
    };

    // §18.3 heads.
    let h6 = head(&log, 6, &k);
    put(
        "head_good",
        vector(
            "tree_head",
            "a head of 6 leaves",
            None,
            json!({"head": h(&h6), "size": 6, "root": h(&log.tree.root(6).unwrap())}),
        ),
    );
    let other_log = log_of(6, 0, &other);
    put(
        "head_bad_wrong_key",
        vector(
            "tree_head",
            "a head signed by another node's key",
            Some("wrong_key"),
            json!({"head": h(&head(&other_log, 6, &other))}),
        ),
    );
    put(
        "head_bad_tampered_size",
        vector(
            "tree_head",
            "size 6 changed to 7 after signing",
            Some("bad_signature"),
            json!({"head": h(&tamper::edit_payload(&h6, 3, Cbor::Integer(7.into())))}),
        ),
    );
    put(
        "head_bad_tampered_root",
        vector(
            "tree_head",
            "root changed after signing",
            Some("bad_signature"),
            json!({"head": h(&tamper::edit_payload(&h6, 4, Cbor::Bytes(vec![0; 32])))}),
        ),
    );

    // §18.4 inclusion receipts, carried by the receipt in header 394.
    let inc = sign_inclusion_receipt(&log.tree, 4, 6, T0 + 106, &k).unwrap();
    let carry =
        |r: &[u8]| tlog::attach_inclusion_receipts(&log.receipts[4], &[r.to_vec()]).unwrap();
    put(
        "inclusion_good",
        vector(
            "inclusion",
            "receipt 4 of a log of 6 with its inclusion receipt in header 394, and the head of that size",
            None,
            json!({"receipt": h(&carry(&inc)), "head": h(&h6), "leaf_index": 4, "tree_size": 6, "root": h(&log.tree.root(6).unwrap())}),
        ),
    );
    let root6 = log.tree.root(6).unwrap();
    let bad_inclusions = [
        (
            "inclusion_bad_flipped_hash",
            "one bit of the first path hash flipped",
            "bad_signature",
            tamper::edit_proof(&inc, |i| flip_first_hash(i)),
        ),
        (
            "inclusion_bad_leaf_index",
            "leaf index 4 changed to 5",
            "bad_signature",
            tamper::edit_proof(&inc, |i| i[1] = Cbor::Integer(5.into())),
        ),
        (
            "inclusion_bad_proof_too_long",
            "a path of 65 hashes",
            "proof_too_long",
            tamper::edit_proof(&inc, |i| {
                tamper::path(i).resize(65, Cbor::Bytes(vec![0; 32]))
            }),
        ),
        (
            "inclusion_bad_short_path",
            "the last path hash removed",
            "proof_shape",
            tamper::edit_proof(&inc, |i| {
                tamper::path(i).pop();
            }),
        ),
        (
            "inclusion_bad_vds",
            "vds 2 instead of RFC9162_SHA256 (1), signed",
            "vds",
            tamper::resign_protected(&inc, tlog::HEADER_VDS, Cbor::Integer(2.into()), &root6, &k),
        ),
        (
            "inclusion_bad_missing_396",
            "no header 396",
            "missing_proof",
            tamper::set_unprotected(&inc, vec![]),
        ),
        (
            "inclusion_bad_size_not_signed",
            "the proof's tree size differs from the signed one",
            "size",
            tamper::edit_proof(&inc, |i| i[0] = Cbor::Integer(7.into())),
        ),
    ];
    for (name, what, code, bad) in bad_inclusions {
        put(
            name,
            vector(
                "inclusion",
                what,
                Some(code),
                json!({"receipt": h(&carry(&bad))}),
            ),
        );
    }
    let elsewhere =
        tlog::attach_inclusion_receipts(&log.receipts[3], std::slice::from_ref(&inc)).unwrap();
    put(
        "inclusion_bad_other_receipt",
        vector(
            "inclusion",
            "receipt 4's inclusion receipt carried by receipt 3",
            Some("bad_signature"),
            json!({"receipt": h(&elsewhere)}),
        ),
    );

    // §18.5 consistency receipts between two heads.
    let (h3, h9) = (head(&log, 3, &k), head(&log, 9, &k));
    let c = sign_consistency_receipt(&log.tree, 3, 9, T0 + 200, &k).unwrap();
    put(
        "consistency_good",
        vector(
            "consistency",
            "sizes 3 → 9",
            None,
            json!({"consistency": h(&c), "head_a": h(&h3), "head_b": h(&h9)}),
        ),
    );
    put(
        "consistency_bad_not_linked",
        vector(
            "consistency",
            "the honest receipt 3 → 9 against a forked head of size 3",
            Some("mismatch"),
            json!({"consistency": h(&c), "head_a": h(&head(&fork, 3, &k)), "head_b": h(&h9)}),
        ),
    );
    put(
        "consistency_bad_flipped_hash",
        vector(
            "consistency",
            "one bit of the first proof hash flipped",
            Some("mismatch"),
            json!({"consistency": h(&tamper::edit_proof(&c, |i| flip_first_hash(i))), "head_a": h(&h3), "head_b": h(&h9)}),
        ),
    );

    // §18.6 promises.
    let leaf = tlog::receipt_leaf_hash(&log.receipts[4]).unwrap();
    let promise = Promise {
        log_id: k.public_key().key_id(),
        leaf_hash: leaf,
        issued_at: T0 + 100,
        deadline: T0 + 106,
    }
    .sign(&k)
    .unwrap();
    put(
        "promise_good",
        vector(
            "promise",
            "leaf 4 promised by T0+106, included at T0+106",
            None,
            json!({"promise": h(&promise), "inclusion": h(&inc)}),
        ),
    );
    let late = sign_inclusion_receipt(&log.tree, 4, 9, T0 + 109, &k).unwrap();
    put(
        "promise_bad_past_deadline",
        vector(
            "promise",
            "the only inclusion receipt shown is signed after the deadline",
            Some("late"),
            json!({"promise": h(&promise), "inclusion": h(&late)}),
        ),
    );

    // §18.7 equivocation bundles: "valid" convicts, "invalid" must not.
    let bundle = |a: &[u8], b: &[u8], c: Option<&[u8]>| {
        h(&EquivocationBundle {
            head_a: a.to_vec(),
            head_b: b.to_vec(),
            consistency: c.map(<[u8]>::to_vec),
        }
        .to_cbor()
        .unwrap())
    };
    let fork_h9 = head(&fork, 9, &k);
    put(
        "equivocation_good_same_size",
        vector(
            "equivocation",
            "two heads of size 9 with different roots",
            None,
            json!({"bundle": bundle(&h9, &fork_h9, None), "size": 9}),
        ),
    );
    put(
        "equivocation_good_consistency",
        vector(
            "equivocation",
            "a forked head of size 3 and the node's own receipt 3 → 9 that signs another root for size 3",
            None,
            json!({"bundle": bundle(&head(&fork, 3, &k), &h9, Some(&c)), "size": 3}),
        ),
    );
    put(
        "equivocation_bad_different_logs",
        vector(
            "equivocation",
            "heads of two different logs",
            Some("different_logs"),
            json!({"bundle": bundle(&h6, &head(&other_log, 6, &other), None)}),
        ),
    );
    put(
        "equivocation_bad_same_root",
        vector(
            "equivocation",
            "the same size and the same root twice",
            Some("same_tree"),
            json!({"bundle": bundle(&h9, &head(&log, 9, &k), None)}),
        ),
    );
    let mut forged = fork_h9.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    put(
        "equivocation_bad_invalid_signature",
        vector(
            "equivocation",
            "the second head's signature does not verify",
            Some("not_signed"),
            json!({"bundle": bundle(&h9, &forged, None)}),
        ),
    );
    put(
        "equivocation_bad_consistent",
        vector(
            "equivocation",
            "two honest heads and the receipt linking them",
            Some("consistent"),
            json!({"bundle": bundle(&h3, &h9, Some(&c))}),
        ),
    );
    put(
        "equivocation_bad_no_receipt",
        vector(
            "equivocation",
            "heads of sizes 3 and 9 from a fork, no consistency receipt",
            Some("no_consistency_receipt"),
            json!({"bundle": bundle(&head(&fork, 3, &k), &h9, None)}),
        ),
    );

    // §18.8.6 audit logs against a head.
    let file = |order: &[usize]| {
        let mut f = audit_log::MAGIC.to_vec();
        for &i in order {
            f.extend(audit_log::record(&log.receipts[i]));
        }
        f
    };
    put(
        "audit_log_good",
        vector(
            "audit_log",
            "nine records against the head of the first six",
            None,
            json!({"log": h(&file(&[0, 1, 2, 3, 4, 5, 6, 7, 8])), "head": h(&h6)}),
        ),
    );
    put(
        "audit_log_bad_reordered",
        vector(
            "audit_log",
            "records 0 and 1 swapped",
            Some("mismatch"),
            json!({"log": h(&file(&[1, 0, 2, 3, 4, 5])), "head": h(&h6)}),
        ),
    );
    put(
        "audit_log_bad_short",
        vector(
            "audit_log",
            "five records against a head of six",
            Some("audit_log"),
            json!({"log": h(&file(&[0, 1, 2, 3, 4])), "head": h(&h6)}),
        ),
    );
    out
}

#[test]
fn tlog_vectors_are_current() {
    check_or_regenerate("v1/tlog", &generate());
}

fn bytes(v: &Value, f: &str) -> Vec<u8> {
    hex::decode(v[f].as_str().unwrap()).unwrap()
}

fn verdict_code(v: &Verdict) -> &'static str {
    match v {
        Verdict::Equivocated(_) => "equivocated",
        Verdict::NotProven(n) => match n {
            NotProven::Malformed(_) => "malformed",
            NotProven::DifferentLogs => "different_logs",
            NotProven::NotSigned(_) => "not_signed",
            NotProven::SameTree => "same_tree",
            NotProven::NoConsistencyReceipt => "no_consistency_receipt",
            NotProven::OtherSizes => "other_sizes",
            NotProven::Consistent => "consistent",
            _ => "other",
        },
    }
}

/// The error code a vector's check gives, or `None` when it verifies (convicts, for bundles).
fn check(v: &Value, key: &PublicKey) -> Option<String> {
    let code = |e: verify::TlogVerifyError| Some(e.code().to_string());
    match v["type"].as_str().unwrap() {
        "tree_head" => match verify::verify_tree_head(&bytes(v, "head"), key) {
            Ok(head) => {
                assert_eq!(head.size, v["size"].as_u64().unwrap());
                assert_eq!(h(&head.root), v["root"]);
                None
            }
            Err(e) => code(e),
        },
        "inclusion" => match verify::verify_receipt_inclusions(&bytes(v, "receipt"), key) {
            Ok(list) => {
                assert_eq!(list.len(), 1);
                let head = verify::verify_tree_head(&bytes(v, "head"), key).unwrap();
                assert_eq!((list[0].tree_size, list[0].root), (head.size, head.root));
                assert_eq!(list[0].leaf_index, v["leaf_index"].as_u64().unwrap());
                // The carrying receipt is still a receipt (§4.4).
                let r = quorate_protocol::receipt::parse(&bytes(v, "receipt")).unwrap();
                r.sign1.verify(key).unwrap();
                None
            }
            Err(e) => code(e),
        },
        "consistency" => verify::verify_consistency(
            &bytes(v, "consistency"),
            &bytes(v, "head_a"),
            &bytes(v, "head_b"),
            key,
        )
        .err()
        .and_then(code),
        "promise" => verify::verify_promise(&bytes(v, "promise"), &bytes(v, "inclusion"), key)
            .err()
            .and_then(code),
        "equivocation" => match verify::convict(&bytes(v, "bundle"), key) {
            Verdict::Equivocated(e) => {
                assert_eq!(e.size, v["size"].as_u64().unwrap());
                None
            }
            other => Some(verdict_code(&other).to_string()),
        },
        "audit_log" => verify::verify_audit_log(&bytes(v, "log"), &bytes(v, "head"), key)
            .err()
            .and_then(code),
        t => panic!("unknown vector type {t}"),
    }
}

#[test]
fn tlog_vectors_conform() {
    let files = vector_files("v1/tlog");
    assert!(files.len() >= 25, "tlog vectors missing: {}", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(&path);
        check_vector_header(&name, &v);
        let key = PublicKey::from_bytes(&bytes(&v, "public_key")).unwrap();
        let got = check(&v, &key);
        match v["expect"].as_str().unwrap() {
            "valid" => assert_eq!(got, None, "{name}"),
            _ => assert_eq!(got.as_deref(), v["error"].as_str(), "{name}"),
        }
    }
}
