//! Tensor commitments (§3): SHA-256 over a domain tag and a canonical tensor encoding.
//!
//! The encoding is `dtype (u8) || rank (u8) || dims (u64 LE each) || element bytes (LE)`.
//! The plain form suits high-entropy data; the salted form puts a 32-byte salt before the
//! encoding so that a receipt alone does not let anyone test guesses of a low-entropy input
//! (a patient's features). The salt is revealed only together with the tensor.

use sha2::{Digest, Sha256};

/// Domain tag of the plain tensor commitment (§3.2).
pub const TENSOR_TAG: &[u8] = b"quorate/v1/tensor\0";
/// Domain tag of the salted tensor commitment (§3.3).
pub const SALTED_TENSOR_TAG: &[u8] = b"quorate/v1/tensor-salted\0";
/// Length of a commitment salt.
pub const SALT_LEN: usize = 32;

/// A 32-byte SHA-256 digest.
pub type Digest32 = [u8; 32];

/// Room for the tag, salt, type, rank and 8 dimensions of a commitment's encoding.
const HEAD_ROOM: usize = SALTED_TENSOR_TAG.len() + SALT_LEN + 2 + 8 * 8;

/// Commits to a tensor given its canonical parts; `salt` selects the salted form.
///
/// The caller guarantees `data.len() == product(shape) * element size` and `shape.len() <= 255`
/// (the protocol's `Tensor` type enforces both).
pub fn tensor_digest(
    dtype: u8,
    shape: &[u64],
    data: &[u8],
    salt: Option<&[u8; SALT_LEN]>,
) -> Digest32 {
    // The bytes before the data, gathered so the hash takes them in one call: small
    // updates one by one cost more than their hashing (a batch commits to thousands of
    // small tensors, §5). Ranks beyond the protocol's (MAX_RANK is 8) take the long way.
    let mut head = [0u8; HEAD_ROOM];
    let mut at = 0;
    let tag: &[u8] = if salt.is_some() {
        SALTED_TENSOR_TAG
    } else {
        TENSOR_TAG
    };
    for part in [
        tag,
        salt.map_or(&[][..], |s| &s[..]),
        &[dtype, shape.len() as u8],
    ] {
        head[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let mut h = Sha256::new();
    if head.len() - at >= 8 * shape.len() {
        for d in shape {
            head[at..at + 8].copy_from_slice(&d.to_le_bytes());
            at += 8;
        }
        h.update(&head[..at]);
    } else {
        h.update(&head[..at]);
        for d in shape {
            h.update(d.to_le_bytes());
        }
    }
    h.update(data);
    h.finalize().into()
}

/// Plain SHA-256, for model files (so `sha256sum` agrees) and stored receipts (§3.4, §4.5).
pub fn sha256(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

/// SHA-256 of `tag || data`, for digests of models, policies and receipts (§3.4).
pub fn tagged_digest(tag: &[u8], data: &[u8]) -> Digest32 {
    Sha256::new()
        .chain_update(tag)
        .chain_update(data)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding of §3.2 and §3.3 fed to SHA-256 piece by piece, as the spec lists it.
    fn by_parts(dtype: u8, shape: &[u64], data: &[u8], salt: Option<&[u8; SALT_LEN]>) -> Digest32 {
        let mut h = Sha256::new();
        match salt {
            Some(salt) => {
                h.update(SALTED_TENSOR_TAG);
                h.update(salt);
            }
            None => h.update(TENSOR_TAG),
        }
        h.update([dtype, shape.len() as u8]);
        for d in shape {
            h.update(d.to_le_bytes());
        }
        h.update(data);
        h.finalize().into()
    }

    #[test]
    fn gathered_head_is_the_encoding_piece_by_piece() {
        for rank in [0usize, 1, 2, 8, 9, 40] {
            let shape: Vec<u64> = (0..rank as u64).map(|d| d * 0x0102_0304_0506 + 1).collect();
            for salt in [None, Some(&[7u8; SALT_LEN])] {
                for len in [0usize, 5, 200] {
                    let data = vec![0x5a; len];
                    assert_eq!(
                        tensor_digest(3, &shape, &data, salt),
                        by_parts(3, &shape, &data, salt),
                        "rank {rank}, len {len}, salted {}",
                        salt.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn salt_and_every_field_change_the_digest() {
        let base = tensor_digest(1, &[1, 2], &[0u8; 8], None);
        assert_ne!(base, tensor_digest(2, &[1, 2], &[0u8; 8], None));
        assert_ne!(base, tensor_digest(1, &[2, 1], &[0u8; 8], None));
        assert_ne!(base, tensor_digest(1, &[1, 2], &[1u8; 8], None));
        assert_ne!(base, tensor_digest(1, &[1, 2], &[0u8; 8], Some(&[0u8; 32])));
        assert_ne!(
            tensor_digest(1, &[1, 2], &[0u8; 8], Some(&[0u8; 32])),
            tensor_digest(1, &[1, 2], &[0u8; 8], Some(&[1u8; 32]))
        );
    }
}
