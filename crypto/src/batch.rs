//! Verifying many signatures (§6.2): results exactly those of one-by-one `verify_strict`.
//!
//! An exact batch needs pre-checks: a random-linear-combination equation cannot see a
//! torsion component in `R` (the combination cancels it with probability up to 1/2, and
//! ed25519-dalek derives its coefficients from the inputs, so a signer can grind for that),
//! while `verify_strict` rejects such signatures; so every `R` would have to be shown
//! canonical, in the prime-order subgroup and not the identity before it entered the batch.
//! That subgroup check costs about as much as one single verification, and measured
//! (`cli/benches/attestation.rs`, `batch_verify_64`) the exact batch on two cores was slower
//! than single verification on two cores. So [`verify_all`] verifies one by one, split
//! across the cores, which agrees with `verify_strict` by construction; the items only share
//! the inversion that compresses their recomputed `R` (strict.rs).
//! [`all_authentic`] keeps the plain batch equation for the one place where the difference
//! does not matter (§9.8.3).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use crate::identity::{IdentityError, PublicKey, parse_signature};
use crate::strict::Check;

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

/// Items per thread below which splitting the work is not worth a thread.
const MIN_PER_THREAD: usize = 16;

/// Verifies every item; `result[i]` is exactly `items[i].key.verify(..)`. Large inputs are
/// split across the available cores.
pub fn verify_all(items: &[Item<'_>]) -> Vec<Result<(), IdentityError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(MIN_PER_THREAD);
    if items.len() <= chunk {
        return verify_each(items);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || verify_each(c)))
            .collect();
        handles
            .into_iter()
            .zip(items.chunks(chunk))
            .flat_map(|(h, c)| {
                // A panicking thread verified nothing: its items count as failed.
                h.join()
                    .unwrap_or_else(|_| vec![Err(IdentityError::BadSignature); c.len()])
            })
            .collect()
    })
}

/// [`verify_all`] on the calling thread only, for callers that split the work themselves.
///
/// Each verdict stands alone (strict.rs): the recomputed points of the items are only
/// compressed together, sharing one field inversion.
pub fn verify_each(items: &[Item<'_>]) -> Vec<Result<(), IdentityError>> {
    // An item that repeats an earlier one exactly (the same key, message and signature: the
    // batch receipts of one signed root, §5.3) gets that item's verdict: verification is
    // deterministic, so a second check could only repeat it.
    let mut first: HashMap<(&PublicKey, &[u8], &[u8]), usize> = HashMap::new();
    let mut distinct: Vec<&Item<'_>> = Vec::with_capacity(items.len());
    let of_distinct: Vec<usize> = items
        .iter()
        .map(|item| {
            *first
                .entry((item.key, item.message, item.signature))
                .or_insert_with(|| {
                    distinct.push(item);
                    distinct.len() - 1
                })
        })
        .collect();
    let verdicts = verify_distinct(distinct.into_iter());
    of_distinct
        .into_iter()
        .map(|d| verdicts[d].clone())
        .collect()
}

/// [`verify_each`] of items known to be distinct.
fn verify_distinct<'i, 'a: 'i>(
    items: impl Iterator<Item = &'i Item<'a>>,
) -> Vec<Result<(), IdentityError>> {
    // Items whose signature is not 64 bytes fail on their own, as in `PublicKey::verify`.
    let parsed: Vec<Result<Check<'_>, IdentityError>> = items
        .map(|item| Check::new(item.key.inner(), item.message, item.signature))
        .collect();
    let checks: Vec<Check<'_>> = parsed
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .copied()
        .collect();
    // One verdict per parsed check, in order.
    let mut verdicts = crate::strict::verify_many(&checks).into_iter();
    parsed
        .into_iter()
        .map(|check| {
            check.and_then(|_| match verdicts.next() {
                Some(true) => Ok(()),
                _ => Err(IdentityError::BadSignature),
            })
        })
        .collect()
}

