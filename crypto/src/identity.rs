//! Ed25519 identities (§2): secret keys, public keys, key ids, signatures.
//!
//! Rules pinned here, for every caller:
//! - verification always gives `verify_strict`'s verdict (no malleable or small-order
//!   signatures; computed in `strict.rs`);
//! - a public key of small order ("weak") is rejected wherever one is loaded;
//! - secret keys zeroize on drop, print as `SecretKey(<redacted>)` and are not `Clone`.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Domain tag of key ids (§2.2).
pub const KEY_ID_TAG: &[u8] = b"quorate/v1/key-id\0";

/// Length in bytes of a [`KeyId`].
pub const KEY_ID_LEN: usize = 16;

/// Errors from loading keys or checking signatures.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The public key is a point of small order; nothing it signs means anything.
    #[error("weak public key: a point of small or mixed order is never a valid identity")]
    WeakKey,
    /// The bytes are not a valid encoding of an Ed25519 public key.
    #[error("malformed public key: not a valid Ed25519 point encoding")]
    MalformedKey,
    /// A PEM document did not hold an Ed25519 key of the expected kind.
    #[error("malformed key file: {0}")]
    MalformedPem(String),
    /// A signature is not 64 bytes.
    #[error("malformed signature: expected 64 bytes, found {0}")]
    SignatureLength(usize),
    /// The signature does not verify under the key (strict rules).
    #[error("bad signature")]
    BadSignature,
}

/// An Ed25519 signing key. Zeroized on drop; never printed.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Generates a fresh key from the operating system's CSPRNG.
    #[cfg(feature = "os-rng")]
    pub fn generate() -> Result<Self, crate::random::RandomError> {
        let seed = Zeroizing::new(crate::random::bytes::<32>()?);
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Builds a key from a 32-byte RFC 8032 seed (used by test-vector generators).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// A second owner of the same key, for a state machine that must own the key it signs
    /// with (a SecAgg member's job, §15.3). Deliberately a named call rather than `Clone`,
    /// so copies of a secret are visible where they are made; each copy zeroizes on drop.
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }

    /// Signs `message` (RFC 8032 PureEdDSA).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// PKCS#8 PEM encoding (RFC 8410), the format of key files (§2.1).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, IdentityError> {
        self.0
            .to_pkcs8_pem(Default::default())
            .map_err(|e| IdentityError::MalformedPem(e.to_string()))
    }

    /// Parses a PKCS#8 PEM Ed25519 private key; rejects a key whose public half is weak.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| IdentityError::MalformedPem(e.to_string()))?;
        PublicKey::from_bytes(key.verifying_key().as_bytes())?;
        Ok(Self(key))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Public keys that passed [`PublicKey::from_bytes`], by their exact encoding. Validation is
/// a pure function of those 32 bytes, so a hit returns what validating again would; only
/// accepted keys are kept, and at most [`accepted::CAPACITY`] (the map is emptied when full,
/// so a peer sending ever new keys costs memory for no more than that).
mod accepted {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use ed25519_dalek::VerifyingKey;

    /// Keys remembered at most.
    pub(super) const CAPACITY: usize = 1024;

    static KEYS: Mutex<BTreeMap<[u8; 32], VerifyingKey>> = Mutex::new(BTreeMap::new());

    fn keys() -> MutexGuard<'static, BTreeMap<[u8; 32], VerifyingKey>> {
        // The map holds only finished insertions: a panic elsewhere cannot leave it torn.
        KEYS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        keys().get(bytes).copied()
    }

    pub(super) fn keep(bytes: [u8; 32], key: VerifyingKey) {
        let mut keys = keys();
        if keys.len() >= CAPACITY {
            keys.clear();
        }
        keys.insert(bytes, key);
    }

    #[cfg(test)]
    pub(super) fn len() -> usize {
        keys().len()
    }
}

