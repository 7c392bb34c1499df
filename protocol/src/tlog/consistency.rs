//! Consistency receipts (§18.5): RFC 9942 COSE Receipts whose signature covers the newer
//! root, and whose protected header also signs the older size and root, so the receipt is
//! the node's own statement that one tree extends the other.

use quorate_crypto::SecretKey;
use quorate_crypto::merkle::{self, MerkleLog};
use quorate_crypto::tensor_digest::Digest32;

use super::cose_receipt::{self, Binding, ProofKind, UncheckedCoseReceipt};
use super::{ConsistencyProof, TlogError};

/// A decoded consistency receipt; neither the proof nor the signature is checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyReceipt {
    /// The COSE layer.
    pub cose: UncheckedCoseReceipt,
    /// The consistency proof from header 396, key -2.
    pub proof: ConsistencyProof,
    /// The signed older root (protected header -65540).
    pub old_root: Digest32,
}

impl ConsistencyReceipt {
    /// Strict decoding (§18.8.3 steps 1–4): the proof's sizes must be the signed ones.
    pub fn parse(bytes: &[u8]) -> Result<Self, TlogError> {
        let cose = cose_receipt::parse(bytes, ProofKind::Consistency)?;
        let proof = ConsistencyProof::from_cbor(&cose.proof)?;
        let Some((old_size, old_root)) = cose.old else {
            return Err(TlogError::Header(
                "the older size and root are missing".into(),
            ));
        };
        if proof.new_size != cose.tree_size || proof.old_size != old_size {
            return Err(TlogError::Size(format!(
                "the proof's sizes {}→{} are not the signed sizes {old_size}→{}",
                proof.old_size, proof.new_size, cose.tree_size
            )));
        }
        Ok(Self {
            cose,
            proof,
            old_root,
        })
    }

    /// The older tree's size.
    pub fn old_size(&self) -> u64 {
        self.proof.old_size
    }

    /// The newer tree's size.
    pub fn new_size(&self) -> u64 {
        self.proof.new_size
    }

    /// The newer root the proof computes from the signed older root (RFC 9162 §2.1.4.2),
    /// or `None` when the proof does not reproduce the older root or has the wrong shape.
    /// The signature is then checked over this root (§18.8.3 step 6).
    pub fn new_root(&self) -> Option<Digest32> {
        let (old, new) = merkle::roots_from_consistency(
            self.proof.old_size,
            self.proof.new_size,
            &self.old_root,
            &self.proof.path,
        )?;
        (old == self.old_root).then_some(new)
    }
}

/// Signs the consistency receipt between the log's first `old_size` and first `new_size`
/// leaves (§18.5).
pub fn sign_consistency_receipt(
    log: &MerkleLog,
    old_size: u64,
    new_size: u64,
    issued_at: u64,
    key: &SecretKey,
) -> Result<Vec<u8>, TlogError> {
    let out_of_range = || {
        TlogError::Size(format!(
            "sizes {old_size}→{new_size} are not within a log of {} leaves",
            log.len()
        ))
    };
    let path = log
        .consistency_proof(old_size, new_size)
        .ok_or_else(out_of_range)?;
    let old_root = log.root(old_size).ok_or_else(out_of_range)?;
    let new_root = log.root(new_size).ok_or_else(out_of_range)?;
    let proof = ConsistencyProof {
        old_size,
        new_size,
        path,
    };
    let binding = Binding {
        tree_size: new_size,
        issued_at,
        old: Some((old_size, old_root)),
    };
    cose_receipt::sign(
        &binding,
        ProofKind::Consistency,
        proof.to_cbor()?,
        &new_root,
        key,
    )
}
