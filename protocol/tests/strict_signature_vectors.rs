//! Signature vectors that single and batch verification must both refuse (§2.4, §6.2,
//! §17.1), in `spec/vectors/v1/signatures/`, in the receipt-vector format of
//! `spec/vectors/v1/` (§4–§6).
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-protocol --test strict_signature_vectors`
//! writes the files; without the variable the test checks that the files on disk are exactly
//! what the generator produces. Every file in the folder is then checked against both the
//! strict single verifier and the batch verifier that `quorate verify` uses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::{EdwardsPoint, Scalar};
use quorate_crypto::batch::{Item, verify_all};
use quorate_crypto::{IdentityError, PublicKey, SecretKey};
use quorate_protocol::batch_receipt;
use quorate_protocol::receipt::{self, Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use serde_json::{Value, json};
use sha2::Digest;

const GENERATED_BY: &str = "protocol/tests/strict_signature_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-protocol --test strict_signature_vectors)";
const SEED: [u8; 32] = [1; 32];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/v1/signatures")
}

fn payload() -> ReceiptPayload {
    let x = Tensor::from_f32("features", vec![1, 4], &[17.99, 10.38, 122.8, 1001.0]).unwrap();
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.9998326, 0.00016737]).unwrap();
    ReceiptPayload {
        job_id: [1; 16],
        nonce: (0u8..32).collect(),
        kind: JobKind::Local,
        model_digest: quorate_crypto::tensor_digest::sha256(b"model bytes"),
        inputs: vec![Commitment::to(&x, Some(&[0x11; 32]))],
        outputs: vec![Commitment::to(&y, Some(&[0x22; 32]))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: None,
    }
}

/// The key holder's signature of `msg` made with nonce `r` and nonce point `r_point` (which
/// an honest signer sets to `[r]B`): `R = r_point`, `s = r + H(R || A || M)·a mod l`.
fn sign_with_nonce(seed: &[u8; 32], msg: &[u8], r: Scalar, r_point: EdwardsPoint) -> [u8; 64] {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    let r_bytes = r_point.compress().to_bytes();
    let mut h = sha2::Sha512::new();
    h.update(r_bytes);
    h.update(sk.verifying_key().as_bytes());
    h.update(msg);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice((r + k * sk.to_scalar()).as_bytes());
    sig
}

/// The key holder signs `msg` with nonce r = 0: R = identity, s = H(R || A || M)·a mod l.
/// `[s]B = R + [H(R || A || M)]A` holds, so a batch equation accepts it; R is of small
/// order, so `verify_strict` refuses it.
fn identity_r_signature(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    sign_with_nonce(seed, msg, Scalar::ZERO, EdwardsPoint::default())
}

/// The key holder signs `msg` with nonce point `R = [r]B + T`, `T` a point of order 8:
/// `s = r + H(R || A || M)·a`. The cofactorless equation misses by `T`, so strict
/// verification refuses it; a batch equation sees only `z·T` and can be ground past (§6.2).
fn mixed_order_r_signature(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    let r = Scalar::from(987_654_321u64);
    let r_point = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1];
    sign_with_nonce(seed, msg, r, r_point)
}

/// An honest signature of `msg` with `s` replaced by `s + ℓ`: the same value mod ℓ, the
/// equation holds, but `s` is not canonical (malleability, §2.4).
fn non_canonical_s_signature(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    let mut sig = SecretKey::from_seed(seed).sign(msg).0;
    let ell_minus_one = -Scalar::ONE;
    let mut carry = 1u16; // s + ℓ = s + (ℓ − 1) + 1
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ell_minus_one.as_bytes()[i]) + carry;
        sig[32 + i] = v as u8;
        carry = v >> 8;
    }
    sig
}

/// The identity-R signature with `R` encoded non-canonically, as `y = p + 1`: the same point,
/// so the cofactorless equation still holds after decoding; refused as a non-canonical `R`
/// of small order.
fn non_canonical_r_signature(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    let mut sig = identity_r_signature(seed, msg);
    let mut y = [0xffu8; 32];
    y[0] = 0xee; // p + 1 = 2^255 − 18
    y[31] = 0x7f;
    sig[..32].copy_from_slice(&y);
    sig
}

/// A receipt of `payload()` whose signature is replaced by `forge`'s over the same
/// Sig_structure: the COSE document is otherwise exactly the valid receipt.
fn forged_receipt(forge: fn(&[u8; 32], &[u8]) -> [u8; 64]) -> Vec<u8> {
    let key = SecretKey::from_seed(&SEED);
    let good = payload().sign(&key).unwrap();
    let parsed = receipt::parse(&good).unwrap();
    let forged = forge(&SEED, &parsed.sign1.to_be_signed);
    let at = good.len() - 64;
    assert_eq!(
        &good[at - 2..at],
        &[0x58, 0x40],
        "signature is the last item"
    );
    assert_eq!(&good[at..], parsed.sign1.signature.as_slice());
    let mut bad = good;
    bad[at..].copy_from_slice(&forged);
    bad
}

/// Each bad signature: file name, how it is made, what it is.
#[allow(clippy::type_complexity)]
const FORGERIES: [(&str, fn(&[u8; 32], &[u8]) -> [u8; 64], &str); 4] = [
    (
        "receipt_bad_identity_r.json",
        identity_r_signature,
        "signed by the key's holder with nonce r = 0: R is the identity (small order), s = H(R || A || M)·a; the cofactorless and batch equations hold, verify_strict refuses it, so single and batch verification MUST both reject it",
    ),
    (
        "receipt_bad_mixed_order_r.json",
        mixed_order_r_signature,
        "signed by the key's holder with R = rB + T, T of order 8, s = r + H(R || A || M)·a: the cofactorless equation misses by T and verify_strict refuses it; a batch equation sees only z·T, so single and batch verification MUST both reject it",
    ),
    (
        "receipt_bad_non_canonical_s.json",
        non_canonical_s_signature,
        "an honest signature with s replaced by s + l (the same value mod l): the equation holds but s is not canonical, so verify_strict refuses it (malleability); single and batch verification MUST both reject it",
    ),
    (
        "receipt_bad_non_canonical_r.json",
        non_canonical_r_signature,
        "the identity-R signature with R encoded as y = p + 1, a non-canonical encoding of the identity: it decodes to a point satisfying the cofactorless equation, but R is neither canonical nor of large order, so single and batch verification MUST both reject it",
    ),
];

fn generate() -> BTreeMap<String, Value> {
    let key = SecretKey::from_seed(&SEED);
    FORGERIES
        .iter()
        .map(|(name, forge, description)| {
            let v = json!({
                "generated_by": GENERATED_BY,
                "type": "receipt",
                "spec": "§2.4, §6.2, §17.1",
                "description": description,
                "expect": "invalid",
                "error": "bad_signature",
                "trusted_keys": [hex::encode(key.public_key().to_bytes())],
                "receipt": hex::encode(forged_receipt(*forge)),
            });
            (name.to_string(), v)
        })
        .collect()
}

fn vector_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn signature_vectors_on_disk_match_the_generator() {
    let generated = generate();
    if std::env::var_os("QUORATE_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, v) in &generated {
            let text = serde_json::to_string_pretty(v).unwrap() + "\n";
            std::fs::write(dir().join(name), text).unwrap();
        }
    }
    for (name, v) in &generated {
        let on_disk: Value =
            serde_json::from_slice(&std::fs::read(dir().join(name)).unwrap()).unwrap();
        assert_eq!(&on_disk, v, "{name} differs from the generator");
    }
    assert_eq!(vector_files().len(), generated.len());
}

/// Finding L1 (§17.1) and its kin: every vector in the folder is refused by strict single verification
/// and by the batch verifier, alone and inside a batch of valid receipts, with the vector's
/// error `bad_signature`.
#[test]
fn attack_l1_batch_accepts_forged_signature_vectors() {
    let files = vector_files();
    assert!(!files.is_empty());
    let signer = SecretKey::from_seed(&SEED);
    let valid: Vec<Vec<u8>> = (0..20u8)
        .map(|i| {
            let mut p = payload();
            p.job_id = [i; 16];
            p.sign(&signer).unwrap()
        })
        .collect();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v["generated_by"].is_string(), "{name}");
        assert_eq!(v["expect"], "invalid", "{name}");
        assert!(name.contains("_bad_"), "{name}");
        assert_eq!(v["error"], "bad_signature", "{name}");
        let key =
            PublicKey::from_bytes(&hex::decode(v["trusted_keys"][0].as_str().unwrap()).unwrap())
                .unwrap();
        let bytes = hex::decode(v["receipt"].as_str().unwrap()).unwrap();
        // Well-formed: the only fault is the signature.
        let parsed = batch_receipt::parse_any(&bytes).unwrap();
        let sign1 = parsed.sign1();
        assert_eq!(sign1.kid, key.key_id(), "{name}");
        assert_eq!(
            sign1.verify(&key),
            Err(IdentityError::BadSignature),
            "{name}: single"
        );
        // The verdict is ed25519-dalek's own `verify_strict`'s (§2.4).
        let raw_key = ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).unwrap();
        let raw_sig = ed25519_dalek::Signature::from_slice(&sign1.signature).unwrap();
        assert!(
            raw_key
                .verify_strict(&sign1.to_be_signed, &raw_sig)
                .is_err(),
            "{name}: verify_strict"
        );
        let item = Item {
            message: &sign1.to_be_signed,
            signature: &sign1.signature,
            key: &key,
        };
        assert_eq!(
            verify_all(&[item]),
            vec![Err(IdentityError::BadSignature)],
            "{name}: batch of one"
        );
        let others: Vec<_> = valid
            .iter()
            .map(|r| batch_receipt::parse_any(r).unwrap())
            .collect();
        let mut items: Vec<Item<'_>> = others
            .iter()
            .map(|r| Item {
                message: &r.sign1().to_be_signed,
                signature: &r.sign1().signature,
                key: &key,
            })
            .collect();
        items.insert(7, item);
        let got = verify_all(&items);
        assert_eq!(
            got[7],
            Err(IdentityError::BadSignature),
            "{name}: in a batch"
        );
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), items.len() - 1);
    }
}
