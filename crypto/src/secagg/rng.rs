//! The randomness interface of secure aggregation (§9.4.6).
//!
//! Protocol code draws every random value (key-agreement keys, seeds, polynomial
//! coefficients) through [`SecretRng`], so a simulation or a test-vector generator can run
//! the whole protocol from a seed while a node uses the operating system's CSPRNG.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use zeroize::Zeroizing;

use super::SecaggCryptoError;
use super::kdf;

/// A source of secret randomness.
pub trait SecretRng {
    /// Fills `out` with random bytes.
    fn fill_bytes(&mut self, out: &mut [u8]) -> Result<(), SecaggCryptoError>;
}

/// The operating system's CSPRNG (`getrandom`); the only source a node uses.
#[cfg(feature = "os-rng")]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

#[cfg(feature = "os-rng")]
impl SecretRng for OsRng {
    fn fill_bytes(&mut self, out: &mut [u8]) -> Result<(), SecaggCryptoError> {
        crate::random::fill(out)?;
        Ok(())
    }
}

/// A deterministic generator: AES-128-CTR keyed by HKDF-SHA256 of a 32-byte seed with the
/// label `quorate/v1/secagg/deterministic-rng` (§9.4.6).
///
/// For test vectors, fuzzing and reproducible simulations only: anyone who knows the seed
/// knows every secret drawn from it.
pub struct DeterministicRng {
    cipher: ctr::Ctr128BE<Aes128>,
}

impl DeterministicRng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 16]);
        // 16 bytes is always within HKDF's limit.
        let _ = kdf::hkdf(&[], seed, &[kdf::LABEL_DETERMINISTIC_RNG], key.as_mut());
        let cipher = ctr::Ctr128BE::<Aes128>::new(&(*key).into(), &[0u8; 16].into());
        Self { cipher }
    }
}

impl SecretRng for DeterministicRng {
    fn fill_bytes(&mut self, out: &mut [u8]) -> Result<(), SecaggCryptoError> {
        out.fill(0);
        self.cipher.try_apply_keystream(out).map_err(|_| {
            SecaggCryptoError::Random(super::RandomFailure("keystream exhausted".into()))
        })
    }
}

impl std::fmt::Debug for DeterministicRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeterministicRng(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_rng_is_deterministic_and_seed_dependent() {
        let mut a = DeterministicRng::from_seed(&[1; 32]);
        let mut b = DeterministicRng::from_seed(&[1; 32]);
        let mut c = DeterministicRng::from_seed(&[2; 32]);
        let (mut x, mut y, mut z) = ([0u8; 40], [0u8; 40], [0u8; 40]);
        a.fill_bytes(&mut x).unwrap();
        b.fill_bytes(&mut y).unwrap();
        c.fill_bytes(&mut z).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, z);
        // Successive draws continue the stream rather than repeating it.
        a.fill_bytes(&mut y).unwrap();
        assert_ne!(x, y);
        assert_eq!(format!("{a:?}"), "DeterministicRng(<redacted>)");
    }

    #[test]
    fn os_rng_fills() {
        let mut x = [0u8; 32];
        OsRng.fill_bytes(&mut x).unwrap();
        assert_ne!(x, [0u8; 32]);
    }
}
