//! Distributed differential privacy for ensembles (§15.6): each member adds symmetric
//! Skellam noise `Poisson(μ) − Poisson(μ)` to every element of its encoded contribution
//! before masking, so the sum carries `Skellam(c·μ)` noise for `c` contributors (the
//! Skellam family is closed under addition). Calibration uses the Rényi-DP bound of the
//! Skellam mechanism (Agarwal, Kairouz, Liu, NeurIPS 2021) converted to (ε, δ).

use quorate_crypto::secagg::SecaggCryptoError;
use quorate_crypto::secagg::rng::SecretRng;

use crate::ensemble::{Mode, NoiseParams};

/// RDP orders searched when converting to (ε, δ).
fn orders() -> impl Iterator<Item = f64> {
    (0..400)
        .map(|i| 1.0 + 0.05 * f64::from(i + 1))
        .chain((21..=512).map(f64::from))
}

/// RDP ε(α) of the Skellam mechanism with per-coordinate parameter `mu` (variance `2μ`) for
/// a query of L1 sensitivity `d1` and L2 sensitivity `d2` (§15.6):
/// `α·Δ2²/(4μ) + min((2α·Δ2² + 6Δ1)/(16μ²), 3Δ1/(4μ))`.
pub fn skellam_rdp(alpha: f64, mu: f64, d1: f64, d2: f64) -> f64 {
    alpha * d2 * d2 / (4.0 * mu)
        + ((2.0 * alpha * d2 * d2 + 6.0 * d1) / (16.0 * mu * mu)).min(3.0 * d1 / (4.0 * mu))
}

/// The (ε, δ) guarantee of total Skellam parameter `mu`: `min_α ε(α) + ln(1/δ)/(α − 1)`.
pub fn epsilon(mu: f64, d1: f64, d2: f64, delta: f64) -> f64 {
    orders()
        .map(|a| skellam_rdp(a, mu, d1, d2) + (1.0 / delta).ln() / (a - 1.0))
        .fold(f64::INFINITY, f64::min)
}

/// L1 and L2 sensitivity of one member's encoded contribution (§15.6): a member's output
/// changing arbitrarily. Mean mode: probability vectors at scale `s` differ by at most
/// `2s` in L1 and `√2·s` in L2, plus one unit per class for rounding. Votes: `2` and `√2`.
pub fn sensitivity(mode: Mode, scale_bits: u32, classes: u32) -> (f64, f64) {
    match mode {
        Mode::Mean => {
            let s = (1u64 << scale_bits) as f64;
            let k = f64::from(classes);
            (2.0 * s + k, 2f64.sqrt() * s + k.sqrt())
        }
        Mode::Votes => (2.0, 2f64.sqrt()),
    }
}

/// Calibrates per-member noise so that `members` contributions together give (ε, δ)-DP;
/// returns the parameters to publish (§15.6).
pub fn calibrate(
    target_epsilon: f64,
    delta: f64,
    mode: Mode,
    scale_bits: u32,
    classes: u32,
    members: usize,
) -> Result<NoiseParams, &'static str> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0 && target_epsilon <= 100.0) {
        return Err("epsilon must be in (0, 100]");
    }
    if !(1e-12..1.0).contains(&delta) {
        return Err("delta must be in [1e-12, 1)");
    }
    let (d1, d2) = sensitivity(mode, scale_bits, classes);
    // ε(μ) decreases in μ: bisect on a log scale.
    let (mut lo, mut hi) = (1e-6f64, 1e-6f64);
    while epsilon(hi, d1, d2, delta) > target_epsilon {
        hi *= 2.0;
        if hi > 1e24 {
            return Err("no noise level reaches that epsilon");
        }
    }
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if epsilon(mid, d1, d2, delta) > target_epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let per_member = hi / members.max(1) as f64;
    // Round μ up to thousandths so the published value never gives less noise.
    let mu_milli = (per_member * 1000.0).ceil().max(1.0) as u64;
    Ok(NoiseParams {
        epsilon_micro: (target_epsilon * 1e6).round() as u64,
        delta_pico: (delta * 1e12).round() as u64,
        mu_milli,
        bound: noise_bound(mu_milli as f64 / 1000.0),
    })
}

