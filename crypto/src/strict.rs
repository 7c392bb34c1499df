//! Strict Ed25519 verification (§6.2) with exactly the verdicts of ed25519-dalek's
//! `verify_strict`, at a lower cost.
//!
//! `verify_strict` pays for two field exponentiations besides the equation itself: it
//! decompresses `R` only to ask whether it is of small order, and it compresses the
//! recomputed `R' = [s]B − [k]A` to compare encodings. Neither is needed separately:
//!
//! - if `compress(R')` equals the signature's `R` bytes, those bytes are the canonical
//!   encoding of `R'`, so they decompress to `R'` and "R is of small order" is "R' is of small
//!   order", which is asked of the point already in hand (three doublings);
//! - if the encodings differ, `verify_strict` refuses, whether or not `R` decompresses.
//!
//! So one verification here is: `s` canonical, `R'` by the same double-base
//! multiplication, one compression, the same comparison, then the small-order checks on `R'`
//! and `A`. [`verify_many`] compresses all the recomputed points of a set with one shared
//! inversion (Montgomery's trick). Every verdict still stands alone: nothing is combined
//! across signatures, so a set can neither hide a bad signature nor spoil a good one, unlike
//! a random-linear-combination batch (see [`crate::batch`]).
//!
//! The arithmetic is curve25519-dalek's and the hash is sha2's; what this module owns is the
//! order of the checks. Tests compare every verdict with `verify_strict` itself, on valid
//! signatures, on every single-bit change, and on the known edge cases (small-order and
//! mixed-order `R`, non-canonical `R` and `s`, `R` the identity).

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

use crate::IdentityError;

/// One signature to check: the key, the signed message and the 64 signature bytes.
#[derive(Clone, Copy)]
pub(crate) struct Check<'a> {
    pub(crate) key: &'a VerifyingKey,
    pub(crate) message: &'a [u8],
    pub(crate) signature: &'a [u8; 64],
}

impl<'a> Check<'a> {
    /// A check of `signature` as received: anything but 64 bytes fails here, by its length.
    pub(crate) fn new(
        key: &'a VerifyingKey,
        message: &'a [u8],
        signature: &'a [u8],
    ) -> Result<Self, IdentityError> {
        let signature = signature
            .try_into()
            .map_err(|_| IdentityError::SignatureLength(signature.len()))?;
        Ok(Self {
            key,
            message,
            signature,
        })
    }
}

/// `R' = [s]B − [k]A` with `k = SHA-512(R ‖ A ‖ M) mod ℓ` (RFC 8032 §5.1.7), or `None`
/// when `s` is not canonical (`s ≥ ℓ`), which `verify_strict` refuses first.
fn recompute_r(check: &Check<'_>) -> Option<EdwardsPoint> {
    let (r, s) = check.signature.split_at(32);
    let s: [u8; 32] = s.try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
    let mut h = Sha512::new();
    h.update(r);
    h.update(check.key.as_bytes());
    h.update(check.message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let minus_a = -check.key.to_edwards();
    Some(EdwardsPoint::vartime_double_scalar_mul_basepoint(
        &k, &minus_a, &s,
    ))
}

/// The verdict once `R'` is compressed: the encodings match, and neither `R` (which is then
/// `R'`) nor `A` is of small order.
fn accepts(check: &Check<'_>, recomputed: &EdwardsPoint, encoded: &CompressedEdwardsY) -> bool {
    encoded.as_bytes()[..] == check.signature[..32]
        && !recomputed.is_small_order()
        && !check.key.is_weak()
}

/// One signature; `true` exactly when `verify_strict` accepts it.
pub(crate) fn verify_one(check: &Check<'_>) -> bool {
    recompute_r(check).is_some_and(|p| accepts(check, &p, &p.compress()))
}

/// Every signature of a set, `result[i]` exactly `verify_strict` of `checks[i]`, with the
/// recomputed points compressed together.
pub(crate) fn verify_many(checks: &[Check<'_>]) -> Vec<bool> {
    let recomputed: Vec<Option<EdwardsPoint>> = checks.iter().map(recompute_r).collect();
    let points: Vec<EdwardsPoint> = recomputed.iter().flatten().copied().collect();
    let mut encoded = EdwardsPoint::compress_batch_alloc(&points).into_iter();
    checks
        .iter()
        .zip(&recomputed)
        .map(|(check, point)| match point {
            // One encoding per recomputed point, in order.
            Some(p) => encoded.next().is_some_and(|e| accepts(check, p, &e)),
            None => false,
        })
        .collect()
}

/// Which of curve25519-dalek's arithmetic backends the checks above run on in this process
/// (§6.2.1): the crate chooses at run time among the backends it was built with, and this
/// repeats its choice so that a figure can say what it was measured on.
pub fn ed25519_arithmetic() -> &'static str {
    #[cfg(all(target_arch = "x86_64", curve25519_dalek_backend = "avx512"))]
    if std::arch::is_x86_feature_detected!("avx512ifma")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        return "AVX-512 IFMA";
    }
    // The crate's default on x86_64, and its fallback from IFMA.
    #[cfg(all(
        target_arch = "x86_64",
        not(any(curve25519_dalek_backend = "serial", curve25519_dalek_backend = "fiat"))
    ))]
    if std::arch::is_x86_feature_detected!("avx2") {
        return "AVX2";
    }
    "portable"
}

#[cfg(test)]
mod tests;
