//! COSE_Sign1 (RFC 9052 §4.2) profile shared by receipts and rosters (§4.1).
//!
//! Profile: tagged COSE_Sign1 (tag 18); protected header exactly {1: alg, 3: content type,
//! 4: kid}, alg EdDSA (-8) when signing, EdDSA or Ed25519 (-19, RFC 9864) accepted; empty
//! unprotected header (receipts alone may carry header 394, their inclusion receipts,
//! §18.4); embedded payload; no `crit`; the whole structure deterministic CBOR.

use coset::{AsCborValue, CoseSign1, TaggedCborSerializable};
use quorate_crypto::{KeyId, PublicKey, SecretKey, identity::KEY_ID_LEN};

use crate::cbor::{self, CborError, write};

/// `alg` value written by quorate: EdDSA (RFC 9053).
pub const ALG_EDDSA: i64 = -8;
/// `alg` value also accepted: Ed25519 (RFC 9864).
pub const ALG_ED25519: i64 = -19;

/// Errors checking a COSE_Sign1 document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoseError {
    /// The bytes are not canonical CBOR (see [`CborError`]).
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// Not a tagged COSE_Sign1 structure.
    #[error("not a tagged COSE_Sign1 (RFC 9052 §4.2): {0}")]
    Structure(String),
    /// A header violates the §4.1 profile.
    #[error("header: {0}")]
    Header(String),
    /// The content type is not the one this document must have.
    #[error("content type is {found:?}, expected {expected:?}")]
    ContentType {
        /// What the document says.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No payload, or a detached one.
    #[error("payload missing")]
    NoPayload,
}

/// A structurally valid COSE_Sign1 whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UncheckedSign1 {
    /// The signer's key id.
    pub kid: KeyId,
    /// The `alg` header value.
    pub alg: i64,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The Sig_structure bytes the signature covers.
    pub to_be_signed: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl UncheckedSign1 {
    /// Verifies the signature with `key`, which must have this document's key id.
    pub fn verify(&self, key: &PublicKey) -> Result<(), quorate_crypto::IdentityError> {
        if key.key_id() != self.kid {
            return Err(quorate_crypto::IdentityError::BadSignature);
        }
        key.verify(&self.to_be_signed, &self.signature)
    }
}

/// Signs `payload` as a tagged COSE_Sign1 with the §4.1 profile.
///
/// Every byte is written in its deterministic form directly (§1.3): the protected header
/// `{1: -8, 3: content type, 4: kid}` (keys in order), the RFC 9052 `Sig_structure`
/// `["Signature1", protected, h'', payload]`, then `18([protected, {}, payload, signature])`.
/// A test holds this equal to building the document with `coset` and re-encoding it.
pub fn sign(payload: Vec<u8>, content_type: &str, key: &SecretKey) -> Result<Vec<u8>, CoseError> {
    let kid = key.public_key().key_id();
    let mut protected = Vec::with_capacity(8 + content_type.len() + KEY_ID_LEN);
    write::map(&mut protected, 3);
    write::uint(&mut protected, 1);
    write::int(&mut protected, ALG_EDDSA);
    write::uint(&mut protected, 3);
    write::text(&mut protected, content_type);
    write::uint(&mut protected, 4);
    write::bytes(&mut protected, &kid.0);
    let signature = key.sign(&sign1_sig_structure(&protected, &payload)).0;
    let mut out = Vec::with_capacity(96 + protected.len() + payload.len());
    out.push(0xd2); // tag 18, COSE_Sign1
    write::array(&mut out, 4);
    write::bytes(&mut out, &protected);
    write::map(&mut out, 0);
    write::bytes(&mut out, &payload);
    write::bytes(&mut out, &signature);
    Ok(out)
}

/// Parses a COSE_Sign1 under the §4.1 profile, checking the content type.
pub fn parse(
    bytes: &[u8],
    content_type: &'static str,
    limit: usize,
) -> Result<UncheckedSign1, CoseError> {
    parse_profile(bytes, content_type, limit, false)
}

/// [`parse`] for receipts: the unprotected header is empty or holds only header 394, an
/// array of 1 to 4 byte strings (the receipt's inclusion receipts, §4.1, §18.4). They are
/// outside the signature; `quorate-verify` checks each one.
pub fn parse_receipt(
    bytes: &[u8],
    content_type: &'static str,
    limit: usize,
) -> Result<UncheckedSign1, CoseError> {
    parse_profile(bytes, content_type, limit, true)
}

