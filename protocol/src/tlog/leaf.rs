//! Receipts as log leaves (§18.1), and the inclusion receipts a receipt carries in its
//! unprotected header 394 (§18.4).
//!
//! The leaf of a receipt is its COSE_Sign1 with an empty unprotected header: exactly the
//! bytes the node signed and appended to its audit log. Attaching or removing header 394
//! therefore never changes the leaf, and the inclusion receipts inside it prove the
//! receipt that carries them.
//!
//! A batch receipt (§5.3) is handled through its signed root: header 394 sits in the root's
//! unprotected header, and its leaf is the batch receipt whose root has an empty one (§18.1).

use ciborium::value::{Integer, Value};
use quorate_crypto::merkle;
use quorate_crypto::tensor_digest::Digest32;

use super::{HEADER_RECEIPTS, MAX_ATTACHED_RECEIPTS, MAX_COSE_RECEIPT_LEN, TlogError};
use crate::cbor;
use crate::receipt::MAX_RECEIPT_LEN;

/// The four parts of a tagged COSE_Sign1, decoded deterministically.
fn split(receipt: &[u8]) -> Result<Vec<Value>, TlogError> {
    let value = cbor::decode_deterministic(receipt, MAX_RECEIPT_LEN)?;
    match value {
        Value::Tag(18, inner) => match *inner {
            Value::Array(parts) if parts.len() == 4 && matches!(parts[1], Value::Map(_)) => {
                Ok(parts)
            }
            _ => Err(TlogError::Structure(
                "COSE_Sign1 is [bstr, map, payload, bstr]".into(),
            )),
        },
        _ => Err(TlogError::Structure(
            "not a tagged COSE_Sign1 (tag 18)".into(),
        )),
    }
}

fn join(parts: Vec<Value>) -> Result<Vec<u8>, TlogError> {
    encode_receipt(&Value::Tag(18, Box::new(Value::Array(parts))))
}

