//! ChaCha20-Poly1305 (RFC 8439) for Shamir shares in transit (§9.4.5).
//!
//! Each key comes from [`super::kdf::share_encryption_key`] and seals exactly one message
//! (one sender, one recipient, one round), so the nonce is the fixed all-zero value.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use super::SecaggCryptoError;
use super::kdf::ShareKey;

/// Bytes the tag adds to a plaintext.
pub const TAG_LEN: usize = 16;

fn cipher(k: &ShareKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(k.as_bytes().into())
}

/// The fixed all-zero nonce: each key seals exactly one message.
fn nonce() -> Nonce {
    Nonce::from([0u8; 12])
}

/// Encrypts `plaintext` with associated data `aad`; returns ciphertext || tag.
pub fn seal(k: &ShareKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SecaggCryptoError> {
    cipher(k)
        .encrypt(
            &nonce(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SecaggCryptoError::Decrypt)
}

/// Decrypts and authenticates; the error says nothing about why it failed.
pub fn open(
    k: &ShareKey,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecaggCryptoError> {
    cipher(k)
        .decrypt(
            &nonce(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecaggCryptoError::Decrypt)
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