/// Authenticity of a whole set at once (§9.8.3): whether every item was made by its key,
/// checked with one random-linear-combination equation and no subgroup pre-checks, at
/// about 40% of the cost of one-by-one strict verification.
///
/// Keys are torsion-free (§2.3), so an accepted item was signed by the key's holder over
/// exactly `message`; what this does not guarantee is that `R` is free of a small-order
/// component or is not the identity (a signer's nonce `r = 0`), i.e. the encoding may be one
/// `verify_strict` rejects (§17.1). Use it only where that
/// difference does not matter (authenticating relayed messages), never for receipts (§6.2).
/// Every strictly valid set is accepted. An empty set is accepted.
pub fn all_authentic(items: &[Item<'_>]) -> bool {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
    for item in items {
        let Ok(sig) = parse_signature(item.signature) else {
            return false;
        };
        messages.push(item.message);
        signatures.push(sig);
        keys.push(*item.key.inner());
    }
    items.is_empty() || ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use curve25519_dalek::edwards::CompressedEdwardsY;

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

    /// Repeated items (one signed batch root in many receipts) get exactly the verdicts
    /// one-by-one verification gives, whether the repeated item is good or bad, and an item
    /// that repeats a signature over another message or under another key is judged alone.
    #[test]
    fn repeated_items_get_the_verdicts_of_single_verification() {
        let a = SecretKey::from_seed(&[1; 32]);
        let b = SecretKey::from_seed(&[2; 32]);
        let (pa, pb) = (a.public_key(), b.public_key());
        let root = b"one batch root".to_vec();
        let other = b"another root".to_vec();
        let good = a.sign(&root).0.to_vec();
        let mut bad = good.clone();
        bad[40] ^= 1;
        let short = good[..63].to_vec();
        let cases: Vec<(&[u8], &[u8], &PublicKey)> = vec![
            (&root, &good, &pa),
            (&root, &good, &pa),
            (&root, &bad, &pa),
            (&other, &good, &pa),
            (&root, &good, &pb),
            (&root, &bad, &pa),
            (&root, &short, &pa),
            (&root, &good, &pa),
            (&root, &short, &pa),
        ];
        let items: Vec<Item<'_>> = cases
            .iter()
            .map(|(m, s, k)| Item {
                message: m,
                signature: s,
                key: k,
            })
            .collect();
        let single: Vec<bool> = cases
            .iter()
            .map(|(m, s, k)| k.verify(m, s).is_ok())
            .collect();
        let each: Vec<bool> = verify_each(&items).iter().map(Result::is_ok).collect();
        assert_eq!(each, single);
        assert_eq!(
            single,
            [true, true, false, false, false, false, false, true, false]
        );
    }

    /// Signatures that single verification rejects but a naive batch could accept: R with a
    /// torsion component, non-canonical S, small-order R. Batch and single must agree on each.
    #[test]
    fn edge_cases_agree_with_single_verification() {
        use curve25519_dalek::Scalar;
        use sha2::Digest;
        let key = SecretKey::from_seed(&[4; 32]);
        let pk = key.public_key();
        let msg = b"edge".to_vec();
        let good = key.sign(&msg).0;
        let torsion = CompressedEdwardsY(
            hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .decompress()
        .unwrap();
        // A signer who knows its key makes R' = rB + T and s = r + H(R' || A || M)·a: the
        // cofactorless equation fails by T, a batch equation only by z·T.
        let a = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).to_scalar();
        let r = Scalar::from(123_456_789u64);
        let r_prime =
            (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r + torsion).compress();
        let mut h = sha2::Sha512::new();
        h.update(r_prime.as_bytes());
        h.update(pk.to_bytes());
        h.update(&msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut mixed_r = [0u8; 64];
        mixed_r[..32].copy_from_slice(r_prime.as_bytes());
        mixed_r[32..].copy_from_slice((r + k * a).as_bytes());
        let mut small_r = good;
        small_r[..32].copy_from_slice(torsion.compress().as_bytes());
        // s + l: same value mod l, non-canonical encoding.
        let mut big_s = good;
        let s = Scalar::from_canonical_bytes(good[32..].try_into().unwrap()).unwrap();
        let l_bytes: [u8; 32] =
            hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
                .unwrap()
                .try_into()
                .unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s.as_bytes()[i]) + u16::from(l_bytes[i]) + carry;
            big_s[32 + i] = v as u8;
            carry = v >> 8;
        }
        let sigs = [good, mixed_r, small_r, big_s];
        let items: Vec<Item<'_>> = sigs
            .iter()
            .map(|s| Item {
                message: &msg,
                signature: s,
                key: &pk,
            })
            .collect();
        let want: Vec<_> = sigs.iter().map(|s| pk.verify(&msg, s)).collect();
        assert_eq!(verify_all(&items), want);
        assert_eq!(want.iter().filter(|r| r.is_ok()).count(), 1);
        // The same mixed-order signature passes ed25519-dalek's raw batch check in some
        // batches: that is the disagreement the pre-check exists to prevent.
        let raw_key = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes()).unwrap();
        let raw_sig = ed25519_dalek::Signature::from_bytes(&mixed_r);
        let accepted_by_raw_batch = (0u32..64).any(|i| {
            let m = i.to_le_bytes();
            let filler = key.sign(&m);
            let f = ed25519_dalek::Signature::from_bytes(&filler.0);
            ed25519_dalek::verify_batch(&[&msg, &m], &[raw_sig, f], &[raw_key, raw_key]).is_ok()
        });
        assert!(
            accepted_by_raw_batch,
            "expected the raw batch to accept a torsioned R sometimes"
        );
    }

    /// Signs `msg` with R = identity (nonce r = 0): s = H(R || A || M)·a. The cofactorless
    /// equation holds (`[s]B = [k]A = R + [k]A`), but R is of small order, so
    /// `verify_strict` refuses it (§2.4).
    pub(crate) fn identity_r_signature(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
        use curve25519_dalek::Scalar;
        use sha2::Digest;
        let sk = ed25519_dalek::SigningKey::from_bytes(seed);
        let a = sk.to_scalar();
        let r_bytes = curve25519_dalek::EdwardsPoint::default()
            .compress()
            .to_bytes();
        let mut h = sha2::Sha512::new();
        h.update(r_bytes);
        h.update(sk.verifying_key().as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((k * a).as_bytes());
        sig
    }

    /// Finding L1 (§6.2, §17.1): a key holder signs with R = identity. Strict verification
    /// refuses it; the batch path must refuse it too, alone and among valid signatures.
    #[test]
    fn attack_l1_batch_accepts_identity_r_signature() {
        let seed = [7u8; 32];
        let key = SecretKey::from_seed(&seed);
        let pk = key.public_key();
        let msg = b"receipt to-be-signed bytes".to_vec();
        let forged = identity_r_signature(&seed, &msg);
        // The attack is real: ed25519-dalek's raw batch equation accepts the signature.
        let raw_key = ed25519_dalek::VerifyingKey::from_bytes(&pk.to_bytes()).unwrap();
        let raw_sig = ed25519_dalek::Signature::from_bytes(&forged);
        assert!(ed25519_dalek::verify_batch(&[&msg], &[raw_sig], &[raw_key]).is_ok());
        // Strict single verification refuses it.
        assert_eq!(pk.verify(&msg, &forged), Err(IdentityError::BadSignature));
        // Alone in a batch: refused.
        let alone = [Item {
            message: &msg,
            signature: &forged,
            key: &pk,
        }];
        assert_eq!(verify_all(&alone), vec![Err(IdentityError::BadSignature)]);
        // Among valid signatures, including enough to be split across threads: only it is
        // refused, and every result equals single verification.
        let msgs: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut sigs: Vec<[u8; 64]> = msgs.iter().map(|m| key.sign(m).0).collect();
        sigs[17] = identity_r_signature(&seed, &msgs[17]);
        let items: Vec<Item<'_>> = (0..40)
            .map(|i| Item {
                message: &msgs[i],
                signature: &sigs[i],
                key: &pk,
            })
            .collect();
        let got = verify_all(&items);
        let want: Vec<_> = (0..40).map(|i| pk.verify(&msgs[i], &sigs[i])).collect();
        assert_eq!(got, want);
        assert_eq!(got[17], Err(IdentityError::BadSignature));
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 39);
    }

    #[test]
    fn all_authentic_accepts_valid_sets_and_refuses_any_forgery() {
        let keys: Vec<SecretKey> = (0..4u8)
            .map(|i| SecretKey::from_seed(&[i + 9; 32]))
            .collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let sigs: Vec<Vec<u8>> = (0..40)
            .map(|i| keys[i % 4].sign(&msgs[i]).0.to_vec())
            .collect();
        let check = |sigs: &[Vec<u8>], msgs: &[Vec<u8>], key_of: &dyn Fn(usize) -> usize| {
            let items: Vec<Item<'_>> = (0..sigs.len())
                .map(|i| Item {
                    message: &msgs[i],
                    signature: &sigs[i],
                    key: &pubs[key_of(i)],
                })
                .collect();
            all_authentic(&items)
        };
        assert!(check(&sigs, &msgs, &|i| i % 4));
        assert!(check(&[], &[], &|i| i));
        // Any flipped bit in any signature, a swapped key, a changed message, a short
        // signature: refused.
        for i in [0usize, 17, 39] {
            for bit in [0usize, 255, 256, 511] {
                let mut bad = sigs.clone();
                bad[i][bit / 8] ^= 1 << (bit % 8);
                assert!(!check(&bad, &msgs, &|i| i % 4), "sig {i} bit {bit}");
            }
        }
        assert!(!check(&sigs, &msgs, &|i| if i == 5 { 2 } else { i % 4 }));
        let mut other = msgs.clone();
        other[30].push(0);
        assert!(!check(&sigs, &other, &|i| i % 4));
        let mut short = sigs.clone();
        short[3].truncate(63);
        assert!(!check(&short, &msgs, &|i| i % 4));
    }

    #[test]
    fn large_inputs_split_across_threads_keep_order() {
        let keys: Vec<SecretKey> = (0..3u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]))
            .collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut sigs: Vec<Vec<u8>> = (0..100)
            .map(|i| keys[i % 3].sign(&msgs[i]).0.to_vec())
            .collect();
        for bad in [3usize, 50, 99] {
            sigs[bad][0] ^= 1;
        }
        let items: Vec<Item<'_>> = (0..100)
            .map(|i| Item {
                message: &msgs[i],
                signature: &sigs[i],
                key: &pubs[i % 3],
            })
            .collect();
        let got = verify_all(&items);
        let want: Vec<_> = (0..100)
            .map(|i| pubs[i % 3].verify(&msgs[i], &sigs[i]))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got.iter().filter(|r| r.is_err()).count(), 3);
    }
}
