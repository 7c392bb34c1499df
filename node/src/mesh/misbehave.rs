//! Test-only misbehaviour of a node (config keys `test_*`), so the poisoning harness and
//! tests can check that verified jobs (§14) catch every kind of lie over real QUIC, and that
//! ensembles (§15) survive members that crash or tamper. Applied to whatever model the node
//! runs: on a stage model the poisoned output is an intermediate activation of the whole model.
//!
//! Compiled only with the `test-util` feature, which only the `quorate-adversary` binary turns
//! on: a `quorate` node refuses these keys (`config::ConfigError::TestOnlyKey`).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;

use quorate_protocol::receipt::Commitment;
use quorate_protocol::tensor::{DType, Tensor};

use quorate_runtime::attest::{Attested, Committed};

use crate::mesh::config::NodeConfig;
use crate::mesh::ensemble::TestHooks;
use crate::mesh::infer_service::InferService;

/// The infer service lying and stalling as `test_misbehave`, `test_misbehave_model` and
/// `test_delay_ms` say.
pub fn configure_infer(infer: InferService, cfg: &NodeConfig) -> anyhow::Result<InferService> {
    let only = match cfg.test_misbehave_model.as_deref() {
        Some(name) => {
            let path = cfg.models.join(name);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("test_misbehave_model: cannot read {}", path.display()))?;
            Some(quorate_crypto::tensor_digest::sha256(&bytes))
        }
        None => None,
    };
    let misbehave = cfg
        .test_misbehave
        .as_deref()
        .map(Mode::parse)
        .transpose()?
        .map(|m| Misbehaviour::new(m, only));
    Ok(infer.with_test_behaviour(
        Duration::from_millis(cfg.test_delay_ms),
        misbehave,
        cfg.test_omit_from_log,
    ))
}

/// The ensemble member's crash and tamper hooks, as `test_exit_at_round` and
/// `test_tamper_masked` say.
pub fn ensemble_hooks(cfg: &NodeConfig) -> TestHooks {
    TestHooks {
        exit_at_round: cfg.test_exit_at_round,
        tamper_masked: cfg.test_tamper_masked.clone(),
    }
}

/// One way of lying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Add ±magnitude to every floating-point output element, and sign that.
    Noise(f64),
    /// Negate every floating-point output element, and sign that.
    SignFlip,
    /// Return (and sign) the outputs of the previous request instead of this one's.
    Stale,
    /// Answer with the previous response verbatim (a receipt of another job).
    Replay,
    /// Sign the true outputs but return noised ones.
    SignOther,
    /// Answer with random bytes.
    Garbage,
}

impl Mode {
    /// Parses `noise:1e-3`, `sign_flip`, `stale`, `replay`, `sign_other` or `garbage`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "sign_flip" => Mode::SignFlip,
            "stale" => Mode::Stale,
            "replay" => Mode::Replay,
            "sign_other" => Mode::SignOther,
            "garbage" => Mode::Garbage,
            t => match t.strip_prefix("noise:").map(str::parse::<f64>) {
                Some(Ok(x)) if x.is_finite() && x > 0.0 => Mode::Noise(x),
                _ => anyhow::bail!(
                    "test_misbehave {t:?}: use noise:MAGNITUDE, sign_flip, stale, replay, sign_other or garbage"
                ),
            },
        })
    }
}

/// A misbehaving node's mode and the memory some modes need.
pub struct Misbehaviour {
    /// The mode.
    pub mode: Mode,
    /// Only this model is affected (all when `None`).
    only: Option<[u8; 32]>,
    last_outputs: Mutex<Option<Vec<Tensor>>>,
    last_response: Mutex<Option<Vec<u8>>>,
}

