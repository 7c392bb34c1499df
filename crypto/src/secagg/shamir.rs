//! Shamir t-of-n secret sharing over the Ed25519 scalar field, GF(ℓ) with
//! ℓ = 2^252 + 27742317777372353535851937790883648493 (§9.4.4).
//!
//! The holder with client index `i` receives the evaluation at `x = i + 1` (never 0).
//!
//! **Splitting.** A uniformly random polynomial `f` of degree `t − 1` with `f(0) = s` is
//! drawn in the binomial (forward-difference) basis: `f(x) = s + Σ_{j=1}^{t−1} c_j·C(x, j)`
//! with the `c_j` uniform. The binomial polynomials `C(x, j)` are a basis of the polynomials
//! of degree < t over a field of characteristic > t, so this is exactly the uniform
//! distribution of the textbook construction, but the shares at `x = 1, 2, …` follow by
//! additions alone (`Δ^j f(x+1) = Δ^j f(x) + Δ^{j+1} f(x)`), with no multiplication.
//! The `c_j` are drawn in order, each from 64 random bytes reduced mod ℓ.
//!
//! **Reconstruction.** Lagrange interpolation at 0 over exactly `t` shares; the
//! coefficients depend only on the x-coordinates, so [`Interpolator`] computes them once
//! (one batch inversion) and reuses them for every secret shared among the same holders.

use curve25519_dalek::Scalar;
use zeroize::{Zeroize, Zeroizing};

use super::SecaggCryptoError;
use super::rng::SecretRng;

/// A secret field element (a mask-key or self-mask secret). Zeroized on drop, redacted.
pub struct SecretScalar(Scalar);

impl SecretScalar {
    /// A uniformly random element: 64 random bytes reduced mod ℓ.
    pub fn random(rng: &mut dyn SecretRng) -> Result<Self, SecaggCryptoError> {
        Ok(Self(random_scalar(rng)?))
    }

    /// Parses a canonical 32-byte little-endian encoding.
    pub fn from_canonical_bytes(bytes: &[u8; 32]) -> Result<Self, SecaggCryptoError> {
        Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes))
            .map(Self)
            .ok_or(SecaggCryptoError::NonCanonicalShare)
    }

    /// The canonical 32-byte encoding.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.to_bytes().ct_eq(&other.0.to_bytes()).into()
    }
}

impl Drop for SecretScalar {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SecretScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretScalar(<redacted>)")
    }
}

/// One share: the holder's x-coordinate and the polynomial's value there.
/// Zeroized on drop; the value is redacted in `Debug`.
pub struct Share {
    /// The x-coordinate (holder index + 1).
    pub x: u32,
    y: Scalar,
}

impl Share {
    /// Builds a share from an x-coordinate and a canonical 32-byte value.
    pub fn from_bytes(x: u32, y: &[u8; 32]) -> Result<Self, SecaggCryptoError> {
        let y = Option::<Scalar>::from(Scalar::from_canonical_bytes(*y))
            .ok_or(SecaggCryptoError::NonCanonicalShare)?;
        Ok(Self { x, y })
    }

    /// The value's canonical 32-byte encoding.
    pub fn value_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.y.to_bytes())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.y.zeroize();
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ x: {}, y: <redacted> }}", self.x)
    }
}

/// A uniformly random scalar: 64 random bytes reduced mod ℓ (bias < 2^-250).
pub fn random_scalar(rng: &mut dyn SecretRng) -> Result<Scalar, SecaggCryptoError> {
    let mut wide = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(wide.as_mut())?;
    Ok(Scalar::from_bytes_mod_order_wide(&wide))
}

