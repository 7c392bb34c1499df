//! Signed tree heads (§18.3): the node's signature binding its log, a size, the root of
//! the first `size` leaves and a time.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{KeyId, SecretKey};

use super::signed_doc::{SignedDoc, encode_map, parse_map};
use super::{MAX_TREE_SIZE, TREE_HEAD_CONTENT_TYPE, TlogError};
use crate::cbor::read;
use crate::cose;

/// The payload of a signed tree head (§18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// The log's id: the signing node's key id (§2.2).
    pub log_id: KeyId,
    /// Number of leaves the root covers.
    pub size: u64,
    /// RFC 9162 MTH of the first `size` leaves.
    pub root: Digest32,
    /// Unix seconds when the node signed.
    pub issued_at: u64,
}

impl TreeHead {
    /// Deterministic CBOR of the §18.3 payload map.
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        encode_map(vec![
            Value::Bytes(self.log_id.0.to_vec()),
            read::int(self.size),
            Value::Bytes(self.root.to_vec()),
            read::int(self.issued_at),
        ])
    }

    /// Signs the head (§18.3). The log id must be `key`'s key id.
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, TlogError> {
        if key.public_key().key_id() != self.log_id {
            return Err(TlogError::Header(
                "a head is signed by the key whose id is its log id".into(),
            ));
        }
        check_size(self.size)?;
        Ok(cose::sign(self.to_cbor()?, TREE_HEAD_CONTENT_TYPE, key)?)
    }

    /// Strict decoding of a signed tree head (§18.8.1 steps 1–3); the signature is checked
    /// by the caller with the key of [`SignedDoc::sign1`]'s kid.
    pub fn parse(bytes: &[u8]) -> Result<SignedDoc<TreeHead>, TlogError> {
        let (sign1, f) = parse_map(bytes, TREE_HEAD_CONTENT_TYPE, 5)?;
        let size = read::uint(&f[2], "tree size")?;
        check_size(size)?;
        let body = TreeHead {
            log_id: sign1.kid,
            size,
            root: read::bytes_n(&f[3], "root")?,
            issued_at: read::uint(&f[4], "time")?,
        };
        Ok(SignedDoc { sign1, body })
    }
}

fn check_size(size: u64) -> Result<(), TlogError> {
    if size > MAX_TREE_SIZE {
        return Err(TlogError::Size(format!(
            "tree size {size} exceeds {MAX_TREE_SIZE}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::merkle;

    fn head(key: &SecretKey) -> TreeHead {
        TreeHead {
            log_id: key.public_key().key_id(),
            size: 7,
            root: merkle::leaf_hash(b"root"),
            issued_at: 1_763_900_000,
        }
    }

    #[test]
    fn round_trips_and_binds_the_signer() {
        let key = SecretKey::from_seed(&[1; 32]);
        let bytes = head(&key).sign(&key).unwrap();
        let parsed = TreeHead::parse(&bytes).unwrap();
        assert_eq!(parsed.body, head(&key));
        parsed.sign1.verify(&key.public_key()).unwrap();
        let other = SecretKey::from_seed(&[2; 32]);
        assert!(parsed.sign1.verify(&other.public_key()).is_err());
        // A head naming another log cannot be signed.
        assert!(head(&other).sign(&key).is_err());
    }

    #[test]
    fn rejects_oversized_trees_and_other_content_types() {
        let key = SecretKey::from_seed(&[1; 32]);
        let mut h = head(&key);
        h.size = MAX_TREE_SIZE + 1;
        assert!(matches!(h.sign(&key), Err(TlogError::Size(_))));
        let forged = cose::sign(h.to_cbor().unwrap(), TREE_HEAD_CONTENT_TYPE, &key).unwrap();
        assert!(matches!(TreeHead::parse(&forged), Err(TlogError::Size(_))));
        let receipt_typed = cose::sign(
            head(&key).to_cbor().unwrap(),
            "application/vnd.quorate.receipt+cbor",
            &key,
        )
        .unwrap();
        assert!(matches!(
            TreeHead::parse(&receipt_typed),
            Err(TlogError::Cose(_))
        ));
    }
}
