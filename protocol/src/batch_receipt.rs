//! Batch receipts (§5): one signature over an RFC 9162 Merkle root covering many receipt
//! payloads; each result carries its payload, its inclusion proof and the signed root.

use ciborium::value::Value;
use quorate_crypto::KeyId;
use quorate_crypto::merkle::{self, MAX_LEAVES};
use quorate_crypto::tensor_digest::Digest32;

use crate::cbor::{self, read};
use crate::cose::{self, UncheckedSign1};
use crate::receipt::{MAX_RECEIPT_LEN, ReceiptError, ReceiptPayload, UncheckedReceipt};

mod sign;

pub use sign::{BatchReceipts, BatchSigner, SignedBatch, sign_batch, sign_group};

/// Content type of a signed batch root (§5.2).
pub const BATCH_ROOT_CONTENT_TYPE: &str = "application/vnd.quorate.batch-root+cbor";
/// Format version of batch receipts and roots.
pub const BATCH_VERSION: u64 = 1;
/// Longest inclusion proof: log2 of [`MAX_LEAVES`].
pub const MAX_PROOF_LEN: usize = 20;

/// The signed root of a batch (§5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRoot {
    /// RFC 9162 Merkle tree head over the leaf payloads.
    pub root: Digest32,
    /// Number of leaves.
    pub size: u64,
    /// Unix time in seconds when the node signed.
    pub issued_at: u64,
}

impl BatchRoot {
    fn to_cbor(&self) -> Result<Vec<u8>, ReceiptError> {
        Ok(cbor::encode(&Value::Map(vec![
            (read::int(1), read::int(BATCH_VERSION)),
            (read::int(2), Value::Bytes(self.root.to_vec())),
            (read::int(3), read::int(self.size)),
            (read::int(4), read::int(self.issued_at)),
        ]))?)
    }

    fn from_cbor(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let v = cbor::decode_deterministic(bytes, MAX_RECEIPT_LEN)?;
        let m = read::int_map(&v, "batch root", &[1, 2, 3, 4])?;
        if m.len() != 4 {
            return Err(ReceiptError::Payload(
                "batch root needs fields 1, 2, 3 and 4".into(),
            ));
        }
        let version = read::uint(m[0].1, "version")?;
        if version != BATCH_VERSION {
            return Err(ReceiptError::Version(version));
        }
        let size = read::uint(m[2].1, "size")?;
        if size == 0 || size > MAX_LEAVES {
            return Err(ReceiptError::Payload(format!(
                "batch size {size} outside 1..={MAX_LEAVES}"
            )));
        }
        Ok(Self {
            root: read::bytes_n(m[1].1, "root")?,
            size,
            issued_at: read::uint(m[3].1, "time")?,
        })
    }
}

/// A batch receipt whose inclusion proof checks out and whose root signature is unchecked.
#[derive(Debug, Clone)]
pub struct UncheckedBatchReceipt {
    /// The leaf payload, a full receipt payload.
    pub payload: ReceiptPayload,
    /// The signed root (signature still to be checked).
    pub root_sign1: UncheckedSign1,
    /// The decoded root.
    pub root: BatchRoot,
    /// The leaf's index in the batch.
    pub index: u64,
}

/// Parses a batch receipt and checks its inclusion proof (§5.3 steps 1–5).
pub fn parse(bytes: &[u8]) -> Result<UncheckedBatchReceipt, ReceiptError> {
    let v = cbor::decode_deterministic(bytes, MAX_RECEIPT_LEN)?;
    let parts = read::array(&v, "batch receipt", 5)?;
    let [version, leaf, index, path, signed_root] = parts else {
        return Err(ReceiptError::Payload(
            "batch receipt is [version, leaf, index, path, root]".into(),
        ));
    };
    let version = read::uint(version, "version")?;
    if version != BATCH_VERSION {
        return Err(ReceiptError::Version(version));
    }
    let leaf = read::bytes_range(leaf, "leaf", 1, MAX_RECEIPT_LEN)?;
    let index = read::uint(index, "index")?;
    let path: Vec<Digest32> = read::array(path, "path", MAX_PROOF_LEN)?
        .iter()
        .map(|h| read::bytes_n::<32>(h, "path"))
        .collect::<Result<_, _>>()?;
    let signed_root = read::bytes_range(signed_root, "root", 1, MAX_RECEIPT_LEN)?;
    // The root may carry the batch receipt's inclusion receipts in header 394 (§18.4).
    let root_sign1 = cose::parse_receipt(signed_root, BATCH_ROOT_CONTENT_TYPE, MAX_RECEIPT_LEN)?;
    let root = BatchRoot::from_cbor(&root_sign1.payload)?;
    let payload = ReceiptPayload::from_cbor(leaf)?;
    let computed = merkle::root_from_inclusion(&merkle::leaf_hash(leaf), index, root.size, &path);
    if computed != Some(root.root) {
        return Err(ReceiptError::Payload(format!(
            "inclusion proof for leaf {index} of {} does not lead to the signed root",
            root.size
        )));
    }
    Ok(UncheckedBatchReceipt {
        payload,
        root_sign1,
        root,
        index,
    })
}

