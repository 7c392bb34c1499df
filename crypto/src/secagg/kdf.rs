//! HKDF-SHA256 (RFC 5869) with one domain-separated `info` label per use (§9.4.2).
//!
//! Every derivation is `HKDF-Expand(HKDF-Extract(salt, ikm), label || context, L)` where
//! `label` is one of the `LABEL_*` constants below (each ends in a NUL byte, so no label is
//! a prefix of another) and `context` is fixed-width: the 32-byte round digest and 32-bit
//! big-endian client indices.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::SecaggCryptoError;

/// Pairwise mask seed from an X25519 shared secret (§9.4.2).
pub const LABEL_PAIRWISE_MASK: &[u8] = b"quorate/v1/secagg/pairwise-mask\0";
/// Self-mask seed from the Shamir-shared self-mask secret (§9.4.2).
pub const LABEL_SELF_MASK: &[u8] = b"quorate/v1/secagg/self-mask\0";
/// Share-encryption key from an X25519 shared secret (§9.4.2).
pub const LABEL_SHARE_ENCRYPTION: &[u8] = b"quorate/v1/secagg/share-encryption\0";
/// X25519 mask-key private key from the Shamir-shared mask-key secret (§9.4.2).
pub const LABEL_MASK_KEY: &[u8] = b"quorate/v1/secagg/mask-key\0";
/// Seed of the SecAgg+ neighbour-graph permutation, from `U1` and the clients' committed
/// contributions (§9.4.2, §9.6).
pub const LABEL_GRAPH: &[u8] = b"quorate/v1/secagg/graph-contributed\0";
/// The deterministic generator of simulations and vectors (§9.4.6).
pub const LABEL_DETERMINISTIC_RNG: &[u8] = b"quorate/v1/secagg/deterministic-rng\0";
/// Domain tag of a client's commitment to its graph contribution (SHA-256, §9.4.2, §9.5.7).
pub const TAG_GRAPH_COMMITMENT: &[u8] = b"quorate/v1/secagg/graph-commitment\0";
/// Domain tag of the self-mask commitment (SHA-256, §9.4.2).
pub const TAG_SELF_MASK_COMMITMENT: &[u8] = b"quorate/v1/secagg/self-mask-commitment\0";

/// A 16-byte AES-128 key that seeds one mask (§9.4.3). Zeroized on drop.
pub struct PrgSeed(Zeroizing<[u8; 16]>);

impl PrgSeed {
    /// Wraps raw key bytes (test vectors, benchmarks).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for PrgSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrgSeed(<redacted>)")
    }
}

/// A 32-byte ChaCha20-Poly1305 key for one share ciphertext (§9.4.5). Zeroized on drop.
pub struct ShareKey(Zeroizing<[u8; 32]>);

impl ShareKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareKey(<redacted>)")
    }
}

/// HKDF-SHA256: extract with `salt`, expand with the concatenation of `info` into `out`.
pub fn hkdf(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), SecaggCryptoError> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out)
        .map_err(|_| SecaggCryptoError::KdfLength(out.len()))
}

/// The pairwise mask seed of clients `a` and `b` (§9.4.2): salt = round digest,
/// ikm = X25519 shared secret, info = label || min(a,b) || max(a,b).
pub fn pairwise_mask_seed(shared: &[u8; 32], round: &[u8; 32], a: u32, b: u32) -> PrgSeed {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut out = Zeroizing::new([0u8; 16]);
    let _ = hkdf(
        round,
        shared,
        &[LABEL_PAIRWISE_MASK, &lo.to_be_bytes(), &hi.to_be_bytes()],
        out.as_mut(),
    );
    PrgSeed(out)
}

/// The self-mask seed of client `owner` (§9.4.2): ikm = the 32-byte self-mask secret.
pub fn self_mask_seed(secret: &[u8; 32], round: &[u8; 32], owner: u32) -> PrgSeed {
    let mut out = Zeroizing::new([0u8; 16]);
    let _ = hkdf(
        round,
        secret,
        &[LABEL_SELF_MASK, &owner.to_be_bytes()],
        out.as_mut(),
    );
    PrgSeed(out)
}

