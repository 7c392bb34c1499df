//! End-to-end checks of §18.8 over a small log of real receipts.

use quorate_crypto::merkle::MerkleLog;
use quorate_crypto::{PublicKey, SecretKey};
use quorate_protocol::receipt::{self, JobKind, ReceiptPayload};
use quorate_protocol::tlog::{
    self, EquivocationBundle, Promise, TreeHead, sign_consistency_receipt, sign_inclusion_receipt,
};
use quorate_protocol::{audit_log, cbor};

use super::*;

const T0: u64 = 1_763_900_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn receipt(job: u8, key: &SecretKey) -> Vec<u8> {
    ReceiptPayload {
        job_id: [job; 16],
        nonce: vec![job; 16],
        kind: JobKind::Local,
        model_digest: [9; 32],
        inputs: vec![],
        outputs: vec![],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: T0 + u64::from(job),
        previous: None,
        policy: None,
    }
    .sign(key)
    .unwrap()
}

/// A log of `n` receipts by `k`: the receipts and the Merkle log over their leaves.
fn log_of(n: u8, k: &SecretKey) -> (Vec<Vec<u8>>, MerkleLog) {
    let receipts: Vec<Vec<u8>> = (0..n).map(|j| receipt(j, k)).collect();
    let log = MerkleLog::from_leaves(receipts.iter().map(|r| tlog::receipt_leaf_hash(r).unwrap()))
        .unwrap();
    (receipts, log)
}

fn head(log: &MerkleLog, size: u64, k: &SecretKey) -> Vec<u8> {
    TreeHead {
        log_id: k.public_key().key_id(),
        size,
        root: log.root(size).unwrap(),
        issued_at: T0 + size,
    }
    .sign(k)
    .unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key()
}

#[test]
fn inclusion_receipts_ride_in_header_394_and_prove_the_receipt() {
    let k = key(1);
    let (receipts, log) = log_of(6, &k);
    let inc = sign_inclusion_receipt(&log, 4, 6, T0 + 10, &k).unwrap();
    let carried =
        tlog::attach_inclusion_receipts(&receipts[4], std::slice::from_ref(&inc)).unwrap();
    // The receipt still parses and verifies as a receipt, and its leaf is unchanged.
    let parsed = receipt::parse(&carried).unwrap();
    parsed.sign1.verify(&pk(&k)).unwrap();
    assert_eq!(
        receipt::receipt_digest(&carried),
        receipt::receipt_digest(&receipts[4])
    );
    assert_eq!(tlog::leaf_bytes(&carried).unwrap(), receipts[4]);
    let proven = verify_receipt_inclusions(&carried, &pk(&k)).unwrap();
    assert_eq!(proven.len(), 1);
    assert_eq!((proven[0].leaf_index, proven[0].tree_size), (4, 6));
    assert_eq!(proven[0].root, log.root(6).unwrap());
    // Carried by another receipt, the same inclusion receipt proves nothing.
    let moved = tlog::attach_inclusion_receipts(&receipts[3], std::slice::from_ref(&inc)).unwrap();
    assert_eq!(
        verify_receipt_inclusions(&moved, &pk(&k))
            .unwrap_err()
            .code(),
        "bad_signature"
    );
    // Another key is named as such.
    assert_eq!(
        verify_receipt_inclusions(&carried, &pk(&key(2)))
            .unwrap_err()
            .code(),
        "wrong_key"
    );
}

#[test]
fn consistency_links_heads_and_refuses_a_fork() {
    let k = key(1);
    let (_, log) = log_of(9, &k);
    let (h3, h9) = (head(&log, 3, &k), head(&log, 9, &k));
    let c = sign_consistency_receipt(&log, 3, 9, T0 + 20, &k).unwrap();
    let v = verify_consistency(&c, &h9, &h3, &pk(&k)).unwrap();
    assert_eq!((v.old_size, v.new_size), (3, 9));
    // A forked log of the same sizes: its head at 3 is not linked by the honest receipt.
    let mut other = MerkleLog::new();
    for i in 0..3u8 {
        other
            .push(quorate_crypto::merkle::leaf_hash(&[i, 0xff]))
            .unwrap();
    }
    let forked_h3 = head(&other, 3, &k);
    assert_eq!(
        verify_consistency(&c, &forked_h3, &h9, &pk(&k))
            .unwrap_err()
            .code(),
        "mismatch"
    );
}