/// A single or batch receipt, told apart by its first byte (§5.4).
#[derive(Debug, Clone)]
pub enum AnyReceipt {
    /// A COSE_Sign1 receipt (§4).
    Single(UncheckedReceipt),
    /// A batch receipt (§5).
    Batch(UncheckedBatchReceipt),
}

impl AnyReceipt {
    /// The attested payload.
    pub fn payload(&self) -> &ReceiptPayload {
        match self {
            AnyReceipt::Single(r) => &r.payload,
            AnyReceipt::Batch(b) => &b.payload,
        }
    }
    /// The attested payload, taken.
    pub fn into_payload(self) -> ReceiptPayload {
        match self {
            AnyReceipt::Single(r) => r.payload,
            AnyReceipt::Batch(b) => b.payload,
        }
    }
    /// The COSE_Sign1 whose signature vouches for the payload.
    pub fn sign1(&self) -> &UncheckedSign1 {
        match self {
            AnyReceipt::Single(r) => &r.sign1,
            AnyReceipt::Batch(b) => &b.root_sign1,
        }
    }
    /// The signer's key id.
    pub fn kid(&self) -> KeyId {
        self.sign1().kid
    }
}

/// Parses either form: tag 18 (0xd2) starts a COSE_Sign1, a 5-array (0x85) a batch receipt.
pub fn parse_any(bytes: &[u8]) -> Result<AnyReceipt, ReceiptError> {
    match bytes.first() {
        Some(0x85) => parse(bytes).map(AnyReceipt::Batch),
        _ => crate::receipt::parse(bytes).map(AnyReceipt::Single),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    /// Batch receipts as the generic encoders give them, one leaf at a time: the payload
    /// map and the receipt array through the value-tree encoder of §1.3, each proof by the
    /// recursive PATH of RFC 9162 §2.1.3.1, the root by MTH.
    fn reference_batch(payloads: &[ReceiptPayload], key: &SecretKey, t: u64) -> Vec<Vec<u8>> {
        let leaves: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| p.to_cbor_by_value().unwrap())
            .collect();
        let hashes: Vec<Digest32> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
        let root = BatchRoot {
            root: merkle::root(&hashes),
            size: leaves.len() as u64,
            issued_at: t,
        };
        let signed_root =
            cose::sign(root.to_cbor().unwrap(), BATCH_ROOT_CONTENT_TYPE, key).unwrap();
        leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| {
                let path = merkle::inclusion_proof(&hashes, i).unwrap();
                cbor::encode(&Value::Array(vec![
                    read::int(BATCH_VERSION),
                    Value::Bytes(leaf.clone()),
                    read::int(i as u64),
                    Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
                    Value::Bytes(signed_root.clone()),
                ]))
                .unwrap()
            })
            .collect()
    }

    fn payload(i: usize) -> ReceiptPayload {
        use crate::receipt::{Commitment, JobKind};
        let name = |s: &str| s.repeat(1 + i % 3);
        ReceiptPayload {
            job_id: [i as u8; 16],
            nonce: vec![7; 16 + i % 49],
            kind: JobKind::Local,
            model_digest: [3; 32],
            inputs: (0..1 + i % 2)
                .map(|k| Commitment {
                    name: name(&format!("in{k}")),
                    digest: [(i + k) as u8; 32],
                    salted: i.is_multiple_of(2),
                })
                .collect(),
            outputs: vec![Commitment {
                name: name("probabilities"),
                digest: [!(i as u8); 32],
                salted: true,
            }],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime 1.31.1".into(),
            issued_at: 1_700_000_000 + i as u64,
            previous: i.is_multiple_of(3).then_some([1; 32]),
            policy: i.is_multiple_of(5).then_some([2; 32]),
        }
    }

    /// A group of one is signed as a single receipt, byte for byte what signing the payload
    /// gives; a larger group as the batch receipts `sign_batch` gives, each verifying alone.
    #[test]
    fn groups_sign_as_one_receipt_or_a_batch() {
        let key = SecretKey::from_seed(&[9; 32]);
        let payloads: Vec<ReceiptPayload> = (0..5).map(payload).collect();
        let encoded: Vec<_> = payloads.iter().map(|p| p.encode().unwrap()).collect();
        let one = sign_group(&[&encoded[0]], &key, 5).unwrap();
        assert_eq!(one, vec![payloads[0].sign(&key).unwrap()]);
        let refs: Vec<_> = encoded.iter().collect();
        let group = sign_group(&refs, &key, 5).unwrap();
        assert_eq!(group, sign_batch(&payloads, &key, 5).unwrap());
        for (r, p) in group.iter().zip(&payloads) {
            let AnyReceipt::Batch(b) = parse_any(r).unwrap() else {
                panic!("a group of five signs batch receipts")
            };
            assert_eq!(&b.payload, p);
            assert!(b.root_sign1.verify(&key.public_key()).is_ok());
        }
        assert!(sign_group(&[], &key, 5).is_err());
    }

    /// Signing a batch gives, byte for byte, what the generic encoders give: the receipts of
    /// given payloads, key and time never change (§5.3), whatever the batch's size.
    #[test]
    fn batch_receipts_equal_the_generic_encoding() {
        let key = SecretKey::from_seed(&[9; 32]);
        for n in [1usize, 2, 3, 5, 8, 13, 64, 100, 1000] {
            let payloads: Vec<ReceiptPayload> = (0..n).map(payload).collect();
            let expected = reference_batch(&payloads, &key, 1_763_900_000);
            let refs: Vec<&ReceiptPayload> = payloads.iter().collect();
            assert_eq!(
                sign_batch(&refs, &key, 1_763_900_000).unwrap(),
                expected,
                "n = {n}"
            );
            // More payloads than announced, and fewer: the tree is then built at signing.
            for capacity in [1, n + 3] {
                let mut signer = BatchSigner::with_capacity(capacity);
                for p in &payloads {
                    signer.push(p).unwrap();
                }
                let receipts = signer.sign(&key, 1_763_900_000).unwrap();
                assert_eq!(receipts.len(), n);
                assert_eq!(receipts.get(n), None);
                assert!(receipts.iter().eq(expected.iter().map(Vec::as_slice)));
            }
        }
        let none: [ReceiptPayload; 0] = [];
        assert!(sign_batch(&none, &key, 1).is_err());
        assert!(BatchSigner::default().sign(&key, 1).is_err());
    }

    /// Receipts written a range at a time (as a large batch writes them on two threads) and
    /// put back together are those of the whole batch, in order; a range past the end is
    /// cut at the end.
    #[test]
    fn receipts_written_by_ranges_are_those_of_the_whole_batch() {
        let key = SecretKey::from_seed(&[9; 32]);
        let n = 37;
        let payloads: Vec<ReceiptPayload> = (0..n).map(payload).collect();
        let expected = reference_batch(&payloads, &key, 7);
        let mut signer = BatchSigner::with_capacity(n);
        for p in &payloads {
            signer.push(p).unwrap();
        }
        let signed = signer.sign_root(&key, 7).unwrap();
        assert_eq!(signed.len(), n);
        for cuts in [vec![0, n], vec![0, 1, n], vec![0, 18, 18, 30, n + 5]] {
            let mut all = signed.receipts(cuts[0]..cuts[1]);
            for w in cuts[1..].windows(2) {
                all.append(signed.receipts(w[0]..w[1]));
            }
            assert_eq!(all.len(), n, "cuts {cuts:?}");
            assert!(all.iter().eq(expected.iter().map(Vec::as_slice)));
            assert!((0..n).all(|i| all.get(i) == Some(expected[i].as_slice())));
            assert_eq!(all.get(n), None);
            assert_eq!(all, signed.receipts(0..n));
        }
        assert!(signed.receipts(n..n + 3).is_empty());
    }

    /// The head-by-head encoding is exactly what the deterministic encoder of §1.3 gives,
    /// across the head widths a batch can reach (one-byte to eight-byte arguments).
    #[test]
    fn direct_encoding_equals_the_deterministic_encoder() {
        for (leaf_len, index, path_len, root_len) in [
            (0usize, 0u64, 0usize, 0usize),
            (23, 23, 1, 24),
            (24, 24, 20, 255),
            (300, 255, 7, 256),
            (70_000, 65_536, 3, 100),
            (1, u64::from(u32::MAX) + 1, 2, 1),
        ] {
            let leaf = vec![0xa5; leaf_len];
            let root = vec![0x5a; root_len];
            let path: Vec<Digest32> = (0..path_len).map(|i| [i as u8; 32]).collect();
            let expected = cbor::encode(&Value::Array(vec![
                read::int(BATCH_VERSION),
                Value::Bytes(leaf.clone()),
                read::int(index),
                Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
                Value::Bytes(root.clone()),
            ]))
            .unwrap();
            let mut direct = vec![0xee];
            sign::encode_batch_receipt(&mut direct, &leaf, index, &path, &root);
            assert_eq!(
                direct[1..],
                expected,
                "leaf {leaf_len}, index {index}, path {path_len}, root {root_len}"
            );
        }
    }
}
