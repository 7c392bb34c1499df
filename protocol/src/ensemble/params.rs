//! Ensemble job parameters (§15.2): the contribution mode, the fixed-point scale rule, DP
//! noise parameters, their strict CBOR codec, validation and digest, and the decoding of a
//! SecAgg sum into the job's result.

use ciborium::value::Value;
use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;
use sha2::{Digest, Sha256};

use super::{MAX_CLASSES, MAX_MEMBERS, TAG_PARAMS};
use crate::cbor::{self, read};
use crate::messages::common::MessageError;
use crate::secagg::config::{GraphKind, RoundConfig};

/// What members contribute (§15.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fixed-point class probabilities; the result is their mean.
    Mean,
    /// One-hot votes for the arg-max class; the result is the vote histogram.
    Votes,
}

impl Mode {
    /// Wire code.
    pub fn code(self) -> u64 {
        match self {
            Mode::Mean => 1,
            Mode::Votes => 2,
        }
    }
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mean => "mean",
            Mode::Votes => "votes",
        }
    }

    /// The fixed-point scale rule (§15.2), written once: a new job in mean mode encodes
    /// probabilities at 2^16, votes are integers (0). [`Mode::check_scale_bits`] says what
    /// a received job may state.
    pub fn scale_bits(self) -> u32 {
        match self {
            Mode::Mean => 16,
            Mode::Votes => 0,
        }
    }

    /// Checks a job's `scale_bits` against this mode (§15.2); see [`Mode::scale_bits`].
    pub fn check_scale_bits(self, scale_bits: u32) -> Result<(), MessageError> {
        match self {
            Mode::Mean if !(1..=30).contains(&scale_bits) => {
                Err(bad("mean mode needs scale_bits in 1..=30"))
            }
            Mode::Votes if scale_bits != 0 => Err(bad("votes mode needs scale_bits 0")),
            _ => Ok(()),
        }
    }
}

/// Distributed DP noise parameters (§15.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseParams {
    /// Target ε, in millionths.
    pub epsilon_micro: u64,
    /// Target δ, in 10^-12 units.
    pub delta_pico: u64,
    /// Skellam parameter μ of each member's noise, in thousandths.
    pub mu_milli: u64,
    /// Each member's noise is clipped to `[-bound, bound]` and offset by `bound`.
    pub bound: u64,
}

/// Everything members and aggregator agree on for one ensemble job (§15.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleParams {
    /// Contribution mode.
    pub mode: Mode,
    /// Fresh SecAgg session id.
    pub session_id: [u8; 32],
    /// The aggregator's identity key: the only peer whose rounds a member answers (§17).
    pub aggregator: PublicKey,
    /// Member nodes' identity keys; a member's SecAgg index is its position.
    pub members: Vec<PublicKey>,
    /// The model each member runs, in member order; each MUST be one the roster lists for
    /// that member (§15.2).
    pub models: Vec<Digest32>,
    /// Classes `K` = SecAgg vector length.
    pub classes: u32,
    /// SecAgg modulus bits.
    pub modulus_bits: u32,
    /// Shamir threshold.
    pub threshold: u32,
    /// Fewest contributors the aggregator may learn a sum of.
    pub min_survivors: u32,
    /// Fixed-point scale is 2^scale_bits (mean mode; 0 for votes).
    pub scale_bits: u32,
    /// Optional DP noise.
    pub noise: Option<NoiseParams>,
}

fn int(v: u64) -> Value {
    read::int(v)
}

fn bad(m: impl Into<String>) -> MessageError {
    MessageError(m.into())
}