fn map_floats(t: &Tensor, f: &mut dyn FnMut(f64) -> f64) -> Tensor {
    let data: Vec<u8> = match t.dtype() {
        DType::F32 => t
            .to_f64_vec()
            .into_iter()
            .flat_map(|x| (f(x) as f32).to_le_bytes())
            .collect(),
        DType::F64 => t
            .to_f64_vec()
            .into_iter()
            .flat_map(|x| f(x).to_le_bytes())
            .collect(),
        _ => return t.clone(),
    };
    Tensor::new(t.name(), t.dtype(), t.shape().to_vec(), data).unwrap_or_else(|_| t.clone())
}

fn noised(t: &Tensor, magnitude: f64) -> Tensor {
    let mut signs = quorate_crypto::random::bytes::<64>()
        .unwrap_or([0x55; 64])
        .into_iter()
        .cycle();
    map_floats(t, &mut |x| {
        if signs.next().unwrap_or(0) & 1 == 0 {
            x + magnitude
        } else {
            x - magnitude
        }
    })
}

impl Misbehaviour {
    /// A misbehaviour in `mode`.
    pub fn new(mode: Mode, only: Option<[u8; 32]>) -> Self {
        Self {
            mode,
            only,
            last_outputs: Mutex::new(None),
            last_response: Mutex::new(None),
        }
    }

    /// Whether requests for `model` are affected.
    pub fn applies_to(&self, model: &[u8; 32]) -> bool {
        self.only.is_none_or(|m| &m == model)
    }

    /// Whole-response modes: the bytes to send instead of the honest answer, if any.
    pub fn replace_response(&self) -> Option<Vec<u8>> {
        match self.mode {
            Mode::Garbage => Some(
                quorate_crypto::random::bytes::<48>()
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
            ),
            Mode::Replay => self.last_response.lock().ok()?.clone(),
            _ => None,
        }
    }

    /// Remembers an honest response for `replay`.
    pub fn remember_response(&self, bytes: &[u8]) {
        if let Ok(mut last) = self.last_response.lock()
            && last.is_none()
        {
            *last = Some(bytes.to_vec());
        }
    }

    /// Tampers with a run before it is signed: changes the outputs and (except for
    /// `sign_other`) the commitments the node will sign.
    pub fn tamper(&self, attested: &mut Attested) {
        let honest: Vec<Tensor> = attested.outputs.iter().map(|c| c.tensor.clone()).collect();
        let lie: Vec<Tensor> = match self.mode {
            Mode::Noise(m) => honest.iter().map(|t| noised(t, m)).collect(),
            Mode::SignOther => honest.iter().map(|t| noised(t, 0.25)).collect(),
            Mode::SignFlip => honest.iter().map(|t| map_floats(t, &mut |x| -x)).collect(),
            Mode::Stale => {
                let Ok(mut last) = self.last_outputs.lock() else {
                    return;
                };
                let previous = last.replace(honest.clone());
                match previous {
                    Some(p) if p.len() == honest.len() => p,
                    _ => honest.clone(),
                }
            }
            Mode::Replay | Mode::Garbage => return,
        };
        for (c, t) in attested.outputs.iter_mut().zip(lie) {
            *c = Committed {
                tensor: t,
                salt: c.salt,
            };
        }
        if self.mode != Mode::SignOther {
            attested.payload.outputs = attested
                .outputs
                .iter()
                .map(|c| Commitment::to(&c.tensor, c.salt.as_ref()))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("noise:1e-3").unwrap(), Mode::Noise(1e-3));
        assert_eq!(Mode::parse("sign_flip").unwrap(), Mode::SignFlip);
        for bad in ["noise:", "noise:-1", "noise:nan", "flip", ""] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn noise_has_the_given_magnitude() {
        let t = Tensor::from_f32("y", vec![4], &[1.0, 0.5, 0.0, -2.0]).unwrap();
        let n = noised(&t, 0.125);
        for (a, b) in t.to_f64_vec().iter().zip(n.to_f64_vec()) {
            assert_eq!((a - b).abs(), 0.125);
        }
    }
}
