//! Round parameters (§9.3), the overflow budget (§9.7.4) and the SecAgg+ degree and
//! threshold derivation (§9.6.2).

use quorate_crypto::PublicKey;
use sha2::{Digest, Sha256};

use super::codec::Writer;

/// Most clients one round accepts.
pub const MAX_CLIENTS: usize = 10_000;
/// Longest input vector.
pub const MAX_VECTOR_LEN: usize = 1 << 24;
/// Largest packed masked input (bytes).
pub const MAX_PACKED_BYTES: usize = 64 << 20;
/// Domain tag of the round digest (§9.3).
pub const TAG_ROUND_DIGEST: &[u8] = b"quorate/v1/secagg/round\0";

/// The neighbour graph of a round (§9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// SecAgg: every client masks with and shares to every other client.
    Full,
    /// SecAgg+: a random `degree`-regular graph (a Harary graph under a random relabelling).
    Sparse {
        /// The degree `k` (even, at least 2).
        degree: usize,
    },
}

/// Everything clients and server must agree on before a round starts (§9.3). Its
/// [`RoundConfig::digest`] is bound into every signature and every key derivation.
#[derive(Debug, Clone)]
pub struct RoundConfig {
    /// A fresh 32-byte identifier of this round; never reused.
    pub session_id: [u8; 32],
    /// The clients' Ed25519 identity keys; a client's index is its position here.
    pub roster: Vec<PublicKey>,
    /// `m`: elements per input vector.
    pub vector_len: usize,
    /// `b`: arithmetic is mod 2^b, 1 ≤ b ≤ 64.
    pub modulus_bits: u32,
    /// `t`: Shamir reconstruction threshold.
    pub threshold: usize,
    /// The fewest inputs the server may ever learn a sum of; clients refuse to unmask a
    /// smaller survivor set (§9.5.4). At least `t`.
    pub min_survivors: usize,
    /// Full graph (SecAgg) or sparse graph (SecAgg+).
    pub graph: GraphKind,
    /// The largest value any client may put in any element; `n · max_input < 2^b` is the
    /// overflow budget (§9.7.4).
    pub max_input: u64,
}

/// A configuration that cannot be run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Fewer than 2 or more than [`MAX_CLIENTS`] clients.
    #[error("{0} clients: a round needs 2 to {MAX_CLIENTS}")]
    ClientCount(usize),
    /// Vector length out of range.
    #[error("vector length {0} is outside 1..={MAX_VECTOR_LEN}")]
    VectorLen(usize),
    /// Modulus bits out of range.
    #[error("modulus 2^{0} is outside 2^1..=2^64")]
    ModulusBits(u32),
    /// The packed masked input would exceed [`MAX_PACKED_BYTES`].
    #[error("a masked input of {0} bytes exceeds the limit of {MAX_PACKED_BYTES}")]
    TooLarge(usize),
    /// Threshold out of range.
    #[error("threshold {threshold} is outside 1..={max} (shareholders per client)")]
    Threshold {
        /// The threshold.
        threshold: usize,
        /// Shareholders per client (n, or k + 1).
        max: usize,
    },
    /// `min_survivors` below `t` or above `n`.
    #[error("min_survivors {0} must be between the threshold and the number of clients")]
    MinSurvivors(usize),
    /// The SecAgg+ degree is odd, below 2, or not below n − 1.
    #[error(
        "neighbour degree {0} must be even, at least 2 and below n − 1 (use the full graph otherwise)"
    )]
    Degree(usize),
    /// `n · max_input` does not fit below 2^b: sums could wrap.
    #[error("overflow budget exceeded: {clients} clients × max value {max_input} ≥ 2^{bits}")]
    OverflowBudget {
        /// Clients.
        clients: usize,
        /// Largest value per element.
        max_input: u64,
        /// Modulus bits.
        bits: u32,
    },
    /// Two roster entries share a key.
    #[error("the roster lists the same identity key twice")]
    DuplicateIdentity,
    /// SecAgg+ parameters (fractions, bits) out of range.
    #[error("invalid SecAgg+ parameters: {0}")]
    SparseParameters(&'static str),
}

impl RoundConfig {
    /// `n`, the number of clients on the roster.
    pub fn clients(&self) -> usize {
        self.roster.len()
    }

    /// Shareholders of one client's secrets: n (full) or k + 1 (sparse, counting itself).
    pub fn shareholders(&self) -> usize {
        match self.graph {
            GraphKind::Full => self.clients(),
            GraphKind::Sparse { degree } => degree + 1,
        }
    }

