//! ChaCha20-Poly1305 (RFC 8439) for Shamir shares in transit (§9.4.5).
//!
//! Each key comes from [`super::kdf::share_encryption_key`] and seals exactly one message
//! (one sender, one recipient, one round), so the nonce is the fixed all-zero value.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::SecaggCryptoError;
use super::kdf::ShareKey;

/// Bytes the tag adds to a plaintext.
pub const TAG_LEN: usize = 16;

fn key(k: &ShareKey) -> Result<LessSafeKey, SecaggCryptoError> {
    UnboundKey::new(&CHACHA20_POLY1305, k.as_bytes())
        .map(LessSafeKey::new)
        .map_err(|_| SecaggCryptoError::Decrypt)
}

/// Encrypts `plaintext` with associated data `aad`; returns ciphertext || tag.
pub fn seal(k: &ShareKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SecaggCryptoError> {
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    key(k)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| SecaggCryptoError::Decrypt)?;
    Ok(buf)
}

/// Decrypts and authenticates; the error says nothing about why it failed.
pub fn open(
    k: &ShareKey,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecaggCryptoError> {
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let n = key(k)?
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| SecaggCryptoError::Decrypt)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::secagg::kdf::share_encryption_key;

    #[test]
    fn roundtrip_and_tamper() {
        let k = share_encryption_key(&[1; 32], &[2; 32], 0, 1);
        let ct = seal(&k, b"ad", b"secret shares").unwrap();
        assert_eq!(ct.len(), 13 + TAG_LEN);
        assert_eq!(&open(&k, b"ad", &ct).unwrap()[..], b"secret shares");
        assert_eq!(
            open(&k, b"ae", &ct).unwrap_err(),
            SecaggCryptoError::Decrypt
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            open(&k, b"ad", &bad).unwrap_err(),
            SecaggCryptoError::Decrypt
        );
        let other = share_encryption_key(&[1; 32], &[2; 32], 1, 0);
        assert_eq!(
            open(&other, b"ad", &ct).unwrap_err(),
            SecaggCryptoError::Decrypt
        );
        assert_eq!(
            open(&k, b"ad", &ct[..10]).unwrap_err(),
            SecaggCryptoError::Decrypt
        );
    }
}
