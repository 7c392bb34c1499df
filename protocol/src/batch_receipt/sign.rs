//! Signing a batch (§5.1): payloads are encoded and hashed as they come, into one buffer,
//! then one signature covers their Merkle root, and every batch receipt (§5.3) is written
//! into one buffer too. A batch of small local runs would otherwise spend more time in the
//! allocator than in the model.

use std::borrow::Borrow;
use std::ops::Range;

use quorate_crypto::SecretKey;
use quorate_crypto::merkle::{self, MAX_LEAVES, TreeBuilder};
use quorate_crypto::tensor_digest::Digest32;

use super::{BATCH_ROOT_CONTENT_TYPE, BATCH_VERSION, BatchRoot};
use crate::cose;
use crate::receipt::{EncodedPayload, ReceiptError, ReceiptPayload};

/// Collects the payloads of one batch, in order, then signs them once.
#[derive(Debug, Default)]
pub struct BatchSigner {
    /// Every leaf's deterministic encoding (§4.2), back to back.
    leaves: Vec<u8>,
    /// Where each leaf ends in `leaves`.
    ends: Vec<usize>,
    /// RFC 9162 leaf hashes.
    hashes: Vec<Digest32>,
    /// The Merkle tree of a batch of the size given to [`Self::with_capacity`], hashed as the
    /// leaves come rather than all at signing time, which a batch would wait on.
    tree: TreeBuilder,
}

impl BatchSigner {
    /// A signer with room for `n` payloads; with exactly `n`, their tree is built as they come.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            leaves: Vec::with_capacity(n.saturating_mul(320)),
            ends: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            tree: TreeBuilder::new(n),
        }
    }

    /// Adds the next payload: encodes it (the leaf its receipt carries) and hashes it.
    pub fn push(&mut self, payload: &ReceiptPayload) -> Result<(), ReceiptError> {
        if self.ends.len() as u64 >= MAX_LEAVES {
            return Err(too_many());
        }
        let start = self.leaves.len();
        payload.write_cbor(&mut self.leaves)?;
        let hash = merkle::leaf_hash(&self.leaves[start..]);
        self.tree.push(hash);
        self.hashes.push(hash);
        self.ends.push(self.leaves.len());
        Ok(())
    }

    /// [`Self::push`] for a payload encoded already.
    pub fn push_encoded(&mut self, payload: &EncodedPayload) -> Result<(), ReceiptError> {
        if self.ends.len() as u64 >= MAX_LEAVES {
            return Err(too_many());
        }
        self.leaves.extend_from_slice(payload.as_bytes());
        let hash = merkle::leaf_hash(payload.as_bytes());
        self.tree.push(hash);
        self.hashes.push(hash);
        self.ends.push(self.leaves.len());
        Ok(())
    }

    /// Payloads added so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True before the first payload.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn leaf(&self, i: usize) -> &[u8] {
        self.leaf_range(i..i + 1)
    }

    /// The leaves of `range` back to back (a range within the payloads added).
    fn leaf_range(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        let start = range.start.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.leaves[start..self.ends[range.end - 1]]
    }

    /// Signs the root over every payload added and returns one batch receipt per payload,
    /// in order (§5.1).
    pub fn sign(self, key: &SecretKey, issued_at: u64) -> Result<BatchReceipts, ReceiptError> {
        let signed = self.sign_root(key, issued_at)?;
        Ok(signed.receipts(0..signed.len()))
    }

    /// Signs the root over every payload added; the receipts are then written by
    /// [`SignedBatch::receipts`], a range at a time, so that a large batch can write its
    /// ranges on several threads.
    pub fn sign_root(
        mut self,
        key: &SecretKey,
        issued_at: u64,
    ) -> Result<SignedBatch, ReceiptError> {
        if self.is_empty() {
            return Err(too_many());
        }
        // The tree built as the leaves came, unless more or fewer came than announced.
        let tree = if self.tree.len() == self.hashes.len() {
            std::mem::take(&mut self.tree).finish()
        } else {
            None
        };
        let tree = tree.unwrap_or_else(|| merkle::Tree::new(&self.hashes));
        let root = BatchRoot {
            root: tree.root(),
            size: self.hashes.len() as u64,
            issued_at,
        };
        let signed_root = cose::sign(root.to_cbor()?, BATCH_ROOT_CONTENT_TYPE, key)?;
        Ok(SignedBatch {
            signer: self,
            tree,
            signed_root,
        })
    }
}

/// A batch whose root is signed: every payload, its tree and the signed root, from which
/// each payload's batch receipt (§5.3) is written.
#[derive(Debug)]
pub struct SignedBatch {
    signer: BatchSigner,
    tree: merkle::Tree,
    signed_root: Vec<u8>,
}

impl SignedBatch {
    /// Payloads in the batch.
    pub fn len(&self) -> usize {
        self.signer.len()
    }

    /// True for no payload (never: an empty batch is not signed).
    pub fn is_empty(&self) -> bool {
        self.signer.is_empty()
    }

