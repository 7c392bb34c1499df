//! Quantized linear models, format `quorate-qlinear/1` (models/README.md, SPEC §16.1):
//! parsing with bounds, the client's quantization, the plaintext score, and the split of the
//! weights into pre-shifted input planes that the encrypted evaluation adds up.

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// Format tag of a qlinear model file.
pub const FORMAT: &str = "quorate-qlinear/1";
/// Number of features every qlinear model reads.
pub const FEATURES: usize = 8;
/// Pre-shifted copies the client sends per feature: `q, 2q, 4q, 8q` (§16.4).
pub const PLANES: usize = 4;
/// Largest model file accepted.
pub const MAX_MODEL_LEN: u64 = 64 << 10;
/// Largest |score| a valid model can produce (fits i16; §16.1).
pub const MAX_ABS_SCORE: i64 = 32767;

/// A parsed and checked qlinear model.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QLinear {
    /// Always [`FORMAT`].
    pub format: String,
    /// Display name.
    pub name: String,
    /// Column indices into the raw features, ascending.
    pub feature_indices: Vec<usize>,
    /// Per-feature minimum used for quantization.
    pub feature_min: Vec<f64>,
    /// Per-feature maximum used for quantization.
    pub feature_max: Vec<f64>,
    /// Integer weights in -8..=7.
    pub weights: Vec<i64>,
    /// Integer bias.
    pub bias: i64,
    /// Class meant by `score > 0`.
    pub positive_class: String,
}

/// Which encrypted inputs the fast evaluation adds: index `feature * PLANES + bit` of the
/// pre-shifted list, in the positive or in the negative sum (§16.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaneTerms {
    /// Inputs summed with a plus sign.
    pub positive: Vec<usize>,
    /// Inputs summed with a minus sign.
    pub negative: Vec<usize>,
}

impl QLinear {
    /// Parses and checks a model file.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            bytes.len() as u64 <= MAX_MODEL_LEN,
            "a qlinear model is at most {MAX_MODEL_LEN} bytes"
        );
        let m: QLinear = serde_json::from_slice(bytes).context("not a qlinear model")?;
        ensure!(
            m.format == FORMAT,
            "format is {:?}, expected {FORMAT:?}",
            m.format
        );
        for (what, n) in [
            ("feature_indices", m.feature_indices.len()),
            ("feature_min", m.feature_min.len()),
            ("feature_max", m.feature_max.len()),
            ("weights", m.weights.len()),
        ] {
            ensure!(n == FEATURES, "{what} has {n} entries, expected {FEATURES}");
        }
        ensure!(
            m.weights.iter().all(|w| (-8..=7).contains(w)),
            "weights must lie in -8..=7"
        );
        ensure!(
            m.feature_min
                .iter()
                .zip(&m.feature_max)
                .all(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi > lo),
            "every feature needs finite feature_min < feature_max"
        );
        let worst = 255 * m.weights.iter().map(|w| w.abs()).sum::<i64>();
        ensure!(
            m.bias.abs() + worst <= MAX_ABS_SCORE,
            "|bias| + 255·Σ|w| = {} exceeds {MAX_ABS_SCORE}: scores would not fit 16 bits",
            m.bias.abs() + worst
        );
        Ok(m)
    }

    /// Quantizes raw features (models/README.md): `clamp(floor(t + 0.5), 0, 255)` with
    /// `t = (x[j] - min) / (max - min) * 255`.
    pub fn quantize(&self, raw: &[f64]) -> anyhow::Result<[u16; FEATURES]> {
        let mut q = [0u16; FEATURES];
        for (i, &j) in self.feature_indices.iter().enumerate() {
            let Some(&x) = raw.get(j) else {
                bail!(
                    "the input has {} features; the model reads index {j}",
                    raw.len()
                );
            };
            ensure!(x.is_finite(), "feature {j} is not a finite number");
            let t = (x - self.feature_min[i]) / (self.feature_max[i] - self.feature_min[i]) * 255.0;
            // In range after the clamp, so the cast is exact.
            q[i] = (t + 0.5).floor().clamp(0.0, 255.0) as u16;
        }
        Ok(q)
    }

    /// The plaintext score `bias + Σ w_i q_i`.
    pub fn score(&self, q: &[u16; FEATURES]) -> i64 {
        self.bias
            + self
                .weights
                .iter()
                .zip(q)
                .map(|(w, &q)| w * i64::from(q))
                .sum::<i64>()
    }

    /// The plane indices whose sums give `Σ w_i q_i` (positive sum minus negative sum).
    pub fn plane_terms(&self) -> PlaneTerms {
        let mut t = PlaneTerms {
            positive: Vec::new(),
            negative: Vec::new(),
        };
        for (i, &w) in self.weights.iter().enumerate() {
            let side = if w > 0 {
                &mut t.positive
            } else {
                &mut t.negative
            };
            for bit in 0..PLANES {
                if w.unsigned_abs() >> bit & 1 == 1 {
                    side.push(i * PLANES + bit);
                }
            }
        }
        t
    }

    /// Whether the model shares the feature subset and scaling of `other` (one encrypted input
    /// then serves both).
    pub fn same_inputs(&self, other: &QLinear) -> bool {
        self.feature_indices == other.feature_indices
            && self.feature_min == other.feature_min
            && self.feature_max == other.feature_max
    }
}

/// The pre-shifted planes the client encrypts: `q_i << bit` at `i * PLANES + bit`.
pub fn planes(q: &[u16; FEATURES]) -> Vec<u16> {
    q.iter()
        .flat_map(|&q| (0..PLANES).map(move |bit| q << bit))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    #[test]
    fn bundled_models_match_the_generator() {
        let dir = models_dir();
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("samples/qlinear-expected.json")).unwrap(),
        )
        .unwrap();
        let raw: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("samples/qlinear-features.json")).unwrap(),
        )
        .unwrap();
        let raw: Vec<f64> = serde_json::from_value(raw["features"].clone()).unwrap();
        let mut sum = 0;
        for k in 1..=3 {
            let file = format!("qlinear-{k}.json");
            let m = QLinear::parse(&std::fs::read(dir.join(&file)).unwrap()).unwrap();
            let q = m.quantize(&raw).unwrap();
            let want: Vec<u16> = serde_json::from_value(expected["quantized"].clone()).unwrap();
            assert_eq!(q.to_vec(), want);
            let s = m.score(&q);
            assert_eq!(s, expected["scores"][&file].as_i64().unwrap(), "{file}");
            // The plane split computes the same number.
            let p = planes(&q);
            let t = m.plane_terms();
            let plane_sum = m.bias + t.positive.iter().map(|&i| i64::from(p[i])).sum::<i64>()
                - t.negative.iter().map(|&i| i64::from(p[i])).sum::<i64>();
            assert_eq!(plane_sum, s);
            sum += s;
        }
        assert_eq!(sum, expected["sum"].as_i64().unwrap());
    }

    #[test]
    fn bad_models_are_refused() {
        let good = std::fs::read(models_dir().join("qlinear-1.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["weights"][0] = 9.into();
        assert!(QLinear::parse(v.to_string().as_bytes()).is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["bias"] = 30000.into();
        assert!(QLinear::parse(v.to_string().as_bytes()).is_err());
        assert!(QLinear::parse(b"{}").is_err());
    }
}