    /// Bytes of a packed masked input: ⌈m·b / 8⌉ (§9.7.1).
    pub fn packed_len(&self) -> usize {
        (self.vector_len * self.modulus_bits as usize).div_ceil(8)
    }

    /// Checks every rule of §9.3, including the overflow budget.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.clients();
        if !(2..=MAX_CLIENTS).contains(&n) {
            return Err(ConfigError::ClientCount(n));
        }
        if !(1..=MAX_VECTOR_LEN).contains(&self.vector_len) {
            return Err(ConfigError::VectorLen(self.vector_len));
        }
        if !(1..=64).contains(&self.modulus_bits) {
            return Err(ConfigError::ModulusBits(self.modulus_bits));
        }
        if self.packed_len() > MAX_PACKED_BYTES {
            return Err(ConfigError::TooLarge(self.packed_len()));
        }
        if let GraphKind::Sparse { degree } = self.graph
            && (degree < 2 || degree % 2 == 1 || degree >= n - 1)
        {
            return Err(ConfigError::Degree(degree));
        }
        let holders = self.shareholders();
        if self.threshold == 0 || self.threshold > holders {
            return Err(ConfigError::Threshold {
                threshold: self.threshold,
                max: holders,
            });
        }
        if self.min_survivors < self.threshold || self.min_survivors > n {
            return Err(ConfigError::MinSurvivors(self.min_survivors));
        }
        check_overflow_budget(n, self.max_input, self.modulus_bits)?;
        let mut keys: Vec<[u8; 32]> = self.roster.iter().map(|k| k.to_bytes()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateIdentity);
        }
        Ok(())
    }

    /// The round digest (§9.3): SHA-256(tag || CBOR(config)).
    pub fn digest(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(64 + 35 * self.roster.len());
        w.map(8);
        w.uint(1).bytes(&self.session_id);
        w.uint(2).array(self.roster.len());
        for k in &self.roster {
            w.bytes(&k.to_bytes());
        }
        w.uint(3).uint(self.vector_len as u64);
        w.uint(4).uint(u64::from(self.modulus_bits));
        w.uint(5).uint(self.threshold as u64);
        w.uint(6).uint(self.min_survivors as u64);
        w.uint(7).uint(match self.graph {
            GraphKind::Full => 0,
            GraphKind::Sparse { degree } => degree as u64,
        });
        w.uint(8).uint(self.max_input);
        Sha256::new()
            .chain_update(TAG_ROUND_DIGEST)
            .chain_update(w.finish())
            .finalize()
            .into()
    }
}

/// The overflow budget (§9.7.4): `clients · max_input ≤ 2^bits − 1`, so that the sum of
/// every input fits the modulus and decodes exactly.
pub fn check_overflow_budget(clients: usize, max_input: u64, bits: u32) -> Result<(), ConfigError> {
    let modulus: u128 = 1u128 << bits.min(64);
    if (clients as u128) * u128::from(max_input) >= modulus {
        return Err(ConfigError::OverflowBudget {
            clients,
            max_input,
            bits,
        });
    }
    Ok(())
}

/// Inputs of the SecAgg+ parameter derivation (§9.6.2).
#[derive(Debug, Clone, Copy)]
pub struct SparseParameters {
    /// `n`: clients.
    pub clients: usize,
    /// `γ`: the fraction of clients that may be corrupt and collude with the server.
    pub corrupt_fraction: f64,
    /// `δ`: the fraction of clients that may drop out.
    pub dropout_fraction: f64,
    /// `σ`: privacy failure probability at most 2^-σ (default 40).
    pub security_bits: u32,
    /// `η`: abort probability from too few surviving neighbours at most 2^-η (default 20).
    pub correctness_bits: u32,
}

/// The result of [`SparseParameters::derive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivedGraph {
    /// The graph kind: `Sparse { k }`, or `Full` when no k < n − 1 meets the bounds.
    pub graph: GraphKind,
    /// The threshold `t`.
    pub threshold: usize,
}

struct LnFact(Vec<f64>);

impl LnFact {
    fn new(n: usize) -> Self {
        let mut v = vec![0.0f64; n + 1];
        for i in 1..=n {
            v[i] = v[i - 1] + (i as f64).ln();
        }
        Self(v)
    }
    fn ln_choose(&self, n: usize, k: usize) -> f64 {
        if k > n {
            f64::NEG_INFINITY
        } else {
            self.0[n] - self.0[k] - self.0[n - k]
        }
    }
    /// P[X ≥ c] for X ~ Hypergeometric(population, successes, draws).
    fn hyper_tail(&self, population: usize, successes: usize, draws: usize, c: usize) -> f64 {
        let total = self.ln_choose(population, draws);
        let hi = successes.min(draws);
        (c..=hi)
            .map(|x| {
                let l = self.ln_choose(successes, x)
                    + self.ln_choose(population - successes, draws - x)
                    - total;
                l.exp()
            })
            .sum()
    }
}

