//! Inclusion receipts (§18.4): RFC 9942 COSE Receipts whose signature covers the Merkle
//! root that the leaf and its RFC 9162 inclusion path recompute.

use quorate_crypto::SecretKey;
use quorate_crypto::merkle::{self, MerkleLog};
use quorate_crypto::tensor_digest::Digest32;

use super::cose_receipt::{self, Binding, ProofKind, UncheckedCoseReceipt};
use super::{InclusionProof, TlogError};

/// A decoded inclusion receipt; neither the proof nor the signature is checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionReceipt {
    /// The COSE layer.
    pub cose: UncheckedCoseReceipt,
    /// The inclusion proof from header 396, key -1.
    pub proof: InclusionProof,
}

impl InclusionReceipt {
    /// Strict decoding (§18.8.2 steps 1–4): the proof's tree size must be the signed one.
    pub fn parse(bytes: &[u8]) -> Result<Self, TlogError> {
        let cose = cose_receipt::parse(bytes, ProofKind::Inclusion)?;
        let proof = InclusionProof::from_cbor(&cose.proof)?;
        if proof.tree_size != cose.tree_size {
            return Err(TlogError::Size(format!(
                "the proof's tree size {} is not the signed tree size {}",
                proof.tree_size, cose.tree_size
            )));
        }
        Ok(Self { cose, proof })
    }

    /// The root `leaf_hash` and the proof recompute (RFC 9162 §2.1.3.2); `None` when the
    /// path has the wrong length for the index and size. The signature is then checked
    /// over this root (§18.8.2 step 6).
    pub fn root_for(&self, leaf_hash: &Digest32) -> Option<Digest32> {
        merkle::root_from_inclusion(
            leaf_hash,
            self.proof.leaf_index,
            self.proof.tree_size,
            &self.proof.path,
        )
    }
}

/// Signs the inclusion receipt of leaf `leaf_index` in the tree of the log's first
/// `tree_size` leaves (§18.4). `None` from the log (index or size out of range) is a
/// [`TlogError::Size`].
pub fn sign_inclusion_receipt(
    log: &MerkleLog,
    leaf_index: u64,
    tree_size: u64,
    issued_at: u64,
    key: &SecretKey,
) -> Result<Vec<u8>, TlogError> {
    let out_of_range = || {
        TlogError::Size(format!(
            "leaf {leaf_index} at size {tree_size} is not in a log of {} leaves",
            log.len()
        ))
    };
    let path = log
        .inclusion_proof(leaf_index, tree_size)
        .ok_or_else(out_of_range)?;
    let root = log.root(tree_size).ok_or_else(out_of_range)?;
    let proof = InclusionProof {
        tree_size,
        leaf_index,
        path,
    };
    let binding = Binding {
        tree_size,
        issued_at,
        old: None,
    };
    cose_receipt::sign(&binding, ProofKind::Inclusion, proof.to_cbor()?, &root, key)
}

/// One signature over the root of a tree, from which the inclusion receipt of any of its
/// leaves is assembled without signing again (§18.11.3): a node signs one per group of
/// receipts it makes durable together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeStatement {
    /// The tree's size.
    pub tree_size: u64,
    /// When the node signed, Unix seconds.
    pub issued_at: u64,
    signed: cose_receipt::SignedStatement,
}

impl TreeStatement {
    /// Signs "the tree of `log`'s first `tree_size` leaves has its root" at `issued_at`.
    pub fn sign(
        log: &MerkleLog,
        tree_size: u64,
        issued_at: u64,
        key: &SecretKey,
    ) -> Result<Self, TlogError> {
        let root = log
            .root(tree_size)
            .filter(|_| tree_size > 0)
            .ok_or_else(|| {
                TlogError::Size(format!(
                    "no tree of {tree_size} leaves in a log of {}",
                    log.len()
                ))
            })?;
        let binding = Binding {
            tree_size,
            issued_at,
            old: None,
        };
        Ok(Self {
            tree_size,
            issued_at,
            signed: cose_receipt::sign_statement(&binding, &root, key)?,
        })
    }

    /// The inclusion receipt of leaf `leaf_index` under this statement; `path` is its
    /// RFC 9162 inclusion path in the tree of [`Self::tree_size`] leaves.
    pub fn inclusion_receipt(
        &self,
        leaf_index: u64,
        path: Vec<Digest32>,
    ) -> Result<Vec<u8>, TlogError> {
        let proof = InclusionProof {
            tree_size: self.tree_size,
            leaf_index,
            path,
        };
        self.signed.receipt(ProofKind::Inclusion, proof.to_cbor()?)
    }
}
