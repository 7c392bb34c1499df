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
    /// The threshold does not meet `t > m` and `2t > h + m` for `h` holders of each
    /// secret of which up to `m` may be corrupt (§9.2, §9.6.2, §17.3).
    #[error(
        "threshold {threshold} is too low for {holders} holders of which {corrupt} may be corrupt: need t > {corrupt} and 2t > {holders} + {corrupt}"
    )]
    ThresholdBelowCorruption {
        /// The threshold.
        threshold: usize,
        /// Holders of each secret: `n` (full graph) or `k + 1` (sparse).
        holders: usize,
        /// Most corrupt holders of one secret: `n_C` (full) or `c* − 1` (sparse).
        corrupt: usize,
    },
}

/// The threshold rule against a semi-malicious server (§9.2 items 2–4, §9.6.2, §17.3): with
/// `holders` holders of each secret, of which at most `corrupt` are corrupt, `t > corrupt`
/// (the corrupt holders alone cannot reconstruct) and `2t > holders + corrupt` (two disjoint
/// groups of honest holders cannot both reach `t` with the corrupt ones, so no owner has both
/// kinds of share revealed).
pub fn check_threshold_rule(
    threshold: usize,
    holders: usize,
    corrupt: usize,
) -> Result<(), ConfigError> {
    if threshold > corrupt && 2 * threshold > holders + corrupt && threshold <= holders {
        Ok(())
    } else {
        Err(ConfigError::ThresholdBelowCorruption {
            threshold,
            holders,
            corrupt,
        })
    }
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

    /// Checks the threshold against the most corrupt holders of one secret (§9.2, §9.6.2,
    /// §17.3): `n_C` for the full graph, `c* − 1` for a sparse one
    /// ([`DerivedGraph::corrupt_holders`]). [`validate`](Self::validate) cannot check this,
    /// because the configuration does not say how many clients may be corrupt; a deployment
    /// that relies on guarantees 3 or 4 of §9.2 MUST call this too.
    pub fn check_corruption(&self, corrupt_holders: usize) -> Result<(), ConfigError> {
        check_threshold_rule(self.threshold, self.shareholders(), corrupt_holders)
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
    /// The most corrupt holders of one client's secrets, except with probability `2^-σ`:
    /// `c* − 1` (sparse) or `⌊γn⌋` (full). `t` meets [`check_threshold_rule`] for it.
    pub corrupt_holders: usize,
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
    /// 2. consistency: `2t > k + c*`, i.e. `2t > (k + 1) + (c* − 1)` for the `k + 1`
    ///    holders of which at most `c* − 1` are corrupt, so no two disjoint honest groups of
    ///    one neighbourhood can both reach `t` with the corrupt neighbours' help;
    /// 3. correctness: `n · P[A > k − t] ≤ 2^-η` with `A ~ Hyp(n−1, ⌊(γ+δ)n⌋, k)` the
    ///    absent (dropped or corrupt) neighbours;
    /// 4. connectivity of the honest survivors: `(n²/2) · (γ+δ)^k ≤ 2^-σ`.
    ///
    /// Returns the full graph with `t = ⌊(n + n_C)/2⌋ + 1`, `n_C = ⌊γn⌋`, when no k < n − 1
    /// works, so that `2t > n + n_C` (§9.2 item 3); both results pass
    /// [`check_threshold_rule`].
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
            // §9.6.2: t ≥ c* and 2t > k + c* (§17.3).
            let t = c_star.max((k + c_star) / 2 + 1);
            let connected = (n as f64).powi(2) / 2.0 * alpha.powi(k as i32) <= sigma;
            let correct = t <= k && n as f64 * lf.hyper_tail(pop, absent, k, k - t + 1) <= eta;
            if t <= k + 1 && connected && correct {
                let corrupt_holders = c_star.saturating_sub(1);
                check_threshold_rule(t, k + 1, corrupt_holders)?;
                return Ok(DerivedGraph {
                    graph: GraphKind::Sparse { degree: k },
                    threshold: t,
                    corrupt_holders,
                });
            }
            k += 2;
        }
        // §9.2 item 3: every client holds a share, `n_C = ⌊γn⌋` of them corrupt; t > n_C and
        // 2t > n + n_C (§17.3).
        let t = (corrupt + 1).max((n + corrupt) / 2 + 1);
        check_threshold_rule(t, n, corrupt)?;
        Ok(DerivedGraph {
            graph: GraphKind::Full,
            threshold: t,
            corrupt_holders: corrupt,
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

    /// Finding L2 (§9.6.2, §17.3): a sparse configuration with `2t = k + c*` lets two
    /// disjoint honest groups of one neighbourhood each reach `t` with the corrupt holders.
    /// The rule refuses it, and the derivation never produces it.
    #[test]
    fn attack_l2_threshold_with_2t_equal_to_k_plus_c_star_is_refused() {
        // k = 6, c* = 2 (at most one corrupt neighbour): t = 4 gives 2t = k + c*.
        let mut c = cfg(20);
        c.graph = GraphKind::Sparse { degree: 6 };
        c.threshold = 4;
        c.min_survivors = 4;
        assert_eq!(c.validate(), Ok(()));
        let c_star = 2;
        assert_eq!(2 * c.threshold, 6 + c_star);
        // The attack: holders = k + 1 = 7, one corrupt; honest groups {3} and {3} are
        // disjoint, and each with the corrupt holder reaches t = 4.
        let honest = 6 + 1 - (c_star - 1);
        assert!(2 * (c.threshold - (c_star - 1)) <= honest);
        assert_eq!(
            c.check_corruption(c_star - 1),
            Err(ConfigError::ThresholdBelowCorruption {
                threshold: 4,
                holders: 7,
                corrupt: 1
            })
        );
        c.threshold = 5;
        c.min_survivors = 5;
        assert_eq!(c.check_corruption(c_star - 1), Ok(()));
        // Every derived sparse graph meets 2t > k + c*.
        for &(n, g, d) in &[
            (1000usize, 0.0, 0.1),
            (1000, 0.05, 0.05),
            (500, 0.0, 0.3),
            (300, 0.1, 0.1),
            (10_000, 0.01, 0.1),
        ] {
            let r = SparseParameters::new(n, g, d).derive().unwrap();
            let holders = match r.graph {
                GraphKind::Sparse { degree } => degree + 1,
                GraphKind::Full => n,
            };
            assert!(
                2 * r.threshold > holders + r.corrupt_holders,
                "{n} {g} {d}: {r:?}"
            );
            assert!(r.threshold > r.corrupt_holders);
        }
    }

    /// Finding L2 (§9.2 item 3, §17.3): the full-graph fallback must meet `2t > n + n_C`;
    /// `t = ⌊n/2⌋ + 1` does not once any client may be corrupt.
    #[test]
    fn attack_l2_full_graph_threshold_ignoring_corrupt_clients_is_refused() {
        // n = 10, n_C = 2: t = 6 lets honest groups of 4 and 4 (8 honest) both reach t.
        let mut c = cfg(10);
        c.threshold = 6;
        c.min_survivors = 6;
        assert_eq!(c.validate(), Ok(()));
        let (threshold, n, corrupt) = (c.threshold, c.clients(), 2);
        assert!(2 * (threshold - corrupt) <= n - corrupt);
        assert_eq!(
            c.check_corruption(2),
            Err(ConfigError::ThresholdBelowCorruption {
                threshold: 6,
                holders: 10,
                corrupt: 2
            })
        );
        c.threshold = 7;
        c.min_survivors = 7;
        assert_eq!(c.check_corruption(2), Ok(()));
        // The derivation's fallback for n = 10, γ = 0.2: n_C = 2, so t = 7, not 6.
        let r = SparseParameters::new(10, 0.2, 0.1).derive().unwrap();
        assert_eq!(r.graph, GraphKind::Full);
        assert_eq!((r.threshold, r.corrupt_holders), (7, 2));
        assert_eq!(
            check_threshold_rule(r.threshold, 10, r.corrupt_holders),
            Ok(())
        );
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