/// The key that encrypts the shares `sender` gives `recipient` (§9.4.2). Each direction of
/// each pair gets its own key, so every key seals exactly one message.
pub fn share_encryption_key(
    shared: &[u8; 32],
    round: &[u8; 32],
    sender: u32,
    recipient: u32,
) -> ShareKey {
    let mut out = Zeroizing::new([0u8; 32]);
    let _ = hkdf(
        round,
        shared,
        &[
            LABEL_SHARE_ENCRYPTION,
            &sender.to_be_bytes(),
            &recipient.to_be_bytes(),
        ],
        out.as_mut(),
    );
    ShareKey(out)
}

/// The X25519 private key of `owner`'s mask key, derived from its Shamir-shared secret
/// (§9.4.2), so that reconstructing the secret reconstructs the key.
pub fn mask_key_private(secret: &[u8; 32], round: &[u8; 32], owner: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let _ = hkdf(
        round,
        secret,
        &[LABEL_MASK_KEY, &owner.to_be_bytes()],
        out.as_mut(),
    );
    out
}

/// The commitment to `owner`'s self-mask secret (§9.4.2):
/// SHA-256(tag || round || owner || secret). The server checks a reconstructed secret
/// against it before using it, so wrong shares cause an abort and never a wrong sum.
pub fn self_mask_commitment(secret: &[u8; 32], round: &[u8; 32], owner: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(TAG_SELF_MASK_COMMITMENT)
        .chain_update(round)
        .chain_update(owner.to_be_bytes())
        .chain_update(secret)
        .finalize()
        .into()
}

/// A client's commitment to its graph contribution `r` (§9.4.2, §9.5.1):
/// SHA-256(tag || round || owner || r).
pub fn graph_commitment(contribution: &[u8; 32], round: &[u8; 32], owner: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(TAG_GRAPH_COMMITMENT)
        .chain_update(round)
        .chain_update(owner.to_be_bytes())
        .chain_update(contribution)
        .finalize()
        .into()
}

/// The 32-byte seed of the SecAgg+ graph permutation (§9.4.2, §9.6): salt = round digest,
/// ikm = the digests of `U1`, of the commitment list and of the reveals (32 bytes each).
/// Every client of `U1` contributed to it, so no party that does not know every honest
/// client's contribution in advance can choose it (§17.3).
pub fn graph_seed(
    round: &[u8; 32],
    members_digest: &[u8; 32],
    commitments_digest: &[u8; 32],
    reveals_digest: &[u8; 32],
) -> [u8; 32] {
    let mut ikm = [0u8; 96];
    ikm[..32].copy_from_slice(members_digest);
    ikm[32..64].copy_from_slice(commitments_digest);
    ikm[64..].copy_from_slice(reveals_digest);
    let mut out = [0u8; 32];
    let _ = hkdf(round, &ikm, &[LABEL_GRAPH], &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf(&salt, &ikm, &[&info[..5], &info[5..]], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        assert_eq!(
            hkdf(&salt, &ikm, &[], &mut vec![0u8; 255 * 32 + 1]),
            Err(SecaggCryptoError::KdfLength(8161))
        );
    }

    #[test]
    fn labels_separate_uses() {
        let s = [5u8; 32];
        let r = [6u8; 32];
        let a = pairwise_mask_seed(&s, &r, 1, 2);
        assert_eq!(a.as_bytes(), pairwise_mask_seed(&s, &r, 2, 1).as_bytes());
        assert_ne!(a.as_bytes(), pairwise_mask_seed(&s, &r, 1, 3).as_bytes());
        assert_ne!(
            a.as_bytes(),
            pairwise_mask_seed(&s, &[7u8; 32], 1, 2).as_bytes()
        );
        assert_ne!(a.as_bytes()[..], self_mask_seed(&s, &r, 1).as_bytes()[..]);
        let k12 = share_encryption_key(&s, &r, 1, 2);
        let k21 = share_encryption_key(&s, &r, 2, 1);
        assert_ne!(k12.as_bytes(), k21.as_bytes());
        assert_ne!(*mask_key_private(&s, &r, 1), *mask_key_private(&s, &r, 2));
        assert_eq!(
            format!("{a:?}{k12:?}"),
            "PrgSeed(<redacted>)ShareKey(<redacted>)"
        );
    }
}
