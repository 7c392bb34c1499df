//! Secure-aggregation primitives (§9).
//!
//! The building blocks of SecAgg / SecAgg+ (Bonawitz et al., CCS 2017; Bell et al.,
//! CCS 2020), as pure functions and value types:
//!
//! - [`ka`]: X25519 key agreement that refuses non-contributory results (§9.4.1);
//! - [`kdf`]: HKDF-SHA256 with one domain-separated `info` string per use (§9.4.2);
//! - [`prg`]: mask expansion with AES-128-CTR, fused with the modular addition (§9.4.3);
//! - [`shamir`]: t-of-n Shamir sharing over the Ed25519 scalar field (§9.4.4);
//! - [`aead`]: ChaCha20-Poly1305 for shares in transit (§9.4.5);
//! - [`rng`]: the randomness interface the protocol draws from.
//!
//! Every secret (seeds, private keys, shares, derived keys) is a newtype that zeroizes on
//! drop and prints as `<redacted>`.

pub mod aead;
pub mod ka;
pub mod kdf;
pub mod prg;
pub mod rng;
pub mod shamir;

/// Errors of the secure-aggregation primitives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecaggCryptoError {
    /// X25519 produced the all-zero shared secret: the peer's key is of small order (§9.4.1).
    #[error("X25519 result is not contributory: the peer's public key has small order")]
    NonContributory,
    /// HKDF was asked for an output length it cannot produce.
    #[error("HKDF-SHA256 cannot produce {0} bytes")]
    KdfLength(usize),
    /// An AEAD ciphertext did not authenticate (opaque on purpose).
    #[error("share ciphertext failed to authenticate")]
    Decrypt,
    /// Shamir parameters are out of range.
    #[error("invalid sharing parameters: {0}")]
    SharingParameters(&'static str),
    /// Shamir shares given to reconstruction are unusable (duplicate or zero x-coordinate,
    /// or too few).
    #[error("invalid shares: {0}")]
    Shares(&'static str),
    /// A share value is not the canonical encoding of a scalar.
    #[error("share value is not a canonical scalar encoding")]
    NonCanonicalShare,
    /// The modulus bit width is outside `1..=64`.
    #[error("modulus of 2^{0} is outside 2^1..=2^64")]
    ModulusBits(u32),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomFailure),
}

/// A failure of the random source, kept as text so that the error stays `Clone + Eq`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("random source failed: {0}")]
pub struct RandomFailure(pub String);

#[cfg(feature = "os-rng")]
impl From<crate::random::RandomError> for SecaggCryptoError {
    fn from(e: crate::random::RandomError) -> Self {
        Self::Random(RandomFailure(e.to_string()))
    }
}
