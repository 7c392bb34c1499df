//! Header 394 on receipts (§4.1, §18.4) and the COSE receipt decoders (§18.4, §18.5).

use ciborium::value::{Integer, Value};
use quorate_crypto::SecretKey;
use quorate_crypto::merkle::MerkleLog;

use super::*;
use crate::receipt::{self, JobKind, ReceiptPayload};
use crate::{cbor, cose};

fn key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn a_receipt(job: u8) -> Vec<u8> {
    ReceiptPayload {
        job_id: [job; 16],
        nonce: vec![0; 16],
        kind: JobKind::Local,
        model_digest: [2; 32],
        inputs: vec![],
        outputs: vec![],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 7,
        previous: None,
        policy: None,
    }
    .sign(&key())
    .unwrap()
}

fn log(n: u8) -> MerkleLog {
    MerkleLog::from_leaves((0..n).map(|j| receipt_leaf_hash(&a_receipt(j)).unwrap())).unwrap()
}

fn with_unprotected(doc: &[u8], entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut v = cbor::decode_deterministic(doc, 1 << 16).unwrap();
    if let Value::Tag(_, inner) = &mut v
        && let Value::Array(parts) = inner.as_mut()
    {
        parts[1] = Value::Map(entries);
    }
    cbor::encode(&v).unwrap()
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

#[test]
fn receipts_accept_only_a_well_formed_header_394() {
    let r = a_receipt(0);
    let inc = sign_inclusion_receipt(&log(3), 0, 3, 9, &key()).unwrap();
    let carried = attach_inclusion_receipts(&r, std::slice::from_ref(&inc)).unwrap();
    assert!(receipt::parse(&carried).is_ok());
    assert_eq!(inclusion_receipts_of(&carried).unwrap(), vec![inc.clone()]);
    assert_eq!(leaf_bytes(&carried).unwrap(), r);
    assert_eq!(attach_inclusion_receipts(&carried, &[]).unwrap(), r);
    // Other documents keep an empty unprotected header.
    assert!(cose::parse(&carried, receipt::RECEIPT_CONTENT_TYPE, 1 << 16).is_err());
    let bad = [
        vec![(int(394), Value::Array(vec![]))],
        vec![(int(394), Value::Array(vec![Value::Text("x".into())]))],
        vec![(int(394), Value::Bytes(inc.clone()))],
        vec![(int(394), Value::Array(vec![Value::Bytes(inc.clone()); 5]))],
        vec![
            (int(4), Value::Bytes(vec![0; 16])),
            (int(394), Value::Array(vec![Value::Bytes(inc.clone())])),
        ],
        vec![(int(395), Value::Array(vec![Value::Bytes(inc)]))],
    ];
    for entries in bad {
        let doc = with_unprotected(&r, entries.clone());
        assert!(receipt::parse(&doc).is_err(), "{entries:?}");
    }
    assert!(attach_inclusion_receipts(&r, &vec![vec![0u8]; MAX_ATTACHED_RECEIPTS + 1]).is_err());
}

/// A batch receipt (§5.3) carries header 394 in its signed root: attaching and removing it
/// leaves its leaf (§18.1) and its digest (§4.5) unchanged, the carried form still parses
/// and verifies, and a root header other than 394 is refused.
#[test]
fn batch_receipts_carry_header_394_in_their_root() {
    let payloads: Vec<ReceiptPayload> = (0..3u8)
        .map(|j| receipt::parse(&a_receipt(j)).unwrap().payload)
        .collect();
    let refs: Vec<&ReceiptPayload> = payloads.iter().collect();
    let batch = crate::batch_receipt::sign_batch(&refs, &key(), 9).unwrap();
    let b = &batch[1];
    assert_eq!(leaf_bytes(b).unwrap(), *b);
    assert!(inclusion_receipts_of(b).unwrap().is_empty());
    assert!(unprotected_header_is_empty(b), "read off the heads");
    let inc = sign_inclusion_receipt(&log(3), 1, 3, 9, &key()).unwrap();
    let carried = attach_inclusion_receipts(b, std::slice::from_ref(&inc)).unwrap();
    assert_eq!(carried[0], 0x85, "still a batch receipt (§5.4)");
    assert!(!unprotected_header_is_empty(&carried));
    // Cut anywhere, the heads no longer describe a whole batch receipt.
    for cut in [1, 10, b.len() / 2, b.len() - 1] {
        assert!(!unprotected_header_is_empty(&b[..cut]), "{cut}");
    }
    assert_eq!(inclusion_receipts_of(&carried).unwrap(), vec![inc]);
    assert_eq!(leaf_bytes(&carried).unwrap(), *b);
    assert_eq!(
        receipt_leaf_hash(&carried).unwrap(),
        receipt_leaf_hash(b).unwrap()
    );
    assert_eq!(
        receipt::receipt_digest(&carried),
        receipt::receipt_digest(b)
    );
    assert_eq!(attach_inclusion_receipts(&carried, &[]).unwrap(), *b);
    let parsed = crate::batch_receipt::parse(&carried).unwrap();
    assert_eq!(parsed.payload, payloads[1]);
    assert!(parsed.root_sign1.verify(&key().public_key()).is_ok());
    // Any other unprotected parameter in the root is refused, as on a single receipt.
    let mut parts = match cbor::decode_deterministic(b, 1 << 16).unwrap() {
        Value::Array(p) => p,
        _ => unreachable!("a batch receipt is an array"),
    };
    let Value::Bytes(root) = &parts[4] else {
        unreachable!("the root is a byte string")
    };
    parts[4] = Value::Bytes(with_unprotected(
        root,
        vec![(int(4), Value::Bytes(vec![0; 16]))],
    ));
    let other = cbor::encode(&Value::Array(parts)).unwrap();
    assert!(crate::batch_receipt::parse(&other).is_err());
    assert!(inclusion_receipts_of(&other).is_err());
    // Not a batch receipt's shape.
    assert!(leaf_bytes(&[0x85, 1, 2, 3, 4, 5]).is_err());
}

#[test]
fn cose_receipts_decode_strictly() {
    let l = log(7);
    let inc = sign_inclusion_receipt(&l, 5, 7, 9, &key()).unwrap();
    let parsed = InclusionReceipt::parse(&inc).unwrap();
    assert_eq!((parsed.proof.leaf_index, parsed.cose.tree_size), (5, 7));
    assert_eq!(parsed.root_for(l.leaf(5).unwrap()), l.root(7));
    assert_ne!(parsed.root_for(l.leaf(4).unwrap()), l.root(7));
    // An inclusion receipt is not a consistency receipt, nor the reverse.
    assert_eq!(
        ConsistencyReceipt::parse(&inc).unwrap_err().code(),
        "header"
    );
    let c = sign_consistency_receipt(&l, 3, 7, 9, &key()).unwrap();
    let parsed = ConsistencyReceipt::parse(&c).unwrap();
    assert_eq!((parsed.old_size(), parsed.new_size()), (3, 7));
    assert_eq!(parsed.old_root, l.root(3).unwrap());
    assert_eq!(parsed.new_root(), l.root(7));
    assert!(InclusionReceipt::parse(&c).is_err());
    // Missing or empty 396, an embedded payload, trailing bytes.
    assert_eq!(
        InclusionReceipt::parse(&with_unprotected(&inc, vec![])),
        Err(TlogError::MissingProof("inclusion"))
    );
    assert_eq!(
        InclusionReceipt::parse(&with_unprotected(
            &inc,
            vec![(int(396), Value::Map(vec![]))]
        )),
        Err(TlogError::MissingProof("inclusion"))
    );
    let mut trailing = inc.clone();
    trailing.push(0);
    assert!(matches!(
        InclusionReceipt::parse(&trailing),
        Err(TlogError::Cbor(_))
    ));
    // Out-of-range requests are refused by the signer.
    assert!(sign_inclusion_receipt(&l, 7, 7, 9, &key()).is_err());
    assert!(sign_consistency_receipt(&l, 0, 7, 9, &key()).is_err());
    assert!(sign_consistency_receipt(&l, 3, 8, 9, &key()).is_err());
}

#[test]
fn bundles_round_trip_and_need_both_heads() {
    let l = log(4);
    let head = |size| {
        TreeHead {
            log_id: key().public_key().key_id(),
            size,
            root: l.root(size).unwrap(),
            issued_at: 1,
        }
        .sign(&key())
        .unwrap()
    };
    let b = EquivocationBundle {
        head_a: head(2),
        head_b: head(4),
        consistency: Some(sign_consistency_receipt(&l, 2, 4, 1, &key()).unwrap()),
    };
    let bytes = b.to_cbor().unwrap();
    assert_eq!(EquivocationBundle::from_cbor(&bytes).unwrap(), b);
    let one_head = cbor::encode(&Value::Map(vec![
        (int(1), int(1)),
        (int(2), Value::Bytes(head(2))),
    ]))
    .unwrap();
    assert!(EquivocationBundle::from_cbor(&one_head).is_err());
    let not_a_head = EquivocationBundle {
        head_b: a_receipt(0),
        ..b
    };
    assert!(EquivocationBundle::from_cbor(&not_a_head.to_cbor().unwrap()).is_err());
}
