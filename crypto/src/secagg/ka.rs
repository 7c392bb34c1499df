//! X25519 key agreement (RFC 7748) for secure aggregation (§9.4.1).
//!
//! Every agreement checks `was_contributory()`: a peer key of small order yields the
//! all-zero secret, which would make the derived mask or share key public.

use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use super::SecaggCryptoError;
use super::rng::SecretRng;

/// An X25519 private key. Zeroized on drop (x25519-dalek's `StaticSecret`), never printed,
/// not `Clone`.
pub struct KaSecretKey(StaticSecret);

/// An X25519 public key as sent on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KaPublicKey(pub [u8; 32]);

/// The result of one agreement. Zeroized on drop.
pub struct SharedSecret(Zeroizing<[u8; 32]>);

impl KaSecretKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut dyn SecretRng) -> Result<Self, SecaggCryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut())?;
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// A key from 32 private bytes (clamped by X25519 itself).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(StaticSecret::from(*bytes))
    }

    /// The matching public key.
    pub fn public_key(&self) -> KaPublicKey {
        KaPublicKey(XPublic::from(&self.0).to_bytes())
    }

    /// X25519 with `peer`; refuses a non-contributory (all-zero) result.
    pub fn agree(&self, peer: &KaPublicKey) -> Result<SharedSecret, SecaggCryptoError> {
        let shared = self.0.diffie_hellman(&XPublic::from(peer.0));
        if !shared.was_contributory() {
            return Err(SecaggCryptoError::NonContributory);
        }
        Ok(SharedSecret(Zeroizing::new(shared.to_bytes())))
    }
}

/// Bare RFC 7748 X25519 on raw bytes, with no checks: the baseline that benchmarks time
/// key agreement against. Protocol code uses [`KaSecretKey::agree`].
pub fn raw_x25519(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(k, u)
}

/// Bare fixed-base X25519 public-key derivation, the baseline for key generation.
pub fn raw_x25519_base(k: [u8; 32]) -> [u8; 32] {
    XPublic::from(&StaticSecret::from(k)).to_bytes()
}

impl SharedSecret {
    /// The 32 shared bytes (input keying material for [`super::kdf`]).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for KaSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KaSecretKey(<redacted>)")
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

impl std::fmt::Debug for KaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KaPublicKey({})", hex::encode(self.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_section_6_1() {
        let alice = KaSecretKey::from_bytes(
            &hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let bob = KaSecretKey::from_bytes(
            &hex::decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            hex::encode(alice.public_key().0),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let k1 = alice.agree(&bob.public_key()).unwrap();
        let k2 = bob.agree(&alice.public_key()).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        assert_eq!(
            hex::encode(k1.as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn small_order_peer_is_refused() {
        let me = KaSecretKey::from_bytes(&[9u8; 32]);
        // 0 and 1 are points of small order on Curve25519.
        assert_eq!(
            me.agree(&KaPublicKey([0u8; 32])).unwrap_err(),
            SecaggCryptoError::NonContributory
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            me.agree(&KaPublicKey(one)).unwrap_err(),
            SecaggCryptoError::NonContributory
        );
        assert_eq!(format!("{me:?}"), "KaSecretKey(<redacted>)");
    }
}
