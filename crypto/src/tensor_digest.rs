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