impl EnsembleParams {
    /// Builds parameters with the smallest modulus that fits the overflow budget.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        session_id: [u8; 32],
        aggregator: PublicKey,
        members: Vec<PublicKey>,
        models: Vec<Digest32>,
        classes: u32,
        threshold: u32,
        noise: Option<NoiseParams>,
    ) -> Result<Self, MessageError> {
        let mut p = Self {
            mode,
            session_id,
            aggregator,
            min_survivors: threshold,
            members,
            models,
            classes,
            modulus_bits: 64,
            threshold,
            scale_bits: mode.scale_bits(),
            noise,
        };
        let total = (p.members.len() as u128) * u128::from(p.max_input()?);
        p.modulus_bits = (128 - total.leading_zeros()).clamp(1, 64);
        p.validate()?;
        Ok(p)
    }

    /// `offset` per contribution: the fixed-point offset plus the noise offset.
    pub fn offset(&self) -> u64 {
        let base = match self.mode {
            Mode::Mean => 1u64 << self.scale_bits,
            Mode::Votes => 0,
        };
        base + self.noise.map_or(0, |n| n.bound)
    }

    /// The largest element any member may contribute (§15.2).
    pub fn max_input(&self) -> Result<u64, MessageError> {
        let base = match self.mode {
            Mode::Mean => 2u64 << self.scale_bits,
            Mode::Votes => 1,
        };
        let noise = self.noise.map_or(0, |n| n.bound);
        noise
            .checked_mul(2)
            .and_then(|n| n.checked_add(base))
            .ok_or_else(|| bad("noise bound too large"))
    }

    /// Checks the §15.2 rules and the §9.3 rules of the derived round.
    pub fn validate(&self) -> Result<(), MessageError> {
        if !(2..=MAX_MEMBERS).contains(&self.members.len()) {
            return Err(bad(format!(
                "{} members: an ensemble has 2 to {MAX_MEMBERS}",
                self.members.len()
            )));
        }
        if self.models.len() != self.members.len() {
            return Err(bad(format!(
                "{} models for {} members: one model per member",
                self.models.len(),
                self.members.len()
            )));
        }
        if self.members.contains(&self.aggregator) {
            return Err(bad("the aggregator cannot be one of the members"));
        }
        if !(1..=MAX_CLASSES as u32).contains(&self.classes) {
            return Err(bad(format!(
                "{} classes is outside 1..={MAX_CLASSES}",
                self.classes
            )));
        }
        self.mode.check_scale_bits(self.scale_bits)?;
        // §9.3: against a semi-malicious aggregator the full graph needs 2t > n.
        if 2 * self.threshold as usize <= self.members.len() {
            return Err(bad(format!(
                "threshold {} must exceed half of the {} members",
                self.threshold,
                self.members.len()
            )));
        }
        if let Some(n) = self.noise
            && (n.bound > 1 << 40 || n.epsilon_micro == 0 || n.delta_pico == 0)
        {
            return Err(bad("noise parameters out of range"));
        }
        self.round_config()
            .validate()
            .map_err(|e| bad(format!("round configuration: {e}")))
    }

    /// The SecAgg round this job runs (§15.2): full graph, `max_input` as above.
    pub fn round_config(&self) -> RoundConfig {
        RoundConfig {
            session_id: self.session_id,
            roster: self.members.clone(),
            vector_len: self.classes as usize,
            modulus_bits: self.modulus_bits,
            threshold: self.threshold as usize,
            min_survivors: self.min_survivors as usize,
            graph: GraphKind::Full,
            max_input: self.max_input().unwrap_or(u64::MAX),
        }
    }

    /// The CBOR map of §15.2.
    pub fn to_value(&self) -> Value {
        let noise = match self.noise {
            None => Value::Null,
            Some(n) => Value::Map(vec![
                (int(1), int(n.epsilon_micro)),
                (int(2), int(n.delta_pico)),
                (int(3), int(n.mu_milli)),
                (int(4), int(n.bound)),
            ]),
        };
        Value::Map(vec![
            (int(1), int(self.mode.code())),
            (int(2), Value::Bytes(self.session_id.to_vec())),
            (
                int(3),
                Value::Array(
                    self.members
                        .iter()
                        .map(|k| Value::Bytes(k.to_bytes().to_vec()))
                        .collect(),
                ),
            ),
            (int(4), int(self.classes.into())),
            (int(5), int(self.modulus_bits.into())),
            (int(6), int(self.threshold.into())),
            (int(7), int(self.min_survivors.into())),
            (int(8), int(self.scale_bits.into())),
            (int(9), noise),
            (int(10), Value::Bytes(self.aggregator.to_bytes().to_vec())),
            (
                int(11),
                Value::Array(
                    self.models
                        .iter()
                        .map(|m| Value::Bytes(m.to_vec()))
                        .collect(),
                ),
            ),
        ])
    }

    /// Strict decoding of the §15.2 map, then [`Self::validate`].
    pub fn from_value(v: &Value) -> Result<Self, MessageError> {
        let f = exact_fields(v, "params", 11)?;
        let u32_of = |v: &Value, name: &'static str| -> Result<u32, MessageError> {
            u32::try_from(read::uint(v, name)?).map_err(|_| bad(format!("{name} too large")))
        };
        let mode = match read::uint(f[0], "mode")? {
            1 => Mode::Mean,
            2 => Mode::Votes,
            m => return Err(bad(format!("unknown mode {m}"))),
        };
        let members = read::array(f[2], "members", MAX_MEMBERS)?
            .iter()
            .map(|k| {
                let b: [u8; 32] = read::bytes_n(k, "member key")?;
                PublicKey::from_bytes(&b).map_err(|e| bad(format!("member key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let noise = match f[8] {
            Value::Null => None,
            v => {
                let n = exact_fields(v, "noise", 4)?;
                Some(NoiseParams {
                    epsilon_micro: read::uint(n[0], "epsilon")?,
                    delta_pico: read::uint(n[1], "delta")?,
                    mu_milli: read::uint(n[2], "mu")?,
                    bound: read::uint(n[3], "noise bound")?,
                })
            }
        };
        let aggregator: [u8; 32] = read::bytes_n(f[9], "aggregator key")?;
        let models = read::array(f[10], "models", MAX_MEMBERS)?
            .iter()
            .map(|m| read::bytes_n::<32>(m, "member model"))
            .collect::<Result<Vec<_>, _>>()?;
        let p = Self {
            mode,
            session_id: read::bytes_n(f[1], "session id")?,
            aggregator: PublicKey::from_bytes(&aggregator)
                .map_err(|e| bad(format!("aggregator key: {e}")))?,
            members,
            models,
            classes: u32_of(f[3], "classes")?,
            modulus_bits: u32_of(f[4], "modulus bits")?,
            threshold: u32_of(f[5], "threshold")?,
            min_survivors: u32_of(f[6], "min survivors")?,
            scale_bits: u32_of(f[7], "scale bits")?,
            noise,
        };
        p.validate()?;
        Ok(p)
    }

    /// SHA-256(tag ‖ CBOR(params)): bound into member receipts as `policy` (§15.4).
    pub fn digest(&self) -> Digest32 {
        let bytes = cbor::encode(&self.to_value()).unwrap_or_default();
        Sha256::new()
            .chain_update(TAG_PARAMS)
            .chain_update(bytes)
            .finalize()
            .into()
    }

    /// Decodes a SecAgg sum of `contributors` contributions (§15.2): mean probabilities in
    /// mean mode, vote counts in votes mode. Noise offsets are removed, noise itself stays.
    pub fn decode_sum(&self, sum: &[u64], contributors: usize) -> Vec<f64> {
        let base = i128::from(self.offset()) * contributors as i128;
        sum.iter()
            .map(|&s| {
                let v = (i128::from(s) - base) as f64;
                match self.mode {
                    Mode::Mean => v / (1u64 << self.scale_bits) as f64 / contributors.max(1) as f64,
                    Mode::Votes => v,
                }
            })
            .collect()
    }
}

/// Reads a map whose keys are exactly 1..=n in order.
pub(crate) fn exact_fields<'a>(
    v: &'a Value,
    what: &'static str,
    n: u64,
) -> Result<Vec<&'a Value>, MessageError> {
    let allowed: Vec<u64> = (1..=n).collect();
    let m = read::int_map(v, what, &allowed)?;
    if m.len() as u64 != n || m.iter().enumerate().any(|(i, (k, _))| *k != i as u64 + 1) {
        return Err(bad(format!("{what}: fields must be exactly 1..={n}")));
    }
    Ok(m.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    fn params(mode: Mode) -> EnsembleParams {
        let members = (0..5u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]).public_key())
            .collect();
        let aggregator = SecretKey::from_seed(&[99; 32]).public_key();
        EnsembleParams::new(
            mode,
            [7; 32],
            aggregator,
            members,
            vec![[4; 32]; 5],
            2,
            3,
            None,
        )
        .unwrap()
    }

    #[test]
    fn params_roundtrip_and_modulus_fits_the_budget() {
        for mode in [Mode::Mean, Mode::Votes] {
            let p = params(mode);
            assert_eq!(EnsembleParams::from_value(&p.to_value()).unwrap(), p);
            let total = 5u128 * u128::from(p.max_input().unwrap());
            assert!(total < 1u128 << p.modulus_bits);
            assert!(total >= 1u128 << (p.modulus_bits - 1));
        }
        assert_eq!(params(Mode::Votes).modulus_bits, 3);
    }

    #[test]
    fn bad_params_are_rejected() {
        let mut p = params(Mode::Mean);
        p.threshold = 9;
        assert!(EnsembleParams::from_value(&p.to_value()).is_err());
        let mut p = params(Mode::Mean);
        p.modulus_bits = 2;
        assert!(EnsembleParams::from_value(&p.to_value()).is_err());
        let mut p = params(Mode::Mean);
        p.threshold = 2;
        p.min_survivors = 2;
        assert!(p.validate().is_err(), "2t > n is required");
        let mut p = params(Mode::Votes);
        p.members.truncate(1);
        assert!(p.validate().is_err());
    }

    #[test]
    fn decode_removes_offsets() {
        let p = params(Mode::Mean);
        let s = 1u64 << 16;
        // Two contributions of 0.25 and 0.75 on class 0.
        let sum = [(s / 4 + s) + (3 * s / 4 + s)];
        assert_eq!(p.decode_sum(&sum, 2), vec![0.5]);
    }
}
