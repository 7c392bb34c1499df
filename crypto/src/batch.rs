//! Batch verification that agrees exactly with one-by-one `verify_strict` (§6.4).
//!
//! A random-linear-combination batch check cannot see a torsion component in `R` or `A`
//! (the combination cancels it with probability up to 1/2), while `verify_strict` rejects
//! such signatures. So before the batch equation runs, every item must pass the checks that
//! make the two agree: a 64-byte signature with canonical `s`, `R` a canonical encoding of a
//! point in the prime-order subgroup, `A` in the prime-order subgroup. Items that fail a
//! pre-check, and every item of a batch whose equation fails, are settled one by one with
//! `verify_strict`, so each result is exactly what single verification says.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;

use crate::identity::{IdentityError, PublicKey, parse_signature};

/// One signature to check.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The signed message.
    pub message: &'a [u8],
    /// The signature bytes as received (any length; 64 is the only valid one).
    pub signature: &'a [u8],
    /// The key that must have made it.
    pub key: &'a PublicKey,
}

/// Verifies every item; `result[i]` is exactly `items[i].key.verify(..)`.
pub fn verify_all(items: &[Item<'_>]) -> Vec<Result<(), IdentityError>> {
    let mut results: Vec<Option<Result<(), IdentityError>>> = vec![None; items.len()];
    let mut batch_idx = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match batchable(item) {
            Some(sig) => {
                batch_idx.push(i);
                messages.push(item.message);
                signatures.push(sig);
                keys.push(*item.key.inner());
            }
            None => results[i] = Some(item.key.verify(item.message, item.signature)),
        }
    }
    let batch_ok =
        !batch_idx.is_empty() && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    for &i in &batch_idx {
        results[i] = Some(if batch_ok {
            Ok(())
        } else {
            items[i].key.verify(items[i].message, items[i].signature)
        });
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(IdentityError::BadSignature)))
        .collect()
}

/// The pre-checks under which the batch equation and `verify_strict` agree.
fn batchable(item: &Item<'_>) -> Option<ed25519_dalek::Signature> {
    let sig = parse_signature(item.signature).ok()?;
    let r_bytes = sig.r_bytes();
    let r = CompressedEdwardsY(*r_bytes).decompress()?;
    // Canonical encoding of R: re-compressing must give the same bytes.
    if r.compress().as_bytes() != r_bytes || !r.is_torsion_free() {
        return None;
    }
    let a = CompressedEdwardsY(item.key.to_bytes()).decompress()?;
    if !a.is_torsion_free() {
        return None;
    }
    // Canonical s (s < l); verify_batch would reject a non-canonical one anyway.
    let s: Option<curve25519_dalek::Scalar> =
        curve25519_dalek::Scalar::from_canonical_bytes(*sig.s_bytes()).into();
    s.map(|_| sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;

    #[test]
    fn agrees_with_single_verification() {
        let keys: Vec<SecretKey> = (0..5u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]))
            .collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<Vec<u8>> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign(m).0.to_vec())
            .collect();
        let items = |sigs: &Vec<Vec<u8>>| -> Vec<Result<(), IdentityError>> {
            let items: Vec<Item<'_>> = (0..5)
                .map(|i| Item {
                    message: &msgs[i],
                    signature: &sigs[i],
                    key: &pubs[i],
                })
                .collect();
            verify_all(&items)
        };
        assert!(items(&sigs).iter().all(|r| r.is_ok()));
        sigs[2][40] ^= 1;
        sigs[4].truncate(10);
        let got = items(&sigs);
        let want: Vec<_> = (0..5).map(|i| pubs[i].verify(&msgs[i], &sigs[i])).collect();
        assert_eq!(got, want);
        assert!(got[2].is_err() && got[4].is_err() && got[0].is_ok());
    }
}