/// The clip bound of one member's noise: `⌈20σ⌉ + 16` with `σ = √(2μ)`.
pub fn noise_bound(mu: f64) -> u64 {
    (20.0 * (2.0 * mu).sqrt()).ceil() as u64 + 16
}

/// The ε achieved when `contributors` members' noise is in the sum (§15.6): dropouts leave
/// less noise, so ε grows as `contributors` falls below the number calibrated for.
pub fn achieved_epsilon(
    n: &NoiseParams,
    mode: Mode,
    scale_bits: u32,
    classes: u32,
    contributors: usize,
) -> f64 {
    let (d1, d2) = sensitivity(mode, scale_bits, classes);
    let mu = n.mu_milli as f64 / 1000.0 * contributors as f64;
    epsilon(mu, d1, d2, n.delta_pico as f64 * 1e-12)
}

fn uniform(rng: &mut dyn SecretRng) -> Result<f64, SecaggCryptoError> {
    let mut b = [0u8; 8];
    rng.fill_bytes(&mut b)?;
    // 53 random bits in (0, 1).
    Ok(((u64::from_le_bytes(b) >> 11) as f64 + 0.5) / (1u64 << 53) as f64)
}

/// ln Γ(x) for x ≥ 1 (Stirling series after shifting x up to 10).
fn ln_gamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= x.ln();
        x += 1.0;
    }
    let x2 = x * x;
    acc + (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

/// A Poisson(λ) variate: multiplication method for λ < 10, Hörmann's PTRS otherwise.
pub fn poisson(lambda: f64, rng: &mut dyn SecretRng) -> Result<u64, SecaggCryptoError> {
    if lambda <= 0.0 {
        return Ok(0);
    }
    if lambda < 10.0 {
        let limit = (-lambda).exp();
        let mut k = 0u64;
        let mut p = uniform(rng)?;
        while p > limit {
            k += 1;
            p *= uniform(rng)?;
        }
        return Ok(k);
    }
    let slam = lambda.sqrt();
    let loglam = lambda.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = uniform(rng)? - 0.5;
        let v = uniform(rng)?;
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return Ok(k.max(0.0) as u64);
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
            <= -lambda + k * loglam - ln_gamma(k + 1.0)
        {
            return Ok(k as u64);
        }
    }
}

/// Adds clipped Skellam noise plus its offset to each encoded element (§15.6): the result
/// is `x + clamp(Sk(μ), −B, B) + B`, within `[0, max_input]`. Returns how many draws were
/// clipped (expected zero).
pub fn add_noise(
    values: &mut [u64],
    n: &NoiseParams,
    rng: &mut dyn SecretRng,
) -> Result<usize, SecaggCryptoError> {
    let mu = n.mu_milli as f64 / 1000.0;
    let b = n.bound as i128;
    let mut clipped = 0;
    for v in values.iter_mut() {
        let z = i128::from(poisson(mu, rng)?) - i128::from(poisson(mu, rng)?);
        if z.abs() > b {
            clipped += 1;
        }
        *v = (i128::from(*v) + z.clamp(-b, b) + b) as u64;
    }
    Ok(clipped)
}

/// Checks that published noise parameters are exactly what [`calibrate`] gives for their
/// stated (ε, δ), mode, scale, classes and member count (§15.6, §17): a member and an auditor
/// recompute them, so an aggregator cannot state an ε while publishing `μ = 0` or
/// `bound = 0` (no noise at all).
pub fn check_noise(p: &crate::ensemble::EnsembleParams) -> Result<(), String> {
    let Some(n) = p.noise else { return Ok(()) };
    let expected = calibrate(
        n.epsilon_micro as f64 / 1e6,
        n.delta_pico as f64 * 1e-12,
        p.mode,
        p.scale_bits,
        p.classes,
        p.members.len(),
    )
    .map_err(|e| format!("noise parameters: {e}"))?;
    if expected != n {
        return Err(format!(
            "noise parameters do not match their stated epsilon {} and delta {}: mu {} and bound {} published, mu {} and bound {} required for {} members",
            n.epsilon_micro as f64 / 1e6,
            n.delta_pico as f64 * 1e-12,
            n.mu_milli as f64 / 1000.0,
            n.bound,
            expected.mu_milli as f64 / 1000.0,
            expected.bound,
            p.members.len()
        ));
    }
    Ok(())
}

