//! RFC 9942 §5.2 encodings of RFC9162_SHA256 proofs (§18.4, §18.5): each proof is a
//! byte string holding `[size, index-or-size, [* hash]]`.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;

use super::{MAX_COSE_RECEIPT_LEN, MAX_PROOF_HASHES, MAX_TREE_SIZE, TlogError};
use crate::cbor::{self, read};

/// `inclusion-proof = [tree-size, leaf-index, inclusion-path]` (RFC 9942 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// Leaves in the tree the proof reaches the root of.
    pub tree_size: u64,
    /// The leaf's index, below `tree_size`.
    pub leaf_index: u64,
    /// RFC 9162 §2.1.3.1 PATH, nearest the leaf first.
    pub path: Vec<Digest32>,
}

/// `consistency-proof = [tree-size-1, tree-size-2, consistency-path]` (RFC 9942 §5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Leaves in the older tree (at least 1).
    pub old_size: u64,
    /// Leaves in the newer tree (at least `old_size`).
    pub new_size: u64,
    /// RFC 9162 §2.1.4.1 PROOF.
    pub path: Vec<Digest32>,
}

fn path_value(path: &[Digest32]) -> Value {
    Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect())
}

/// Decodes `bstr .cbor [a, b, [* bstr .size 32]]`, bounding the path before collecting it.
fn decode_triple(bytes: &[u8]) -> Result<(u64, u64, Vec<Digest32>), TlogError> {
    let value = cbor::decode_deterministic(bytes, MAX_COSE_RECEIPT_LEN)?;
    let Value::Array(items) = &value else {
        return Err(TlogError::Field("a proof must be an array".into()));
    };
    let [a, b, Value::Array(path)] = items.as_slice() else {
        return Err(TlogError::Field(
            "a proof is [size, index or size, [hashes]]".into(),
        ));
    };
    if path.len() > MAX_PROOF_HASHES {
        return Err(TlogError::ProofTooLong(path.len()));
    }
    let path = path
        .iter()
        .map(|h| read::bytes_n::<32>(h, "proof hash"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((read::uint(a, "tree size")?, read::uint(b, "proof")?, path))
}

fn check_tree_size(size: u64) -> Result<(), TlogError> {
    if size == 0 || size > MAX_TREE_SIZE {
        return Err(TlogError::Size(format!(
            "tree size {size} outside 1..={MAX_TREE_SIZE}"
        )));
    }
    Ok(())
}

impl InclusionProof {
    /// The proof's CBOR (the content of the byte string in header 396).
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        Ok(cbor::encode(&Value::Array(vec![
            read::int(self.tree_size),
            read::int(self.leaf_index),
            path_value(&self.path),
        ]))?)
    }

    /// Strict decoding with the §18.9 bounds.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, TlogError> {
        let (tree_size, leaf_index, path) = decode_triple(bytes)?;
        check_tree_size(tree_size)?;
        if leaf_index >= tree_size {
            return Err(TlogError::Size(format!(
                "leaf index {leaf_index} is not below the tree size {tree_size}"
            )));
        }
        Ok(Self {
            tree_size,
            leaf_index,
            path,
        })
    }
}

impl ConsistencyProof {
    /// The proof's CBOR (the content of the byte string in header 396).
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        Ok(cbor::encode(&Value::Array(vec![
            read::int(self.old_size),
            read::int(self.new_size),
            path_value(&self.path),
        ]))?)
    }

    /// Strict decoding with the §18.9 bounds.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, TlogError> {
        let (old_size, new_size, path) = decode_triple(bytes)?;
        check_tree_size(old_size)?;
        check_tree_size(new_size)?;
        if old_size > new_size {
            return Err(TlogError::Size(format!(
                "older size {old_size} exceeds newer size {new_size}"
            )));
        }
        Ok(Self {
            old_size,
            new_size,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let p = InclusionProof {
            tree_size: 5,
            leaf_index: 4,
            path: vec![[1; 32], [2; 32]],
        };
        assert_eq!(InclusionProof::from_cbor(&p.to_cbor().unwrap()).unwrap(), p);
        let bad_index = InclusionProof {
            leaf_index: 5,
            ..p.clone()
        };
        assert!(matches!(
            InclusionProof::from_cbor(&bad_index.to_cbor().unwrap()),
            Err(TlogError::Size(_))
        ));
        let long = InclusionProof {
            path: vec![[0; 32]; MAX_PROOF_HASHES + 1],
            ..p.clone()
        };
        assert_eq!(
            InclusionProof::from_cbor(&long.to_cbor().unwrap()),
            Err(TlogError::ProofTooLong(MAX_PROOF_HASHES + 1))
        );
        let c = ConsistencyProof {
            old_size: 3,
            new_size: 7,
            path: vec![[3; 32]],
        };
        assert_eq!(
            ConsistencyProof::from_cbor(&c.to_cbor().unwrap()).unwrap(),
            c
        );
        let backwards = ConsistencyProof { old_size: 8, ..c };
        assert!(ConsistencyProof::from_cbor(&backwards.to_cbor().unwrap()).is_err());
    }
}
