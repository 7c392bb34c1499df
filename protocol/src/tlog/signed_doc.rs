//! Heads and promises are COSE_Sign1 documents under the receipts' §4.1 profile, each with
//! its own content type, so a signature over one kind is never accepted as another (§18.3).

use ciborium::value::Value;
use quorate_crypto::KeyId;

use super::{MAX_SIGNED_DOC_LEN, TLOG_VERSION, TlogError};
use crate::cbor::{self, read};
use crate::cose::{self, UncheckedSign1};

/// A decoded document whose signature is not yet checked.
#[derive(Debug, Clone)]
pub struct SignedDoc<T> {
    /// The COSE layer: key id, signed bytes, signature.
    pub sign1: UncheckedSign1,
    /// The decoded payload.
    pub body: T,
}

/// Parses a §4.1 COSE_Sign1 of `content_type` and decodes its payload map, whose keys must
/// be exactly `1..=keys` (field 1 the version, field 2 the log id, which must be the kid).
pub(super) fn parse_map(
    bytes: &[u8],
    content_type: &'static str,
    keys: u64,
) -> Result<(UncheckedSign1, Vec<Value>), TlogError> {
    let sign1 = cose::parse(bytes, content_type, MAX_SIGNED_DOC_LEN)?;
    let value = cbor::decode_deterministic(&sign1.payload, MAX_SIGNED_DOC_LEN)?;
    let allowed: Vec<u64> = (1..=keys).collect();
    let entries = read::int_map(&value, "payload", &allowed)?;
    if entries.len() as u64 != keys {
        return Err(TlogError::Field(format!(
            "payload needs exactly the fields 1 to {keys}"
        )));
    }
    // Deterministic CBOR sorts small integer keys, so entry i holds key i + 1.
    let fields: Vec<Value> = entries.into_iter().map(|(_, v)| v.clone()).collect();
    let version = read::uint(&fields[0], "version")?;
    if version != TLOG_VERSION {
        return Err(TlogError::Version(version));
    }
    let log_id = read::bytes_n::<16>(&fields[1], "log id")?;
    if KeyId(log_id) != sign1.kid {
        return Err(TlogError::Header(
            "the log id is not the signer's key id (§18.3)".into(),
        ));
    }
    Ok((sign1, fields))
}

/// Encodes a payload map with keys `1..` in order, version first.
pub(super) fn encode_map(fields: Vec<Value>) -> Result<Vec<u8>, TlogError> {
    let mut m = vec![(read::int(1), read::int(TLOG_VERSION))];
    for (i, v) in fields.into_iter().enumerate() {
        m.push((read::int(i as u64 + 2), v));
    }
    Ok(cbor::encode(&Value::Map(m))?)
}
