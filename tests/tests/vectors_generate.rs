//! Generator of `spec/vectors/v1/` (keys, tensor digests, receipts, batch receipts).
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test vectors_generate` writes
//! the files; without the variable this test checks that the files on disk are exactly what
//! the generator produces, so an encoding change cannot slip in unnoticed. The conformance test
//! (`conformance.rs`) checks the files against the verifier independently of this generator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use curve25519_dalek::edwards::CompressedEdwardsY;
use quorate_crypto::SecretKey;
use quorate_protocol::batch_receipt;
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_protocol::tensor_file::tensor_json;
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/vectors_generate.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test vectors_generate)";

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn pk_hex(k: &SecretKey) -> String {
    hex::encode(k.public_key().to_bytes())
}

fn sample_tensors() -> (Tensor, Tensor) {
    let x = Tensor::from_f32("features", vec![1, 4], &[17.99, 10.38, 122.8, 1001.0]).unwrap();
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.9998326, 0.00016737]).unwrap();
    (x, y)
}

const SALT_IN: [u8; 32] = [0x11; 32];
const SALT_OUT: [u8; 32] = [0x22; 32];

fn sample_payload(job: u8) -> ReceiptPayload {
    let (x, y) = sample_tensors();
    ReceiptPayload {
        job_id: [job; 16],
        nonce: (0u8..32).collect(),
        kind: JobKind::Local,
        model_digest: quorate_crypto::tensor_digest::sha256(b"model bytes"),
        inputs: vec![Commitment::to(&x, Some(&SALT_IN))],
        outputs: vec![Commitment::to(&y, Some(&SALT_OUT))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: None,
    }
}

fn payload_json(p: &ReceiptPayload) -> Value {
    let c = |l: &[Commitment]| {
        l.iter()
            .map(|c| json!([c.name, hex::encode(c.digest), c.salted]))
            .collect::<Vec<_>>()
    };
    json!({
        "job_id": hex::encode(p.job_id), "nonce": hex::encode(&p.nonce), "kind": p.kind.code(),
        "model_digest": hex::encode(p.model_digest), "inputs": c(&p.inputs), "outputs": c(&p.outputs),
        "provider": p.provider, "runtime": p.runtime, "issued_at": p.issued_at,
    })
}

/// Signs arbitrary payload bytes with a hand-built protected header, for vectors that need a
/// validly signed but non-conforming document.
fn sign_raw(
    protected: Vec<(Cbor, Cbor)>,
    unprotected: Vec<(Cbor, Cbor)>,
    payload: &[u8],
    k: &SecretKey,
    tagged: bool,
) -> Vec<u8> {
    let mut prot = Vec::new();
    ciborium::ser::into_writer(&Cbor::Map(protected), &mut prot).unwrap();
    let mut tbs = Vec::new();
    let sig_structure = Cbor::Array(vec![
        Cbor::Text("Signature1".into()),
        Cbor::Bytes(prot.clone()),
        Cbor::Bytes(vec![]),
        Cbor::Bytes(payload.to_vec()),
    ]);
    ciborium::ser::into_writer(&sig_structure, &mut tbs).unwrap();
    let sig = k.sign(&tbs).0.to_vec();
    let body = Cbor::Array(vec![
        Cbor::Bytes(prot),
        Cbor::Map(unprotected),
        Cbor::Bytes(payload.to_vec()),
        Cbor::Bytes(sig),
    ]);
    let doc = if tagged {
        Cbor::Tag(18, Box::new(body))
    } else {
        body
    };
    let mut out = Vec::new();
    ciborium::ser::into_writer(&doc, &mut out).unwrap();
    out
}

fn int(i: i64) -> Cbor {
    Cbor::Integer(i.into())
}

fn header(alg: i64, k: &SecretKey) -> Vec<(Cbor, Cbor)> {
    vec![
        (int(1), int(alg)),
        (
            int(3),
            Cbor::Text("application/vnd.quorate.receipt+cbor".into()),
        ),
        (int(4), Cbor::Bytes(k.public_key().key_id().0.to_vec())),
    ]
}

fn receipt_vector(
    description: &str,
    expect_error: Option<&str>,
    receipt: &[u8],
    trusted: &[&SecretKey],
    payload: Option<&ReceiptPayload>,
) -> Value {
    let mut v = json!({
        "generated_by": GENERATED_BY,
        "type": "receipt",
        "spec": "§4, §5, §6",
        "description": description,
        "expect": if expect_error.is_some() { "invalid" } else { "valid" },
        "trusted_keys": trusted.iter().map(|k| pk_hex(k)).collect::<Vec<_>>(),
        "receipt": hex::encode(receipt),
    });
    if let Some(e) = expect_error {
        v["error"] = json!(e);
    }
    if let Some(p) = payload {
        v["payload"] = payload_json(p);
    }
    v
}

fn with_reveal(mut v: Value, tensor: &Tensor, salt: &[u8; 32]) -> Value {
    v["reveal"] = json!({"tensors": [tensor_json(tensor, Some(salt))]});
    v
}

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let (a, b) = (key(1), key(2));

    // §2.2 key ids.
    let keys: Vec<Value> = [1u8, 2, 3]
        .iter()
        .map(|&n| {
            let k = key(n);
            json!({"seed": hex::encode([n; 32]), "public_key": pk_hex(&k), "key_id": k.public_key().key_id().to_string()})
        })
        .collect();
    out.insert("keys.json".into(), json!({"generated_by": GENERATED_BY, "type": "keys", "spec": "§2.2", "description": "RFC 8032 seed -> public key -> key id", "expect": "valid", "keys": keys}));

    // §2.3 weak keys: the small-order points and one mixed-order point.
    let mut weak: Vec<String> = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    ]
    .map(String::from)
    .to_vec();
    let torsion = CompressedEdwardsY(hex::decode(&weak[4]).unwrap().try_into().unwrap())
        .decompress()
        .unwrap();
    let honest = CompressedEdwardsY(a.public_key().to_bytes())
        .decompress()
        .unwrap();
    weak.push(hex::encode((honest + torsion).compress().as_bytes()));
    out.insert("keys_bad_weak.json".into(), json!({"generated_by": GENERATED_BY, "type": "weak_keys", "spec": "§2.3", "description": "small-order points and a mixed-order point (a valid key plus an 8-torsion point): every one must be rejected", "expect": "invalid", "error": "weak_key", "keys": weak}));

    // §3 tensor digests.
    let (x, y) = sample_tensors();
    let cases: Vec<Value> = [
        (x.clone(), None),
        (x.clone(), Some(SALT_IN)),
        (y.clone(), Some(SALT_OUT)),
        (
            Tensor::new(
                "v",
                DType::I64,
                vec![3],
                [1i64, -2, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
            .unwrap(),
            None,
        ),
        (
            Tensor::new("m", DType::U8, vec![2, 2], vec![0, 1, 254, 255]).unwrap(),
            None,
        ),
        (
            Tensor::new("s", DType::F32, vec![], 1.5f32.to_le_bytes().to_vec()).unwrap(),
            None,
        ),
        (
            Tensor::new("b", DType::Bool, vec![2], vec![1, 0]).unwrap(),
            Some([0x33; 32]),
        ),
    ]
    .iter()
    .map(|(t, salt)| {
        json!({"dtype": t.dtype().name(), "shape": t.shape(), "data": hex::encode(t.data()),
               "salt": salt.map(hex::encode), "digest": hex::encode(t.digest(salt.as_ref()))})
    })
    .collect();
    out.insert("tensor_digests.json".into(), json!({"generated_by": GENERATED_BY, "type": "tensor_digests", "spec": "§3.2, §3.3", "description": "plain and salted commitments", "expect": "valid", "cases": cases}));

    // §4 receipts.
    let p = sample_payload(1);
    let good = p.sign(&a).unwrap();
    out.insert(
        "receipt_good.json".into(),
        with_reveal(
            receipt_vector(
                "a valid receipt with salted commitments; the revealed output matches",
                None,
                &good,
                &[&a],
                Some(&p),
            ),
            &y,
            &SALT_OUT,
        ),
    );
    let payload_bytes = p.to_cbor().unwrap();
    let alg19 = sign_raw(header(-19, &a), vec![], &payload_bytes, &a, true);
    out.insert(
        "receipt_good_alg_ed25519.json".into(),
        receipt_vector(
            "alg Ed25519 (-19, RFC 9864) is accepted like EdDSA (-8)",
            None,
            &alg19,
            &[&a],
            Some(&p),
        ),
    );

    let mut tampered = good.clone();
    let pos = tampered
        .windows(20)
        .position(|w| w == b"CPUExecutionProvider")
        .unwrap();
    tampered[pos] = b'G';
    out.insert(
        "receipt_bad_tampered_payload.json".into(),
        receipt_vector(
            "one byte of the payload changed after signing",
            Some("bad_signature"),
            &tampered,
            &[&a],
            None,
        ),
    );

    let mut wrong_key = good.clone();
    let n = wrong_key.len();
    let tbs = quorate_protocol::receipt::parse(&good)
        .unwrap()
        .sign1
        .to_be_signed;
    wrong_key[n - 64..].copy_from_slice(&b.sign(&tbs).0);
    out.insert(
        "receipt_bad_wrong_key.json".into(),
        receipt_vector(
            "kid names key A but key B made the signature",
            Some("bad_signature"),
            &wrong_key,
            &[&a, &b],
            None,
        ),
    );
    out.insert(
        "receipt_bad_unknown_key.json".into(),
        receipt_vector(
            "a valid receipt by a key that is not trusted",
            Some("unknown_key"),
            &good,
            &[&b],
            None,
        ),
    );

    let mut noncanonical = vec![payload_bytes[0], 0x01, 0x18, 0x01];
    assert_eq!(
        &payload_bytes[1..3],
        &[0x01, 0x01],
        "version field must come first"
    );
    noncanonical.extend_from_slice(&payload_bytes[3..]);
    let non_det = sign_raw(header(-8, &a), vec![], &noncanonical, &a, true);
    out.insert("receipt_bad_non_deterministic.json".into(), receipt_vector("validly signed, but the payload encodes the version 1 as 0x18 0x01 (not shortest form)", Some("malformed"), &non_det, &[&a], None));

    let mut trailing = good.clone();
    trailing.push(0x00);
    out.insert(
        "receipt_bad_trailing_bytes.json".into(),
        receipt_vector(
            "a zero byte after the COSE_Sign1",
            Some("malformed"),
            &trailing,
            &[&a],
            None,
        ),
    );

    let mut crit = header(-8, &a);
    crit.insert(1, (int(2), Cbor::Array(vec![int(-70000)])));
    let crit = sign_raw(crit, vec![], &payload_bytes, &a, true);
    out.insert(
        "receipt_bad_crit.json".into(),
        receipt_vector(
            "a crit header naming an extension nobody understands",
            Some("malformed"),
            &crit,
            &[&a],
            None,
        ),
    );

    let mut ctype = header(-8, &a);
    ctype[1].1 = Cbor::Text("application/vnd.quorate.roster+cbor".into());
    let ctype = sign_raw(ctype, vec![], &payload_bytes, &a, true);
    out.insert(
        "receipt_bad_content_type.json".into(),
        receipt_vector(
            "a document of another type signed by the same key",
            Some("malformed"),
            &ctype,
            &[&a],
            None,
        ),
    );

    let alg = sign_raw(header(-7, &a), vec![], &payload_bytes, &a, true);
    out.insert(
        "receipt_bad_alg.json".into(),
        receipt_vector(
            "alg ES256 (-7) with an Ed25519 signature",
            Some("malformed"),
            &alg,
            &[&a],
            None,
        ),
    );

    let untagged = sign_raw(header(-8, &a), vec![], &payload_bytes, &a, false);
    out.insert(
        "receipt_bad_untagged.json".into(),
        receipt_vector(
            "COSE_Sign1 without tag 18",
            Some("malformed"),
            &untagged,
            &[&a],
            None,
        ),
    );

    let unprot = sign_raw(
        header(-8, &a),
        vec![(int(33), Cbor::Bytes(vec![1]))],
        &payload_bytes,
        &a,
        true,
    );
    out.insert(
        "receipt_bad_unprotected_header.json".into(),
        receipt_vector(
            "a parameter in the unprotected header",
            Some("malformed"),
            &unprot,
            &[&a],
            None,
        ),
    );

    let mut extra = ciborium::de::from_reader::<Cbor, _>(payload_bytes.as_slice()).unwrap();
    if let Cbor::Map(m) = &mut extra {
        m.push((int(13), Cbor::Bytes(vec![0; 4])));
    }
    let extra = quorate_protocol::cbor::encode(&extra).unwrap();
    let extra = sign_raw(header(-8, &a), vec![], &extra, &a, true);
    out.insert(
        "receipt_bad_unknown_field.json".into(),
        receipt_vector(
            "a validly signed payload with unknown field 13",
            Some("malformed"),
            &extra,
            &[&a],
            None,
        ),
    );

    let forged = Tensor::from_f32("probabilities", vec![1, 2], &[0.00016737, 0.9998326]).unwrap();
    out.insert(
        "receipt_bad_wrong_tensor.json".into(),
        with_reveal(
            receipt_vector(
                "a valid receipt; the revealed output is not the committed one",
                Some("tensor_mismatch"),
                &good,
                &[&a],
                None,
            ),
            &forged,
            &SALT_OUT,
        ),
    );

    // §5 batch receipts.
    let payloads: Vec<ReceiptPayload> = (1..=5).map(sample_payload).collect();
    let batch = batch_receipt::sign_batch(&payloads, &a, 1_763_900_000).unwrap();
    for i in [0usize, 4] {
        out.insert(
            format!("batch_good_leaf{i}.json"),
            receipt_vector(
                &format!("leaf {i} of a batch of 5"),
                None,
                &batch[i],
                &[&a],
                Some(&payloads[i]),
            ),
        );
    }
    let decoded = |bytes: &[u8]| ciborium::de::from_reader::<Cbor, _>(bytes).unwrap();
    let reencode = |v: &Cbor| quorate_protocol::cbor::encode(v).unwrap();
    let mut bad_index = decoded(&batch[1]);
    if let Cbor::Array(parts) = &mut bad_index {
        parts[2] = int(2);
    }
    out.insert(
        "batch_bad_index.json".into(),
        receipt_vector(
            "leaf 1 presented as leaf 2",
            Some("malformed"),
            &reencode(&bad_index),
            &[&a],
            None,
        ),
    );
    let mut bad_path = decoded(&batch[1]);
    if let Cbor::Array(parts) = &mut bad_path
        && let Cbor::Array(path) = &mut parts[3]
    {
        path.pop();
    }
    out.insert(
        "batch_bad_short_proof.json".into(),
        receipt_vector(
            "inclusion proof missing its last hash",
            Some("malformed"),
            &reencode(&bad_path),
            &[&a],
            None,
        ),
    );
    let mut swapped = decoded(&batch[1]);
    if let Cbor::Array(parts) = &mut swapped {
        parts[1] = Cbor::Bytes(sample_payload(9).to_cbor().unwrap());
    }
    out.insert(
        "batch_bad_leaf_swapped.json".into(),
        receipt_vector(
            "a payload that was never in the batch, with leaf 1's proof",
            Some("malformed"),
            &reencode(&swapped),
            &[&a],
            None,
        ),
    );
    // §5.3, §18.1, §18.4: a batch receipt carries its inclusion receipts in its root.
    let leaves: Vec<_> = batch
        .iter()
        .map(|r| quorate_protocol::tlog::receipt_leaf_hash(r).unwrap())
        .collect();
    let log = quorate_crypto::merkle::MerkleLog::from_leaves(leaves).unwrap();
    let inclusion =
        quorate_protocol::tlog::sign_inclusion_receipt(&log, 2, 5, 1_763_900_005, &a).unwrap();
    let carried =
        quorate_protocol::tlog::attach_inclusion_receipts(&batch[2], &[inclusion]).unwrap();
    out.insert(
        "batch_good_root_header_394.json".into(),
        receipt_vector(
            "leaf 2 of a batch of 5, its root carrying an inclusion receipt of the batch receipt's leaf in header 394",
            None,
            &carried,
            &[&a],
            Some(&payloads[2]),
        ),
    );
    let mut other_header = decoded(&batch[2]);
    if let Cbor::Array(parts) = &mut other_header
        && let Cbor::Bytes(root) = &mut parts[4]
    {
        let mut r = decoded(root);
        if let Cbor::Tag(_, inner) = &mut r
            && let Cbor::Array(cose) = inner.as_mut()
        {
            cose[1] = Cbor::Map(vec![(int(4), Cbor::Bytes(vec![0; 16]))]);
        }
        *root = reencode(&r);
    }
    out.insert(
        "batch_bad_root_unprotected_header.json".into(),
        receipt_vector(
            "leaf 2 of a batch of 5, its root carrying a parameter other than 394 in the unprotected header",
            Some("malformed"),
            &reencode(&other_header),
            &[&a],
            None,
        ),
    );
    out
}

#[test]
fn vectors_on_disk_match_the_generator() {
    quorate_tests::check_or_regenerate("v1", &generate());
}
