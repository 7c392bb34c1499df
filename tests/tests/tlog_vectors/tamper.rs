//! Byte-level edits of signed documents, to build the `_bad_` vectors of §18.10: each
//! changes exactly one thing and leaves everything else as the node signed it.

use ciborium::value::Value;
use quorate_crypto::SecretKey;
use quorate_protocol::cbor;

fn decode(bytes: &[u8]) -> Value {
    cbor::decode_deterministic(bytes, 1 << 16).unwrap()
}

fn parts(v: &mut Value) -> &mut Vec<Value> {
    match v {
        Value::Tag(18, inner) => match inner.as_mut() {
            Value::Array(p) => p,
            _ => panic!("not a COSE_Sign1"),
        },
        _ => panic!("not a COSE_Sign1"),
    }
}

fn key_is(k: &Value, i: i64) -> bool {
    matches!(k, Value::Integer(x) if i128::from(*x) == i128::from(i))
}

/// Rewrites the payload map of a COSE_Sign1 (a head or promise), keeping its signature.
pub fn edit_payload(doc: &[u8], field: u64, value: Value) -> Vec<u8> {
    let mut v = decode(doc);
    let p = parts(&mut v);
    let Value::Bytes(payload) = &p[2] else {
        panic!("no payload")
    };
    let mut map = decode(payload);
    let Value::Map(entries) = &mut map else {
        panic!("payload not a map")
    };
    for (k, v) in entries.iter_mut() {
        if key_is(k, field as i64) {
            *v = value.clone();
        }
    }
    p[2] = Value::Bytes(cbor::encode(&map).unwrap());
    cbor::encode(&v).unwrap()
}

/// Rewrites the single proof in header 396 of a COSE receipt (`[a, b, [hashes]]`), keeping
/// the signature: the proof is outside it, so only the recomputed root can catch this.
pub fn edit_proof(receipt: &[u8], f: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    let mut v = decode(receipt);
    let p = parts(&mut v);
    let Value::Map(unprotected) = &mut p[1] else {
        panic!("no unprotected map")
    };
    let Value::Map(vdp) = &mut unprotected[0].1 else {
        panic!("no vdp")
    };
    let Value::Array(list) = &mut vdp[0].1 else {
        panic!("no proof list")
    };
    let Value::Bytes(proof) = &mut list[0] else {
        panic!("proof not a bstr")
    };
    let mut triple = decode(proof);
    let Value::Array(items) = &mut triple else {
        panic!("proof not an array")
    };
    f(items);
    *proof = cbor::encode(&triple).unwrap();
    cbor::encode(&v).unwrap()
}

/// The hashes of a proof triple, to flip or extend.
pub fn path(items: &mut [Value]) -> &mut Vec<Value> {
    match &mut items[2] {
        Value::Array(a) => a,
        _ => panic!("no path"),
    }
}

/// Replaces the unprotected header of a COSE_Sign1.
pub fn set_unprotected(doc: &[u8], entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut v = decode(doc);
    parts(&mut v)[1] = Value::Map(entries);
    cbor::encode(&v).unwrap()
}

/// Sets protected label `label` to `value` and signs the receipt again over `root`, as a
/// node that wrote such a header would.
pub fn resign_protected(
    receipt: &[u8],
    label: i64,
    value: Value,
    root: &[u8; 32],
    key: &SecretKey,
) -> Vec<u8> {
    let mut v = decode(receipt);
    let p = parts(&mut v);
    let Value::Bytes(protected) = &p[0] else {
        panic!("no protected header")
    };
    let mut map = decode(protected);
    let Value::Map(entries) = &mut map else {
        panic!("protected not a map")
    };
    for (k, v) in entries.iter_mut() {
        if key_is(k, label) {
            *v = value.clone();
        }
    }
    let protected = cbor::encode(&map).unwrap();
    let tbs = cbor::encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.clone()),
        Value::Bytes(vec![]),
        Value::Bytes(root.to_vec()),
    ]))
    .unwrap();
    p[0] = Value::Bytes(protected);
    p[3] = Value::Bytes(key.sign(&tbs).0.to_vec());
    cbor::encode(&v).unwrap()
}