/// Header 394 (RFC 9942 `receipts`) as §18.4 allows it on a receipt.
fn is_inclusion_receipts_header(h: &coset::Header) -> bool {
    let mut others = h.clone();
    others.rest.clear();
    if !others.is_empty() {
        return false;
    }
    match h.rest.as_slice() {
        [(coset::Label::Int(394), ciborium::value::Value::Array(list))] => {
            (1..=crate::tlog::MAX_ATTACHED_RECEIPTS).contains(&list.len())
                && list.iter().all(|r| {
                    matches!(r, ciborium::value::Value::Bytes(b)
                        if b.len() <= crate::tlog::MAX_COSE_RECEIPT_LEN)
                })
        }
        _ => false,
    }
}

fn parse_profile(
    bytes: &[u8],
    content_type: &'static str,
    limit: usize,
    allow_inclusion_receipts: bool,
) -> Result<UncheckedSign1, CoseError> {
    // A receipt as signed is taken from the value its deterministic decoding (§1.3) built;
    // anything else is read by coset, for coset's own error.
    let value = cbor::decode_deterministic(bytes, limit)?;
    let (sign1, protected_checked) = match sign1_from_value(value, limit) {
        Some(sign1) => (sign1, true),
        None => (
            CoseSign1::from_tagged_slice(bytes).map_err(|e| CoseError::Structure(e.to_string()))?,
            false,
        ),
    };
    let p = &sign1.protected.header;
    let header = |m: &str| CoseError::Header(m.to_string());
    if !p.crit.is_empty() {
        return Err(header(
            "crit is present: no critical extensions are understood",
        ));
    }
    if !p.rest.is_empty() || p.iv.len() + p.partial_iv.len() > 0 || !p.counter_signatures.is_empty()
    {
        return Err(header(
            "protected header has parameters outside {alg, content type, kid}",
        ));
    }
    match &sign1.protected.original_data {
        Some(d) if !d.is_empty() => {
            if !protected_checked {
                cbor::decode_deterministic(d, limit)?;
            }
        }
        _ => return Err(header("protected header is empty")),
    }
    let unprotected_ok = sign1.unprotected.is_empty()
        || (allow_inclusion_receipts && is_inclusion_receipts_header(&sign1.unprotected));
    if !unprotected_ok {
        return Err(header(if allow_inclusion_receipts {
            "unprotected header must be empty or hold only 394 (inclusion receipts, §18.4)"
        } else {
            "unprotected header must be empty"
        }));
    }
    let alg = match &p.alg {
        Some(coset::Algorithm::Assigned(a)) => *a as i64,
        _ => return Err(header("alg missing or not an integer")),
    };
    if alg != ALG_EDDSA && alg != ALG_ED25519 {
        return Err(CoseError::Header(format!(
            "alg {alg} is not EdDSA (-8) or Ed25519 (-19)"
        )));
    }
    match &p.content_type {
        Some(coset::ContentType::Text(t)) if t == content_type => {}
        Some(coset::ContentType::Text(t)) => {
            return Err(CoseError::ContentType {
                found: t.clone(),
                expected: content_type,
            });
        }
        _ => {
            return Err(CoseError::ContentType {
                found: "(none)".into(),
                expected: content_type,
            });
        }
    }
    let kid = KeyId::from_slice(&p.key_id).ok_or_else(|| {
        CoseError::Header(format!(
            "kid must be {KEY_ID_LEN} bytes, found {}",
            p.key_id.len()
        ))
    })?;
    let payload = sign1.payload.ok_or(CoseError::NoPayload)?;
    // The protected header was decoded from bytes, so coset's `tbs_data` would sign over
    // those bytes as they came (checked non-empty above).
    let protected = sign1.protected.original_data.unwrap_or_default();
    Ok(UncheckedSign1 {
        kid,
        alg,
        to_be_signed: sign1_sig_structure(&protected, &payload),
        signature: sign1.signature,
        payload,
    })
}