/// Checks that a member's model output is a probability vector, the input mean mode's
/// sensitivity assumes (§15.6): finite elements in `[0, 1]` summing to 1 within `1e-3`.
/// Logits or scores would make the stated ε a lie (with `K` logits the L1 sensitivity grows
/// by up to `K/2`), so they are refused rather than silently clipped.
pub fn check_probability_vector(values: &[f32]) -> Result<(), String> {
    if let Some(x) = values
        .iter()
        .find(|x| !(x.is_finite() && (0.0..=1.0).contains(*x)))
    {
        return Err(format!(
            "mean mode needs a probability vector, but the model output holds {x}; serve a model that ends in a softmax"
        ));
    }
    let sum: f64 = values.iter().map(|&x| f64::from(x)).sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(format!(
            "mean mode needs a probability vector, but the model's outputs sum to {sum}; serve a model that ends in a softmax"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::secagg::rng::DeterministicRng;

    #[test]
    fn calibration_meets_the_target_and_dropouts_raise_epsilon() {
        let n = calibrate(1.0, 1e-5, Mode::Votes, 0, 2, 5).unwrap();
        let full = achieved_epsilon(&n, Mode::Votes, 0, 2, 5);
        assert!(full <= 1.0 + 1e-6, "{full}");
        assert!(full > 0.95, "calibration is tight: {full}");
        let four = achieved_epsilon(&n, Mode::Votes, 0, 2, 4);
        assert!(four > full);
        // Smaller ε needs more noise.
        assert!(calibrate(0.5, 1e-5, Mode::Votes, 0, 2, 5).unwrap().mu_milli > n.mu_milli);
    }

    #[test]
    fn poisson_has_the_right_mean_and_variance() {
        let mut rng = DeterministicRng::from_seed(&[3; 32]);
        for lambda in [0.7, 4.0, 50.0, 1e6] {
            let xs: Vec<f64> = (0..4000)
                .map(|_| poisson(lambda, &mut rng).unwrap() as f64)
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            let se = (lambda / xs.len() as f64).sqrt();
            assert!((mean - lambda).abs() < 5.0 * se, "λ={lambda} mean {mean}");
            assert!((var / lambda - 1.0).abs() < 0.15, "λ={lambda} var {var}");
        }
    }

    #[test]
    fn noise_stays_within_the_budget() {
        let n = calibrate(0.5, 1e-6, Mode::Votes, 0, 3, 5).unwrap();
        let mut rng = DeterministicRng::from_seed(&[4; 32]);
        let mut v = vec![0, 1, 0];
        assert_eq!(add_noise(&mut v, &n, &mut rng).unwrap(), 0);
        assert!(v.iter().all(|&x| x <= 1 + 2 * n.bound));
    }

    #[test]
    fn attack_m2_logits_in_mean_mode_understate_epsilon() {
        // Ten logits: each clipped to [0, 1] they could move the L1 norm by up to 10, five
        // times the sensitivity ε is calibrated for. They are refused, not clipped.
        let logits = [2.3f32, -1.0, 0.4, 5.0, 0.0, 0.1, -3.0, 1.2, 0.7, 0.9];
        assert!(check_probability_vector(&logits).is_err());
        let scores = [0.9f32, 0.8, 0.7];
        assert!(check_probability_vector(&scores).is_err());
        assert!(check_probability_vector(&[f32::NAN, 1.0]).is_err());
        assert!(check_probability_vector(&[0.25, 0.75]).is_ok());
    }
}