/// Splits `secret` into shares for the holders at x-coordinates `xs` (strictly increasing,
/// nonzero) with reconstruction threshold `threshold` (1 ≤ t ≤ |xs|).
///
/// Draws `t − 1` coefficients from `rng`, then walks `x = 1..=max(xs)` with `t − 1`
/// additions per step.
pub fn split(
    secret: &SecretScalar,
    threshold: usize,
    xs: &[u32],
    rng: &mut dyn SecretRng,
) -> Result<Vec<Share>, SecaggCryptoError> {
    if threshold == 0 || threshold > xs.len() {
        return Err(SecaggCryptoError::SharingParameters(
            "threshold must be in 1..=number of holders",
        ));
    }
    if xs.first() == Some(&0) || xs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SecaggCryptoError::SharingParameters(
            "x-coordinates must be nonzero and strictly increasing",
        ));
    }
    // diffs[j] = Δ^j f(x) at the current x; starts at x = 0.
    let mut diffs = Zeroizing::new(Vec::with_capacity(threshold));
    diffs.push(secret.0);
    for _ in 1..threshold {
        diffs.push(random_scalar(rng)?);
    }
    let mut out = Vec::with_capacity(xs.len());
    let mut next = 0;
    let last = xs.last().copied().unwrap_or(0);
    for x in 1..=last {
        for j in 0..threshold - 1 {
            let d = diffs[j + 1];
            diffs[j] += d;
        }
        if xs.get(next) == Some(&x) {
            out.push(Share { x, y: diffs[0] });
            next += 1;
        }
    }
    Ok(out)
}

/// Multiplies small nonzero integers into a scalar, batching them in `u128` first so that
/// only one field multiplication is spent per seven or eight factors.
struct SmallProduct {
    acc: Scalar,
    small: u128,
    negative: bool,
}

impl SmallProduct {
    fn new() -> Self {
        Self {
            acc: Scalar::ONE,
            small: 1,
            negative: false,
        }
    }

    fn mul(&mut self, v: i64) {
        if v < 0 {
            self.negative = !self.negative;
        }
        let m = u128::from(v.unsigned_abs());
        match self.small.checked_mul(m) {
            Some(p) => self.small = p,
            None => {
                self.acc *= Scalar::from(self.small);
                self.small = m;
            }
        }
    }

    fn finish(self) -> Scalar {
        let p = self.acc * Scalar::from(self.small);
        if self.negative { -p } else { p }
    }
}

/// Lagrange coefficients at 0 for a fixed set of x-coordinates.
#[derive(Debug, Clone)]
pub struct Interpolator {
    xs: Vec<u32>,
    lambdas: Vec<Scalar>,
}

impl Interpolator {
    /// Precomputes `λ_i = Π_{j≠i} x_j / (x_j − x_i)`; the x-coordinates must be distinct
    /// and nonzero.
    pub fn new(xs: &[u32]) -> Result<Self, SecaggCryptoError> {
        if xs.is_empty() {
            return Err(SecaggCryptoError::Shares("no shares"));
        }
        let mut sorted = xs.to_vec();
        sorted.sort_unstable();
        if sorted[0] == 0 || sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(SecaggCryptoError::Shares(
                "x-coordinates must be distinct and nonzero",
            ));
        }
        let mut all = SmallProduct::new();
        for &x in xs {
            all.mul(i64::from(x));
        }
        let all = all.finish();
        let mut dens: Vec<Scalar> = xs
            .iter()
            .enumerate()
            .map(|(i, &xi)| {
                let mut d = SmallProduct::new();
                d.mul(i64::from(xi));
                for (j, &xj) in xs.iter().enumerate() {
                    if i != j {
                        d.mul(i64::from(xj) - i64::from(xi));
                    }
                }
                d.finish()
            })
            .collect();
        Scalar::invert_batch_alloc(&mut dens);
        let lambdas = dens.into_iter().map(|inv| all * inv).collect();
        Ok(Self {
            xs: xs.to_vec(),
            lambdas,
        })
    }

    /// The x-coordinates, in the order values must be given.
    pub fn xs(&self) -> &[u32] {
        &self.xs
    }

    /// `f(0) = Σ λ_i y_i` for values given in the order of [`Self::xs`].
    pub fn interpolate(&self, ys: &[&Share]) -> Result<SecretScalar, SecaggCryptoError> {
        if ys.len() != self.xs.len() || ys.iter().zip(&self.xs).any(|(s, x)| s.x != *x) {
            return Err(SecaggCryptoError::Shares(
                "shares do not match the interpolator's x-coordinates",
            ));
        }
        let mut acc = Scalar::ZERO;
        for (s, l) in ys.iter().zip(&self.lambdas) {
            acc += s.y * l;
        }
        Ok(SecretScalar(acc))
    }
}