/// The COSE_Sign1 coset reads from the bytes `value` was decoded from, built from `value`
/// itself, with the protected header taken from its own deterministic decoding (§1.3)
/// rather than decoded by coset a second time: ciborium, under coset and under
/// [`cbor::decode_deterministic`] alike, builds the same value from the same bytes. `None`
/// for anything off that path (an error anywhere, an empty protected header, a detached
/// payload), which coset then reads itself.
fn sign1_from_value(value: ciborium::value::Value, limit: usize) -> Option<CoseSign1> {
    use ciborium::value::Value;
    let Value::Tag(CoseSign1::TAG, inner) = value else {
        return None;
    };
    let Value::Array(mut parts) = *inner else {
        return None;
    };
    if parts.len() != 4 {
        return None;
    }
    let Value::Bytes(signature) = parts.remove(3) else {
        return None;
    };
    let Value::Bytes(payload) = parts.remove(2) else {
        return None;
    };
    let unprotected = coset::Header::from_cbor_value(parts.remove(1)).ok()?;
    let Value::Bytes(protected) = parts.remove(0) else {
        return None;
    };
    if protected.is_empty() {
        return None;
    }
    let header =
        coset::Header::from_cbor_value(cbor::decode_deterministic(&protected, limit).ok()?).ok()?;
    Some(CoseSign1 {
        protected: coset::ProtectedHeader {
            original_data: Some(protected),
            header,
        },
        unprotected,
        payload: Some(payload),
        signature,
    })
}

/// The Sig_structure of a COSE_Sign1 with empty external data (RFC 9052 §4.4):
/// `["Signature1", protected, h'', payload]` in deterministic CBOR (§1.3), the bytes coset's
/// `tbs_data` writes (a test holds them equal) without building and serialising a value tree.
fn sign1_sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    write::array(&mut out, 4);
    write::text(&mut out, "Signature1");
    write::bytes(&mut out, protected);
    write::bytes(&mut out, &[]); // the empty external data
    write::bytes(&mut out, payload);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coset::{CoseSign1Builder, HeaderBuilder, iana};

    /// A signed receipt read from its decoded value is the COSE_Sign1 coset reads from its
    /// bytes; what it does not take (a detached payload) is left to coset.
    #[test]
    fn sign1_from_value_is_cosets() {
        let key = SecretKey::from_seed(&[3; 32]);
        let bytes = sign(vec![0xa1, 1, 2], "application/test", &key).unwrap();
        let value = cbor::decode_deterministic(&bytes, 1 << 16).unwrap();
        assert_eq!(
            sign1_from_value(value, 1 << 16),
            Some(CoseSign1::from_tagged_slice(&bytes).unwrap())
        );
        let mut detached = CoseSign1::from_tagged_slice(&bytes).unwrap();
        detached.payload = None;
        let detached = detached.to_tagged_vec().unwrap();
        let value = cbor::decode_deterministic(&detached, 1 << 16).unwrap();
        assert_eq!(sign1_from_value(value, 1 << 16), None);
    }

    /// The document `sign` writes directly is the one coset builds, re-encoded
    /// deterministically, for every length form of the payload and several content types.
    #[test]
    fn direct_signing_is_coset_reencoded() {
        let key = SecretKey::from_seed(&[9; 32]);
        let by_coset = |payload: Vec<u8>, content_type: &str| {
            let protected = HeaderBuilder::new()
                .algorithm(iana::Algorithm::EdDSA)
                .content_type(content_type.to_string())
                .key_id(key.public_key().key_id().0.to_vec())
                .build();
            let bytes = CoseSign1Builder::new()
                .protected(protected)
                .payload(payload)
                .create_signature(&[], |tbs| key.sign(tbs).0.to_vec())
                .build()
                .to_tagged_vec()
                .unwrap();
            let value: ciborium::value::Value =
                ciborium::de::from_reader(bytes.as_slice()).unwrap();
            cbor::encode(&value).unwrap()
        };
        for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536] {
            for content_type in [
                "a",
                "application/vnd.quorate.receipt+cbor",
                &"t".repeat(300),
            ] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                assert_eq!(
                    sign(payload.clone(), content_type, &key).unwrap(),
                    by_coset(payload, content_type),
                    "payload {len}, content type {content_type}"
                );
            }
        }
    }

    /// The Sig_structure written directly is coset's, across every length form of the
    /// protected header and the payload.
    #[test]
    fn sig_structure_is_cosets() {
        for (protected_len, payload_len) in [
            (0, 0),
            (1, 23),
            (23, 24),
            (24, 255),
            (255, 256),
            (256, 65_535),
            (40, 65_536),
        ] {
            let header = HeaderBuilder::new()
                .key_id(vec![9; protected_len.max(1)])
                .build();
            let mut sign1 = CoseSign1Builder::new()
                .protected(header)
                .payload(vec![7; payload_len])
                .build();
            let protected = vec![0xa5; protected_len];
            sign1.protected.original_data = Some(protected.clone());
            assert_eq!(
                sign1_sig_structure(&protected, &vec![7; payload_len]),
                sign1.tbs_data(&[]),
                "{protected_len} {payload_len}"
            );
        }
    }
}