/// A receipt's encoding, within the receipt size limit.
fn encode_receipt(value: &Value) -> Result<Vec<u8>, TlogError> {
    let bytes = cbor::encode(value)?;
    if bytes.len() > MAX_RECEIPT_LEN {
        return Err(TlogError::Size(format!(
            "a receipt of {} bytes exceeds {MAX_RECEIPT_LEN}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The five parts of a batch receipt (§5.3), decoded deterministically, when `receipt` is one
/// (first byte 0x85, §5.4); `None` for any other first byte.
fn split_batch(receipt: &[u8]) -> Result<Option<Vec<Value>>, TlogError> {
    if receipt.first() != Some(&0x85) {
        return Ok(None);
    }
    match cbor::decode_deterministic(receipt, MAX_RECEIPT_LEN)? {
        Value::Array(parts) if parts.len() == 5 && matches!(parts[4], Value::Bytes(_)) => {
            Ok(Some(parts))
        }
        _ => Err(TlogError::Structure(
            "a batch receipt is [1, leaf, index, path, root: bstr]".into(),
        )),
    }
}

/// The signed root of a batch receipt's parts.
fn root_of(parts: &[Value]) -> &[u8] {
    match &parts[4] {
        Value::Bytes(root) => root,
        _ => &[],
    }
}

/// The batch receipt with its root replaced by `root`.
fn with_root(mut parts: Vec<Value>, root: Vec<u8>) -> Result<Vec<u8>, TlogError> {
    parts[4] = Value::Bytes(root);
    encode_receipt(&Value::Array(parts))
}

/// The leaf bytes of a receipt (§18.1): the receipt with an empty unprotected header; for a
/// batch receipt, the batch receipt whose root has an empty unprotected header.
pub fn leaf_bytes(receipt: &[u8]) -> Result<Vec<u8>, TlogError> {
    if let Some(parts) = split_batch(receipt)? {
        let root = leaf_bytes(root_of(&parts))?;
        return with_root(parts, root);
    }
    let mut parts = split(receipt)?;
    parts[1] = Value::Map(Vec::new());
    join(parts)
}

/// The RFC 9162 leaf hash of a receipt: `SHA-256(0x00 || leaf_bytes)` (§18.1, §18.2).
pub fn receipt_leaf_hash(receipt: &[u8]) -> Result<Digest32, TlogError> {
    Ok(merkle::leaf_hash(&leaf_bytes(receipt)?))
}

/// The receipt with header 394 set to `inclusion_receipts` (replacing any it carried);
/// an empty list removes the header (§18.4). A batch receipt carries them in its root.
pub fn attach_inclusion_receipts(
    receipt: &[u8],
    inclusion_receipts: &[Vec<u8>],
) -> Result<Vec<u8>, TlogError> {
    if let Some(parts) = split_batch(receipt)? {
        let root = attach_inclusion_receipts(root_of(&parts), inclusion_receipts)?;
        return with_root(parts, root);
    }
    if inclusion_receipts.len() > MAX_ATTACHED_RECEIPTS {
        return Err(TlogError::Header(format!(
            "at most {MAX_ATTACHED_RECEIPTS} inclusion receipts in header 394"
        )));
    }
    if inclusion_receipts
        .iter()
        .any(|r| r.len() > MAX_COSE_RECEIPT_LEN)
    {
        return Err(TlogError::Size(format!(
            "an inclusion receipt exceeds {MAX_COSE_RECEIPT_LEN} bytes"
        )));
    }
    if let Some(fast) = splice_into_empty(receipt, inclusion_receipts)? {
        return Ok(fast);
    }
    let mut parts = split(receipt)?;
    parts[1] = if inclusion_receipts.is_empty() {
        Value::Map(Vec::new())
    } else {
        let list = inclusion_receipts
            .iter()
            .map(|r| Value::Bytes(r.clone()))
            .collect();
        Value::Map(vec![(
            Value::Integer(Integer::from(HEADER_RECEIPTS)),
            Value::Array(list),
        )])
    };
    join(parts)
}

/// The inclusion receipts a receipt carries in header 394, in order; empty when it has none.
/// Header 394 must be the only unprotected parameter (§4.1).
pub fn inclusion_receipts_of(receipt: &[u8]) -> Result<Vec<Vec<u8>>, TlogError> {
    if let Some(parts) = split_batch(receipt)? {
        return inclusion_receipts_of(root_of(&parts));
    }
    let parts = split(receipt)?;
    let Value::Map(unprotected) = &parts[1] else {
        return Ok(Vec::new());
    };
    let list = match unprotected.as_slice() {
        [] => return Ok(Vec::new()),
        [(Value::Integer(k), Value::Array(list))] if i128::from(*k) == 394 => list,
        _ => {
            return Err(TlogError::Header(
                "the unprotected header holds only 394, an array of byte strings".into(),
            ));
        }
    };
    if list.is_empty() || list.len() > MAX_ATTACHED_RECEIPTS {
        return Err(TlogError::Header(format!(
            "header 394 holds 1 to {MAX_ATTACHED_RECEIPTS} inclusion receipts"
        )));
    }
    list.iter()
        .map(|r| match r {
            Value::Bytes(b) if b.len() <= MAX_COSE_RECEIPT_LEN => Ok(b.clone()),
            _ => Err(TlogError::Header(format!(
                "header 394 holds byte strings of at most {MAX_COSE_RECEIPT_LEN} bytes"
            ))),
        })
        .collect()
}

/// Whether a well-formed receipt's unprotected header is the empty map, read off its first
/// bytes without decoding it: such a receipt carries no inclusion receipts, and
/// [`inclusion_receipts_of`] would find none. `false` says nothing (the header may still be
/// empty in a form this does not recognise).
pub fn unprotected_header_is_empty(receipt: &[u8]) -> bool {
    empty_unprotected_at(receipt).is_some()
        || batch_root_range(receipt)
            .is_some_and(|root| empty_unprotected_at(&receipt[root]).is_some())
}

/// The major type and argument of the CBOR head at `at`, and where what follows it starts.
fn head_at(b: &[u8], at: usize) -> Option<(u8, u64, usize)> {
    let first = *b.get(at)?;
    let arg = |n: usize| -> Option<u64> {
        let bytes = b.get(at + 1..at + 1 + n)?;
        Some(bytes.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
    };
    let (value, len) = match first & 0x1f {
        info @ 0..=23 => (u64::from(info), 0),
        24 => (arg(1)?, 1),
        25 => (arg(2)?, 2),
        26 => (arg(4)?, 4),
        27 => (arg(8)?, 8),
        _ => return None,
    };
    Some((first >> 5, value, at + 1 + len))
}

/// Where the signed root of a batch receipt `[1, leaf, index, path, root]` (§5.3) lies, read
/// off its heads without decoding it; `None` for anything not of that shape.
fn batch_root_range(b: &[u8]) -> Option<std::ops::Range<usize>> {
    let skip = |at: usize, n: u64| at.checked_add(usize::try_from(n).ok()?);
    let (4, 5, at) = head_at(b, 0)? else {
        return None;
    };
    let (0, 1, at) = head_at(b, at)? else {
        return None;
    };
    let (2, leaf, at) = head_at(b, at)? else {
        return None;
    };
    let (0, _, at) = head_at(b, skip(at, leaf)?)? else {
        return None;
    };
    let (4, hashes, mut at) = head_at(b, at)? else {
        return None;
    };
    // Each hash takes 34 bytes, so a count larger than the bytes left ends the loop early.
    for _ in 0..hashes {
        let (2, 32, next) = head_at(b, at)? else {
            return None;
        };
        at = skip(next, 32)?;
    }
    let (2, root, at) = head_at(b, at)? else {
        return None;
    };
    let end = skip(at, root)?;
    (end == b.len()).then_some(at..end)
}

/// Where the unprotected header of a receipt in its signed form begins: after the tag, the
/// array head and the protected byte string, when that header is the empty map (0xa0).
fn empty_unprotected_at(receipt: &[u8]) -> Option<usize> {
    let [0xd2, 0x84, head, rest @ ..] = receipt else {
        return None;
    };
    let (skip, len) = match *head {
        h @ 0x40..=0x57 => (0, usize::from(h - 0x40)),
        0x58 => (1, usize::from(*rest.first()?)),
        0x59 => (
            2,
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
        ),
        _ => return None,
    };
    let at = 3 + skip + len;
    (receipt.get(at) == Some(&0xa0)).then_some(at)
}

/// The hot path of [`attach_inclusion_receipts`] for a receipt as the node signed it (empty
/// unprotected header): the header is spliced in place of the empty map without decoding the
/// payload. The bytes are those the general path writes (a test holds this); `None` when the
/// receipt is not in that form, for the general path to handle.
fn splice_into_empty(
    receipt: &[u8],
    inclusion_receipts: &[Vec<u8>],
) -> Result<Option<Vec<u8>>, TlogError> {
    let Some(at) = empty_unprotected_at(receipt).filter(|_| !inclusion_receipts.is_empty()) else {
        return Ok(None);
    };
    let header = cbor::encode(&Value::Map(vec![(
        Value::Integer(Integer::from(HEADER_RECEIPTS)),
        Value::Array(
            inclusion_receipts
                .iter()
                .map(|r| Value::Bytes(r.clone()))
                .collect(),
        ),
    )]))?;
    let mut out = Vec::with_capacity(receipt.len() + header.len());
    out.extend_from_slice(&receipt[..at]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&receipt[at + 1..]);
    if out.len() > MAX_RECEIPT_LEN {
        return Err(TlogError::Size(format!(
            "a receipt of {} bytes exceeds {MAX_RECEIPT_LEN}",
            out.len()
        )));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod splice_tests {
    use super::*;

    /// The spliced header gives exactly the bytes of the general path, for receipts whose
    /// protected header takes each length form.
    #[test]
    fn splicing_equals_re_encoding() {
        let key = quorate_crypto::SecretKey::from_seed(&[5; 32]);
        let receipt = crate::receipt::ReceiptPayload {
            job_id: [1; 16],
            nonce: vec![2; 16],
            kind: crate::receipt::JobKind::Infer,
            model_digest: [3; 32],
            inputs: vec![],
            outputs: vec![],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime".into(),
            issued_at: 1,
            previous: None,
            policy: None,
        }
        .sign(&key)
        .unwrap();
        for n in 1..=MAX_ATTACHED_RECEIPTS {
            let list: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 100 + 300 * i]).collect();
            let fast = splice_into_empty(&receipt, &list).unwrap().unwrap();
            let mut parts = split(&receipt).unwrap();
            parts[1] = Value::Map(vec![(
                Value::Integer(Integer::from(HEADER_RECEIPTS)),
                Value::Array(list.iter().map(|r| Value::Bytes(r.clone())).collect()),
            )]);
            assert_eq!(fast, join(parts).unwrap());
            assert_eq!(leaf_bytes(&fast).unwrap(), receipt);
        }
        // Protected headers of every length form.
        for len in [0usize, 23, 24, 255, 256, 1000] {
            let mut fake = vec![0xd2, 0x84];
            match len {
                0..=23 => fake.push(0x40 + len as u8),
                24..=255 => fake.extend([0x58, len as u8]),
                _ => fake.extend([0x59, (len >> 8) as u8, len as u8]),
            }
            fake.extend(vec![0xa1; len]);
            fake.push(0xa0);
            assert_eq!(empty_unprotected_at(&fake), Some(fake.len() - 1), "{len}");
        }
        // Already carrying a header, or not a COSE_Sign1: the general path decides.
        let carried = attach_inclusion_receipts(&receipt, &[vec![7; 10]]).unwrap();
        assert!(empty_unprotected_at(&carried).is_none());
        assert!(empty_unprotected_at(b"\xd2\x84").is_none());
        assert!(empty_unprotected_at(&[]).is_none());
    }
}
