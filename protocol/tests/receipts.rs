//! Receipts and batch receipts: round trips, and every tampering is caught (§4, §5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_crypto::SecretKey;
use quorate_protocol::batch_receipt::{self, AnyReceipt};
use quorate_protocol::receipt::{self, Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;

fn payload(i: u8) -> ReceiptPayload {
    let x = Tensor::from_f32("features", vec![1, 2], &[1.0, f32::from(i)]).unwrap();
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.25, 0.75]).unwrap();
    ReceiptPayload {
        job_id: [i; 16],
        nonce: vec![7; 16],
        kind: JobKind::Local,
        model_digest: [3; 32],
        inputs: vec![Commitment::to(&x, Some(&[5; 32]))],
        outputs: vec![Commitment::to(&y, None)],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 1_700_000_000,
        previous: None,
        policy: Some([4; 32]),
    }
}

fn verifies(bytes: &[u8], key: &quorate_crypto::PublicKey) -> bool {
    batch_receipt::parse_any(bytes).is_ok_and(|r| r.sign1().verify(key).is_ok())
}

#[test]
fn single_receipt_roundtrip_and_every_byte_flip_fails() {
    let key = SecretKey::from_seed(&[1; 32]);
    let bytes = payload(1).sign(&key).unwrap();
    let parsed = receipt::parse(&bytes).unwrap();
    assert_eq!(parsed.payload, payload(1));
    assert_eq!(parsed.kid(), key.public_key().key_id());
    assert!(verifies(&bytes, &key.public_key()));
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= bit;
            assert!(
                !verifies(&t, &key.public_key()),
                "flip of byte {i} bit {bit:#x} accepted"
            );
        }
    }
    let other = SecretKey::from_seed(&[2; 32]).public_key();
    assert!(!verifies(&bytes, &other));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(receipt::parse(&trailing).is_err());
}

#[test]
fn batch_receipts_verify_like_single_ones() {
    let key = SecretKey::from_seed(&[1; 32]);
    let payloads: Vec<_> = (0..37u8).map(payload).collect();
    let receipts = batch_receipt::sign_batch(&payloads, &key, 1_700_000_000).unwrap();
    assert_eq!(receipts.len(), 37);
    for (i, r) in receipts.iter().enumerate() {
        let parsed = batch_receipt::parse_any(r).unwrap();
        assert!(matches!(parsed, AnyReceipt::Batch(_)));
        assert_eq!(parsed.payload(), &payloads[i]);
        assert!(parsed.sign1().verify(&key.public_key()).is_ok());
    }
    // Swapping one leaf for another's payload, or flipping any byte, breaks it.
    let r = &receipts[5];
    for i in 0..r.len() {
        let mut t = r.clone();
        t[i] ^= 0x01;
        assert!(
            !verifies(&t, &key.public_key()),
            "flip of byte {i} accepted"
        );
    }
}

#[test]
fn a_roster_signature_is_not_a_receipt() {
    let key = SecretKey::from_seed(&[1; 32]);
    let other_type =
        quorate_protocol::cose::sign(payload(1).to_cbor().unwrap(), "application/other", &key)
            .unwrap();
    assert!(receipt::parse(&other_type).is_err());
}