impl SparseParameters {
    /// Defaults: σ = 40, η = 20.
    pub fn new(clients: usize, corrupt_fraction: f64, dropout_fraction: f64) -> Self {
        Self {
            clients,
            corrupt_fraction,
            dropout_fraction,
            security_bits: 40,
            correctness_bits: 20,
        }
    }

    /// The smallest even degree `k` and its threshold `t` that meet the three bounds of
    /// §9.6.2, each for the neighbourhood of one client and union-bounded over all `n`:
    ///
    /// 1. privacy: `n · P[C ≥ c*] ≤ 2^-σ` with `C ~ Hyp(n−1, ⌊γn⌋, k)` the corrupt
    ///    neighbours, and `t ≥ c*`;
    /// 2. consistency: `2t > k + c* − 1`, so no two disjoint honest groups of one
    ///    neighbourhood can both reach `t` with the corrupt neighbours' help;
    /// 3. correctness: `n · P[A > k − t] ≤ 2^-η` with `A ~ Hyp(n−1, ⌊(γ+δ)n⌋, k)` the
    ///    absent (dropped or corrupt) neighbours;
    /// 4. connectivity of the honest survivors: `(n²/2) · (γ+δ)^k ≤ 2^-σ`.
    ///
    /// Returns the full graph with `t = ⌊n/2⌋ + 1` (raised to cover `c*`) when no k < n − 1
    /// works.
    pub fn derive(&self) -> Result<DerivedGraph, ConfigError> {
        let n = self.clients;
        if !(3..=MAX_CLIENTS).contains(&n) {
            return Err(ConfigError::SparseParameters(
                "clients must be in 3..=10000",
            ));
        }
        let (g, d) = (self.corrupt_fraction, self.dropout_fraction);
        if !(0.0..0.5).contains(&g) || !(0.0..1.0).contains(&d) || g + d >= 1.0 {
            return Err(ConfigError::SparseParameters(
                "need 0 ≤ γ < 1/2, 0 ≤ δ < 1 and γ + δ < 1",
            ));
        }
        if !(1..=128).contains(&self.security_bits) || !(1..=64).contains(&self.correctness_bits) {
            return Err(ConfigError::SparseParameters(
                "σ must be in 1..=128 and η in 1..=64",
            ));
        }
        let lf = LnFact::new(n);
        let sigma = 2f64.powi(-(self.security_bits as i32));
        let eta = 2f64.powi(-(self.correctness_bits as i32));
        let corrupt = (g * n as f64).floor() as usize;
        let absent = (((g + d) * n as f64).floor() as usize).min(n - 1);
        let alpha = absent as f64 / n as f64;
        let pop = n - 1;
        let mut k = 2;
        while k < n - 1 {
            let c_star = (0..=k + 1)
                .find(|&c| n as f64 * lf.hyper_tail(pop, corrupt, k, c) <= sigma)
                .unwrap_or(k + 1);
            let t = c_star.max((k + c_star).saturating_sub(1) / 2 + 1);
            let connected = (n as f64).powi(2) / 2.0 * alpha.powi(k as i32) <= sigma;
            let correct = t <= k && n as f64 * lf.hyper_tail(pop, absent, k, k - t + 1) <= eta;
            if t <= k + 1 && connected && correct {
                return Ok(DerivedGraph {
                    graph: GraphKind::Sparse { degree: k },
                    threshold: t,
                });
            }
            k += 2;
        }
        let c_star = (0..=n)
            .find(|&c| lf.hyper_tail(pop, corrupt, pop, c) <= sigma)
            .unwrap_or(n);
        Ok(DerivedGraph {
            graph: GraphKind::Full,
            threshold: (n / 2 + 1).max(c_star).min(n),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    pub(crate) fn roster(n: usize) -> Vec<PublicKey> {
        (0..n)
            .map(|i| SecretKey::from_seed(&[i as u8 + 1; 32]).public_key())
            .collect()
    }

    fn cfg(n: usize) -> RoundConfig {
        RoundConfig {
            session_id: [1; 32],
            roster: roster(n),
            vector_len: 10,
            modulus_bits: 16,
            threshold: n / 2 + 1,
            min_survivors: n / 2 + 1,
            graph: GraphKind::Full,
            max_input: 100,
        }
    }

    #[test]
    fn validation_rules() {
        assert_eq!(cfg(5).validate(), Ok(()));
        let mut c = cfg(5);
        c.max_input = 65535 / 5 + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OverflowBudget { .. })
        ));
        c.max_input = 65535 / 5;
        assert_eq!(c.validate(), Ok(()));
        let mut c = cfg(5);
        c.threshold = 6;
        assert!(matches!(c.validate(), Err(ConfigError::Threshold { .. })));
        let mut c = cfg(5);
        c.min_survivors = 2;
        assert!(matches!(c.validate(), Err(ConfigError::MinSurvivors(2))));
        let mut c = cfg(8);
        c.graph = GraphKind::Sparse { degree: 3 };
        assert!(matches!(c.validate(), Err(ConfigError::Degree(3))));
        c.graph = GraphKind::Sparse { degree: 4 };
        c.threshold = 6; // above k + 1 = 5 shareholders
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Threshold {
                threshold: 6,
                max: 5
            })
        ));
        c.threshold = 3;
        c.min_survivors = 3;
        assert_eq!(c.validate(), Ok(()));
        let mut c = cfg(5);
        c.roster[1] = c.roster[0];
        assert_eq!(c.validate(), Err(ConfigError::DuplicateIdentity));
        let mut c = cfg(5);
        c.modulus_bits = 65;
        assert_eq!(c.validate(), Err(ConfigError::ModulusBits(65)));
        assert_eq!(cfg(1).validate(), Err(ConfigError::ClientCount(1)));
        assert!(check_overflow_budget(2, u64::MAX / 2, 64).is_ok());
        assert!(check_overflow_budget(2, u64::MAX / 2 + 1, 64).is_err());
    }

    #[test]
    fn digest_binds_every_field() {
        let base = cfg(5).digest();
        let mut c = cfg(5);
        c.session_id[0] ^= 1;
        assert_ne!(c.digest(), base);
        let mut c = cfg(5);
        c.max_input += 1;
        assert_ne!(c.digest(), base);
        let mut c = cfg(5);
        c.graph = GraphKind::Sparse { degree: 2 };
        assert_ne!(c.digest(), base);
        let mut c = cfg(5);
        c.roster.swap(0, 1);
        assert_ne!(c.digest(), base);
        assert_eq!(cfg(5).digest(), base);
    }

    #[test]
    fn sparse_derivation_meets_its_bounds() {
        let lf = LnFact::new(1000);
        for &(n, g, d) in &[
            (1000usize, 0.0, 0.1),
            (1000, 0.05, 0.05),
            (500, 0.0, 0.3),
            (10_000, 0.01, 0.1),
        ] {
            let p = SparseParameters::new(n, g, d);
            let r = p.derive().unwrap();
            if let GraphKind::Sparse { degree: k } = r.graph {
                assert!(k % 2 == 0 && k < n - 1);
                assert!(2 * r.threshold > k, "consistency needs t > k/2");
                if n <= 1000 {
                    let absent = ((g + d) * n as f64).floor() as usize;
                    let fail = n as f64 * lf.hyper_tail(n - 1, absent, k, k - r.threshold + 1);
                    assert!(fail <= 2f64.powi(-20));
                    // One less degree would not do.
                    let smaller = SparseParameters::new(n, g, d).derive().unwrap();
                    assert_eq!(smaller, r);
                }
            }
        }
        // Tiny n falls back to the full graph.
        let r = SparseParameters::new(10, 0.0, 0.1).derive().unwrap();
        assert_eq!(r.graph, GraphKind::Full);
        assert_eq!(r.threshold, 6);
        assert!(SparseParameters::new(100, 0.6, 0.1).derive().is_err());
        assert!(SparseParameters::new(100, 0.3, 0.7).derive().is_err());
    }

    #[test]
    fn hypergeometric_tail_sanity() {
        let lf = LnFact::new(100);
        // Drawing 10 of 100 with 0 successes: never any.
        assert_eq!(lf.hyper_tail(100, 0, 10, 1), 0.0);
        // Full tail is 1.
        assert!((lf.hyper_tail(100, 30, 10, 0) - 1.0).abs() < 1e-9);
        // P[X ≥ 10] = C(30,10)/C(100,10).
        let exact = (lf.ln_choose(30, 10) - lf.ln_choose(100, 10)).exp();
        assert!((lf.hyper_tail(100, 30, 10, 10) - exact).abs() < 1e-15);
    }
}