/// An Ed25519 public key that is known not to be weak.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes; rejects invalid encodings and small-order points.
    ///
    /// Keys already accepted are remembered (see [`accepted`]): the same few roster keys
    /// arrive in every message of a mesh, and the subgroup check costs about as much as a
    /// signature verification.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| IdentityError::MalformedKey)?;
        if let Some(key) = accepted::get(arr) {
            return Ok(Self(key));
        }
        let key = VerifyingKey::from_bytes(arr).map_err(|_| IdentityError::MalformedKey)?;
        // §2.1: small-order keys (is_weak) and keys with a torsion component are both
        // refused, so single and batch verification agree on every key we accept.
        if key.is_weak() || !key.to_edwards().is_torsion_free() {
            return Err(IdentityError::WeakKey);
        }
        accepted::keep(*arr, key);
        Ok(Self(key))
    }

    /// The 32-byte RFC 8032 encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key id (§2.2): the first 16 bytes of SHA-256(tag || key).
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_TAG)
            .chain_update(self.0.as_bytes())
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// Verifies with `verify_strict`: canonical `S`, no small-order `R` or `A`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let check = crate::strict::Check::new(&self.0, message, signature)?;
        // §6.2: the verdict of `verify_strict`, one field exponentiation cheaper (strict.rs).
        if crate::strict::verify_one(&check) {
            Ok(())
        } else {
            Err(IdentityError::BadSignature)
        }
    }

    /// SPKI PEM encoding (RFC 8410), the format of `.pub` files (§2.1).
    pub fn to_pem(&self) -> Result<String, IdentityError> {
        self.0
            .to_public_key_pem(Default::default())
            .map_err(|e| IdentityError::MalformedPem(e.to_string()))
    }

    /// Parses an SPKI PEM Ed25519 public key; rejects weak keys.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| IdentityError::MalformedPem(e.to_string()))?;
        Self::from_bytes(key.as_bytes())
    }

    pub(crate) fn inner(&self) -> &VerifyingKey {
        &self.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0.as_bytes()))
    }
}

pub(crate) fn parse_signature(bytes: &[u8]) -> Result<ed25519_dalek::Signature, IdentityError> {
    let arr: &[u8; 64] = bytes
        .try_into()
        .map_err(|_| IdentityError::SignatureLength(bytes.len()))?;
    Ok(ed25519_dalek::Signature::from_bytes(arr))
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// A key id (§2.2). Compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for KeyId {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl KeyId {
    /// Parses a key id from bytes of the right length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let sk = SecretKey::from_seed(&[7u8; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert_eq!(pk.verify(b"hello", &sig.0), Ok(()));
        assert_eq!(
            pk.verify(b"hellp", &sig.0),
            Err(IdentityError::BadSignature)
        );
        let mut bad = sig.0;
        bad[3] ^= 1;
        assert_eq!(pk.verify(b"hello", &bad), Err(IdentityError::BadSignature));
        assert_eq!(
            pk.verify(b"hello", &bad[..63]),
            Err(IdentityError::SignatureLength(63))
        );
    }

    #[test]
    fn weak_keys_are_rejected() {
        // The identity point (0, 1) and a point of order 8 from the CCTV edge-case set.
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(IdentityError::WeakKey)
        );
        let order8 =
            hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
                .unwrap();
        assert_eq!(PublicKey::from_bytes(&order8), Err(IdentityError::WeakKey));
        assert_eq!(
            PublicKey::from_bytes(&[1u8; 31]),
            Err(IdentityError::MalformedKey)
        );
    }

    #[test]
    fn accepted_keys_are_remembered_and_rejected_ones_never_are() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        // A valid point plus a point of order 8: not small order, but not torsion-free.
        let mixed = (ED25519_BASEPOINT_POINT * Scalar::from(5u8) + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        for _ in 0..2 {
            assert_eq!(PublicKey::from_bytes(&mixed), Err(IdentityError::WeakKey));
            assert!(accepted::get(&mixed).is_none());
        }
        let good = SecretKey::from_seed(&[11u8; 32]).public_key();
        let first = PublicKey::from_bytes(&good.to_bytes()).unwrap();
        assert!(accepted::get(&good.to_bytes()).is_some());
        let again = PublicKey::from_bytes(&good.to_bytes()).unwrap();
        assert_eq!((first, again), (good, good));
        let sig = SecretKey::from_seed(&[11u8; 32]).sign(b"m");
        assert_eq!(again.verify(b"m", &sig.0), Ok(()));
    }

    #[test]
    fn the_remembered_keys_are_bounded() {
        for i in 0..accepted::CAPACITY + 10 {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[31] = 0xa5;
            let key = SecretKey::from_seed(&seed).public_key();
            assert_eq!(PublicKey::from_bytes(&key.to_bytes()), Ok(key));
            assert!(accepted::len() <= accepted::CAPACITY);
        }
    }

    #[test]
    fn a_duplicate_signs_as_the_key_does() {
        let sk = SecretKey::from_seed(&[12u8; 32]);
        let copy = sk.duplicate();
        assert_eq!(copy.public_key(), sk.public_key());
        assert_eq!(copy.sign(b"m").0, sk.sign(b"m").0);
        assert_eq!(format!("{copy:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn pem_roundtrip() {
        let sk = SecretKey::from_seed(&[9u8; 32]);
        let pem = sk.to_pem().unwrap();
        let back = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let pub_pem = sk.public_key().to_pem().unwrap();
        assert_eq!(PublicKey::from_pem(&pub_pem).unwrap(), sk.public_key());
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert_eq!(format!("{sk:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn key_ids_differ_per_key() {
        let a = SecretKey::from_seed(&[1u8; 32]).public_key().key_id();
        let b = SecretKey::from_seed(&[2u8; 32]).public_key().key_id();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
    }
}