#[test]
fn promises_are_kept_only_by_timely_inclusion() {
    let k = key(1);
    let (receipts, log) = log_of(5, &k);
    let issued = receipt::parse(&receipts[2]).unwrap().payload.issued_at;
    let promise = Promise {
        log_id: pk(&k).key_id(),
        from: issued,
        until: issued + 1,
        deadline: T0 + 5,
    }
    .sign(&k)
    .unwrap();
    let timely = sign_inclusion_receipt(&log, 2, 5, T0 + 5, &k).unwrap();
    assert!(verify_promise(&promise, &receipts[2], &timely, &pk(&k)).is_ok());
    let late = sign_inclusion_receipt(&log, 2, 5, T0 + 6, &k).unwrap();
    assert_eq!(
        verify_promise(&promise, &receipts[2], &late, &pk(&k)),
        Err(TlogVerifyError::Late {
            included_at: T0 + 6,
            deadline: T0 + 5
        })
    );
    let other_leaf = sign_inclusion_receipt(&log, 3, 5, T0, &k).unwrap();
    assert_eq!(
        verify_promise(&promise, &receipts[2], &other_leaf, &pk(&k))
            .unwrap_err()
            .code(),
        "bad_signature"
    );
    // A receipt issued outside the window is not covered, even with a timely inclusion.
    let outside = sign_inclusion_receipt(&log, 3, 5, T0 + 5, &k).unwrap();
    assert_eq!(
        verify_promise(&promise, &receipts[3], &outside, &pk(&k))
            .unwrap_err()
            .code(),
        "mismatch"
    );
    // Another key's receipt is not this log's.
    let stranger = receipt(2, &key(9));
    assert_eq!(
        verify_promise(&promise, &stranger, &timely, &pk(&k))
            .unwrap_err()
            .code(),
        "wrong_key"
    );
}

fn bundle(a: &[u8], b: &[u8], c: Option<&[u8]>) -> Vec<u8> {
    EquivocationBundle {
        head_a: a.to_vec(),
        head_b: b.to_vec(),
        consistency: c.map(<[u8]>::to_vec),
    }
    .to_cbor()
    .unwrap()
}

#[test]
fn only_the_nodes_own_contradictions_convict() {
    let k = key(1);
    let (_, log) = log_of(8, &k);
    let mut fork = MerkleLog::new();
    for i in 0..8u8 {
        fork.push(quorate_crypto::merkle::leaf_hash(&[i, 0xee]))
            .unwrap();
    }
    let (h4, h8) = (head(&log, 4, &k), head(&log, 8, &k));
    let fork_h8 = head(&fork, 8, &k);
    let fork_h4 = head(&fork, 4, &k);
    let c_4_8 = sign_consistency_receipt(&log, 4, 8, T0, &k).unwrap();
    let pk = pk(&k);

    // Same size, two roots.
    assert!(matches!(
        convict(&bundle(&h8, &fork_h8, None), &pk),
        Verdict::Equivocated(Equivocation { size: 8, .. })
    ));
    // The honest receipt 4→8 against a forked head at 4: two signed roots for size 4.
    assert!(matches!(
        convict(&bundle(&fork_h4, &h8, Some(&c_4_8)), &pk),
        Verdict::Equivocated(Equivocation { size: 4, .. })
    ));
    // Honest heads and receipt; one tree twice; sizes differ without a receipt.
    assert_eq!(
        convict(&bundle(&h8, &h4, Some(&c_4_8)), &pk),
        Verdict::NotProven(NotProven::Consistent)
    );
    assert_eq!(
        convict(&bundle(&h8, &h8, None), &pk),
        Verdict::NotProven(NotProven::SameTree)
    );
    assert_eq!(
        convict(&bundle(&fork_h4, &h8, None), &pk),
        Verdict::NotProven(NotProven::NoConsistencyReceipt)
    );
    // Two logs never convict each other.
    let other = key(2);
    let (_, other_log) = log_of(8, &other);
    assert_eq!(
        convict(&bundle(&h8, &head(&other_log, 8, &other), None), &pk),
        Verdict::NotProven(NotProven::DifferentLogs)
    );
    // A forged head (signature broken) convicts no one.
    let mut forged = fork_h8.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert!(matches!(
        convict(&bundle(&h8, &forged, None), &pk),
        Verdict::NotProven(NotProven::NotSigned(_))
    ));
    // A receipt stripped of its (unsigned) proof is not the node's word.
    let mut v = cbor::decode_deterministic(&c_4_8, 1 << 16).unwrap();
    if let ciborium::value::Value::Tag(_, inner) = &mut v
        && let ciborium::value::Value::Array(parts) = inner.as_mut()
    {
        parts[1] = ciborium::value::Value::Map(vec![]);
    }
    let stripped = cbor::encode(&v).unwrap();
    assert!(matches!(
        convict(&bundle(&fork_h4, &h8, Some(&stripped)), &pk),
        Verdict::NotProven(NotProven::Malformed(_))
    ));
}