/// Reconstructs the secret from exactly the given shares (give `t` of them).
pub fn reconstruct(shares: &[Share]) -> Result<SecretScalar, SecaggCryptoError> {
    let xs: Vec<u32> = shares.iter().map(|s| s.x).collect();
    let refs: Vec<&Share> = shares.iter().collect();
    Interpolator::new(&xs)?.interpolate(&refs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::secagg::rng::DeterministicRng;

    fn secret(v: u64) -> SecretScalar {
        SecretScalar(Scalar::from(v))
    }

    #[test]
    fn any_t_shares_reconstruct_fewer_do_not() {
        let mut rng = DeterministicRng::from_seed(&[3; 32]);
        let s = SecretScalar::random(&mut rng).unwrap();
        let xs: Vec<u32> = vec![1, 2, 5, 9, 10, 11, 40];
        let shares = split(&s, 4, &xs, &mut rng).unwrap();
        assert_eq!(shares.len(), 7);
        for start in 0..4 {
            let pick: Vec<Share> = shares[start..start + 4]
                .iter()
                .map(|sh| Share { x: sh.x, y: sh.y })
                .collect();
            assert!(reconstruct(&pick).unwrap().ct_eq(&s));
            let fewer: Vec<Share> = pick[..3]
                .iter()
                .map(|sh| Share { x: sh.x, y: sh.y })
                .collect();
            assert!(!reconstruct(&fewer).unwrap().ct_eq(&s));
        }
    }

    #[test]
    fn forward_differences_match_horner() {
        let mut rng = DeterministicRng::from_seed(&[4; 32]);
        let s = secret(77);
        let xs: Vec<u32> = (1..=30).collect();
        let shares = split(&s, 6, &xs, &mut rng).unwrap();
        // Redraw the same coefficients and evaluate in the binomial basis directly.
        let mut rng = DeterministicRng::from_seed(&[4; 32]);
        let c: Vec<Scalar> = (0..5).map(|_| random_scalar(&mut rng).unwrap()).collect();
        for sh in &shares {
            let x = u64::from(sh.x);
            let mut binom = Scalar::ONE;
            let mut v = Scalar::from(77u64);
            for (j, cj) in c.iter().enumerate() {
                let j = j as u64;
                binom = binom * (Scalar::from(x) - Scalar::from(j)) * Scalar::from(j + 1).invert();
                v += cj * binom;
            }
            assert_eq!(v, sh.y);
        }
    }

    #[test]
    fn threshold_one_and_full() {
        let mut rng = DeterministicRng::from_seed(&[5; 32]);
        let s = secret(5);
        let shares = split(&s, 1, &[3, 4], &mut rng).unwrap();
        assert!(shares.iter().all(|sh| sh.y == Scalar::from(5u64)));
        let shares = split(&s, 3, &[1, 2, 3], &mut rng).unwrap();
        assert!(reconstruct(&shares).unwrap().ct_eq(&s));
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut rng = DeterministicRng::from_seed(&[6; 32]);
        let s = secret(1);
        assert!(split(&s, 0, &[1], &mut rng).is_err());
        assert!(split(&s, 3, &[1, 2], &mut rng).is_err());
        assert!(split(&s, 1, &[0, 2], &mut rng).is_err());
        assert!(split(&s, 1, &[2, 2], &mut rng).is_err());
        assert!(Interpolator::new(&[1, 1]).is_err());
        assert!(Interpolator::new(&[0, 1]).is_err());
        assert!(Interpolator::new(&[]).is_err());
        assert!(Share::from_bytes(1, &[0xff; 32]).is_err());
        let sh = Share::from_bytes(1, &[1; 32]).unwrap();
        assert_eq!(format!("{sh:?}"), "Share { x: 1, y: <redacted> }");
        assert_eq!(format!("{s:?}"), "SecretScalar(<redacted>)");
    }

    #[test]
    fn small_product_batches_large_values() {
        let mut p = SmallProduct::new();
        let mut expect = Scalar::ONE;
        for v in [
            65535i64, -65534, 60000, 12345, -1, 99999, 65535, 65535, 65535, 65535, 65535, 7,
        ] {
            p.mul(v);
            expect *= if v < 0 {
                -Scalar::from(v.unsigned_abs())
            } else {
                Scalar::from(v as u64)
            };
        }
        assert_eq!(p.finish(), expect);
    }
}
