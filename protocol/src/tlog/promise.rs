//! Promises of inclusion (§18.6): while a batch is open, a node answers with its signed
//! word that a leaf will be in a tree head it signs no later than a deadline.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{KeyId, SecretKey};

use super::signed_doc::{SignedDoc, encode_map, parse_map};
use super::{MAX_PROMISE_WINDOW_SECS, PROMISE_CONTENT_TYPE, TlogError};
use crate::cbor::read;
use crate::cose;

/// The payload of a promise (§18.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The log's id: the signing node's key id.
    pub log_id: KeyId,
    /// The RFC 9162 leaf hash the node will include (§18.1).
    pub leaf_hash: Digest32,
    /// Unix seconds when the node signed.
    pub issued_at: u64,
    /// Unix seconds by which a head containing the leaf will have been signed.
    pub deadline: u64,
}

impl Promise {
    /// Deterministic CBOR of the §18.6 payload map.
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        encode_map(vec![
            Value::Bytes(self.log_id.0.to_vec()),
            Value::Bytes(self.leaf_hash.to_vec()),
            read::int(self.issued_at),
            read::int(self.deadline),
        ])
    }

    /// Signs the promise; the log id must be `key`'s id and the window within §18.6.
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, TlogError> {
        if key.public_key().key_id() != self.log_id {
            return Err(TlogError::Header(
                "a promise is signed by the key whose id is its log id".into(),
            ));
        }
        check_window(self.issued_at, self.deadline)?;
        Ok(cose::sign(self.to_cbor()?, PROMISE_CONTENT_TYPE, key)?)
    }

    /// Strict decoding of a signed promise; the signature is checked by the caller.
    pub fn parse(bytes: &[u8]) -> Result<SignedDoc<Promise>, TlogError> {
        let (sign1, f) = parse_map(bytes, PROMISE_CONTENT_TYPE, 5)?;
        let issued_at = read::uint(&f[3], "issued at")?;
        let deadline = read::uint(&f[4], "deadline")?;
        check_window(issued_at, deadline)?;
        let body = Promise {
            log_id: sign1.kid,
            leaf_hash: read::bytes_n(&f[2], "leaf hash")?,
            issued_at,
            deadline,
        };
        Ok(SignedDoc { sign1, body })
    }
}

/// §18.6: the deadline is not before the issue time and at most an hour after it.
fn check_window(issued_at: u64, deadline: u64) -> Result<(), TlogError> {
    match deadline.checked_sub(issued_at) {
        Some(w) if w <= MAX_PROMISE_WINDOW_SECS => Ok(()),
        _ => Err(TlogError::Field(format!(
            "deadline {deadline} must lie within {MAX_PROMISE_WINDOW_SECS} s after issue {issued_at}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds_the_window() {
        let key = SecretKey::from_seed(&[3; 32]);
        let p = Promise {
            log_id: key.public_key().key_id(),
            leaf_hash: [7; 32],
            issued_at: 100,
            deadline: 105,
        };
        let parsed = Promise::parse(&p.sign(&key).unwrap()).unwrap();
        assert_eq!(parsed.body, p);
        parsed.sign1.verify(&key.public_key()).unwrap();
        for deadline in [99, 100 + MAX_PROMISE_WINDOW_SECS + 1] {
            let bad = Promise { deadline, ..p };
            assert!(bad.sign(&key).is_err());
            let forged = cose::sign(bad.to_cbor().unwrap(), PROMISE_CONTENT_TYPE, &key).unwrap();
            assert!(matches!(Promise::parse(&forged), Err(TlogError::Field(_))));
        }
    }
}