#[test]
fn an_audit_log_reproduces_its_head() {
    let k = key(1);
    let (receipts, log) = log_of(7, &k);
    let mut file = audit_log::MAGIC.to_vec();
    for r in &receipts {
        file.extend(audit_log::record(r));
    }
    let m = verify_audit_log(&file, &head(&log, 5, &k), &pk(&k)).unwrap();
    assert_eq!((m.size, m.records), (5, 7));
    assert_eq!(
        verify_audit_log(&file[..file.len() - 1], &head(&log, 7, &k), &pk(&k))
            .unwrap_err()
            .code(),
        "audit_log"
    );
    // Records swapped: the same leaves in another order give another root.
    let mut swapped = audit_log::MAGIC.to_vec();
    for i in [1, 0, 2, 3, 4] {
        swapped.extend(audit_log::record(&receipts[i]));
    }
    assert_eq!(
        verify_audit_log(&swapped, &head(&log, 5, &k), &pk(&k))
            .unwrap_err()
            .code(),
        "mismatch"
    );
    // Record by record: the same verdicts, and a record that could not be read fails.
    let stream = |n: usize| receipts[..n].iter().cloned().map(Ok).collect::<Vec<_>>();
    let m = verify_records(stream(7), &head(&log, 5, &k), &pk(&k)).unwrap();
    assert_eq!((m.size, m.records), (5, 7));
    let mut broken = stream(3);
    broken.push(Err("disk gone".into()));
    let e = verify_records(broken, &head(&log, 3, &k), &pk(&k)).unwrap_err();
    assert_eq!(e.code(), "audit_log");
    assert!(e.to_string().contains("disk gone"), "{e}");
}

#[test]
fn receipt_verification_checks_the_inclusion_receipts_it_carries() {
    use crate::receipts::{Source, failure_code, verify_receipts};
    let k = key(1);
    let (receipts, log) = log_of(4, &k);
    let inc = sign_inclusion_receipt(&log, 2, 4, T0, &k).unwrap();
    let good = tlog::attach_inclusion_receipts(&receipts[2], std::slice::from_ref(&inc)).unwrap();
    let moved = tlog::attach_inclusion_receipts(&receipts[1], std::slice::from_ref(&inc)).unwrap();
    let mut trust = crate::TrustStore::default();
    trust.add(pk(&k), "node");
    let sources = [good, moved, receipts[0].clone()]
        .into_iter()
        .enumerate()
        .map(|(i, b)| Source {
            label: format!("r{i}"),
            bytes: Ok(b),
        })
        .collect();
    let reports = verify_receipts(sources, &trust, &[]);
    let codes: Vec<Option<&str>> = reports
        .iter()
        .map(|r| r.failure.as_ref().map(failure_code))
        .collect();
    assert_eq!(codes, [None, Some("inclusion"), None]);
}