    /// The batch receipts of the payloads in `range` (clamped to the batch), in order.
    pub fn receipts(&self, range: Range<usize>) -> BatchReceipts {
        let range = range.start.min(self.len())..range.end.min(self.len());
        // Each receipt adds to its leaf at most 8 bytes of heads, the root with its head, and
        // ceil(log2 n) + 1 path hashes of 34 bytes: room for all of them up front.
        let depth = usize::BITS - self.len().leading_zeros();
        let extra = 16 + self.signed_root.len() + 34 * (depth as usize + 1);
        let leaf_bytes = self.signer.leaf_range(range.clone()).len();
        let mut part = Part {
            bytes: Vec::with_capacity(leaf_bytes + range.len() * extra),
            ends: Vec::with_capacity(range.len()),
        };
        let mut path = Vec::with_capacity(depth as usize);
        for i in range {
            self.tree.path_into(i, &mut path);
            encode_batch_receipt(
                &mut part.bytes,
                self.signer.leaf(i),
                i as u64,
                &path,
                &self.signed_root,
            );
            part.ends.push(part.bytes.len());
        }
        BatchReceipts { parts: vec![part] }
    }
}

fn too_many() -> ReceiptError {
    ReceiptError::Payload(format!("a batch holds 1 to {MAX_LEAVES} receipts"))
}

/// The batch receipts of one batch, or of a range of it, in order: back to back in one
/// buffer per range written. Equal when they hold the same receipts in the same order,
/// however they were written.
#[derive(Clone, Debug)]
pub struct BatchReceipts {
    parts: Vec<Part>,
}

impl PartialEq for BatchReceipts {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for BatchReceipts {}

/// Receipts written together: their bytes and where each ends.
#[derive(Clone, Debug)]
struct Part {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Part {
    fn get(&self, i: usize) -> Option<&[u8]> {
        let start = match i {
            0 => 0,
            i => *self.ends.get(i - 1)?,
        };
        self.bytes.get(start..*self.ends.get(i)?)
    }
}

impl BatchReceipts {
    /// Number of receipts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.ends.len()).sum()
    }

    /// True when there are none (never, for a whole signed batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `next`, the receipts of the range that follows, after these; no receipt is
    /// copied.
    pub fn append(&mut self, next: BatchReceipts) {
        self.parts.extend(next.parts);
    }

    /// Receipt `i`: a whole batch receipt (§5.3) that verifies alone.
    pub fn get(&self, mut i: usize) -> Option<&[u8]> {
        for part in &self.parts {
            match i.checked_sub(part.ends.len()) {
                None => return part.get(i),
                Some(rest) => i = rest,
            }
        }
        None
    }

    /// The receipts in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.parts
            .iter()
            .flat_map(|p| (0..p.ends.len()).map(|i| p.get(i).unwrap_or_default()))
    }

    /// The receipts, one vector each.
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }
}

/// Signs many payloads at once: returns one batch receipt per payload, in order (§5.1).
/// Takes the payloads or references to them.
pub fn sign_batch<P: Borrow<ReceiptPayload>>(
    payloads: &[P],
    key: &SecretKey,
    issued_at: u64,
) -> Result<Vec<Vec<u8>>, ReceiptError> {
    if payloads.len() as u64 > MAX_LEAVES {
        return Err(too_many());
    }
    let mut signer = BatchSigner::with_capacity(payloads.len());
    for p in payloads {
        signer.push(p.borrow())?;
    }
    Ok(signer.sign(key, issued_at)?.to_vecs())
}

/// Signs the payloads of one group commit (§12.4.2): a single receipt (§4) when the group
/// holds one, else one batch receipt (§5.3) each under one signed root, in order.
pub fn sign_group(
    payloads: &[&EncodedPayload],
    key: &SecretKey,
    issued_at: u64,
) -> Result<Vec<Vec<u8>>, ReceiptError> {
    match payloads {
        [] => Err(too_many()),
        [one] => Ok(vec![one.sign(key)?]),
        many => {
            let mut signer = BatchSigner::with_capacity(many.len());
            for p in many {
                signer.push_encoded(p)?;
            }
            Ok(signer.sign(key, issued_at)?.to_vecs())
        }
    }
}

/// Appends the deterministic encoding of a batch receipt (§5.3) to `out`, written head by
/// head: it holds only an array, unsigned integers and byte strings, and no map to sort, so
/// the value tree the generic encoder builds would only cost time.
pub(super) fn encode_batch_receipt(
    out: &mut Vec<u8>,
    leaf: &[u8],
    index: u64,
    path: &[Digest32],
    signed_root: &[u8],
) {
    use crate::cbor::write::{array, bytes, uint};
    array(out, 5);
    uint(out, BATCH_VERSION);
    bytes(out, leaf);
    uint(out, index);
    array(out, path.len());
    for h in path {
        bytes(out, h);
    }
    bytes(out, signed_root);
}
