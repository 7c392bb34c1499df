//! Comparison policies of verified jobs (§14.2): how two replicas' outputs are compared, the
//! canonical encoding, and the digest every replica's receipt binds in its `policy` field.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::{Digest32, sha256};

use crate::cbor::{self, read};
use crate::tensor::{DType, Tensor};

/// Largest encoded policy.
pub const MAX_POLICY_LEN: usize = 256;
/// Policy format version (field 1).
pub const POLICY_VERSION: u64 = 1;

/// How the outputs of two replicas are compared (§14.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// Bit-identical outputs.
    Exact,
    /// Floating-point elements may differ by `atol + rtol * max(|a|, |b|)`; other types exact.
    Tolerance {
        /// Absolute tolerance (finite, >= 0).
        atol: f64,
        /// Relative tolerance (finite, >= 0).
        rtol: f64,
    },
    /// The per-dtype defaults of §14.3 (across execution providers).
    Default,
    /// Embeddings: every vector along the last axis of a floating tensor has cosine
    /// similarity at least `min` with its counterpart (§14.2); other types exact.
    Cosine {
        /// Smallest accepted cosine similarity (finite, in [0, 1]).
        min: f64,
    },
    /// Classifiers: every vector along the last axis of a floating tensor has the same index
    /// of its largest element (§14.2); other types exact.
    Argmax,
    /// Classifiers: every vector along the last axis of a floating tensor has the same set of
    /// `k` largest elements' indices (§14.2); other types exact.
    TopK {
        /// How many classes (1..=[`MAX_TOPK`]).
        k: u64,
    },
}

/// Largest `k` of a `topk` policy.
pub const MAX_TOPK: u64 = 1024;

/// Errors parsing or decoding a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

impl From<cbor::CborError> for PolicyError {
    fn from(e: cbor::CborError) -> Self {
        PolicyError(e.to_string())
    }
}
impl From<read::FieldError> for PolicyError {
    fn from(e: read::FieldError) -> Self {
        PolicyError(e.to_string())
    }
}

/// The per-dtype default tolerances of §14.3 as `(atol, rtol)`; `None` means exact.
/// fp32 follows ONNX Runtime's own provider tests (atol 1e-5, rtol 1e-4).
pub fn default_tolerance(dtype: DType) -> Option<(f64, f64)> {
    match dtype {
        DType::F32 => Some((1e-5, 1e-4)),
        DType::F64 => Some((1e-10, 1e-8)),
        _ => None,
    }
}

fn valid_tol(x: f64) -> bool {
    // -0.0 is refused so that every tolerance has exactly one encoding.
    x.is_finite() && x.is_sign_positive() && (0.0..=1e6).contains(&x)
}

impl Policy {
    /// Kind code (field 2).
    pub fn code(&self) -> u64 {
        match self {
            Policy::Exact => 1,
            Policy::Tolerance { .. } => 2,
            Policy::Default => 3,
            Policy::Cosine { .. } => 4,
            Policy::Argmax => 5,
            Policy::TopK { .. } => 6,
        }
    }

    /// Parses the CLI form: `exact`, `default`, `tolerance:atol=A,rtol=B`, `cosine:min=C`,
    /// `argmax`, or `topk:k=K`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let text = text.trim();
        match text {
            "exact" => return Ok(Policy::Exact),
            "default" => return Ok(Policy::Default),
            "argmax" => return Ok(Policy::Argmax),
            _ => {}
        }
        if let Some(param) = text.strip_prefix("cosine:") {
            let v = param
                .trim()
                .strip_prefix("min=")
                .ok_or_else(|| PolicyError("cosine takes min=C, e.g. cosine:min=0.999".into()))?;
            let min: f64 = v
                .trim()
                .parse()
                .map_err(|_| PolicyError(format!("min={v:?} is not a number")))?;
            if !valid_cosine(min) {
                return Err(PolicyError(format!("min={v} must be in [0, 1]")));
            }
            return Ok(Policy::Cosine { min });
        }
        if let Some(param) = text.strip_prefix("topk:") {
            let v = param
                .trim()
                .strip_prefix("k=")
                .ok_or_else(|| PolicyError("topk takes k=K, e.g. topk:k=5".into()))?;
            let k: u64 = v
                .trim()
                .parse()
                .map_err(|_| PolicyError(format!("k={v:?} is not a whole number")))?;
            if !(1..=MAX_TOPK).contains(&k) {
                return Err(PolicyError(format!("k={k} must be in 1..={MAX_TOPK}")));
            }
            return Ok(Policy::TopK { k });
        }
        let Some(params) = text.strip_prefix("tolerance:") else {
            return Err(PolicyError(format!(
                "unknown policy {text:?}: use exact, default, tolerance:atol=A,rtol=B, \
                 cosine:min=C, argmax or topk:k=K"
            )));
        };
        let (mut atol, mut rtol) = (None, None);
        for part in params.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| PolicyError(format!("{part:?} is not KEY=VALUE")))?;
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| PolicyError(format!("{k}={v:?} is not a number")))?;
            if !valid_tol(x) {
                return Err(PolicyError(format!(
                    "{k}={v} must be finite, at least 0 and at most 1e6"
                )));
            }
            match k.trim() {
                "atol" if atol.is_none() => atol = Some(x),
                "rtol" if rtol.is_none() => rtol = Some(x),
                other => {
                    return Err(PolicyError(format!(
                        "unknown or repeated tolerance key {other:?} (atol, rtol)"
                    )));
                }
            }
        }
        match (atol, rtol) {
            (Some(atol), Some(rtol)) => Ok(Policy::Tolerance { atol, rtol }),
            _ => Err(PolicyError("tolerance needs both atol= and rtol=".into())),
        }
    }

    /// Canonical deterministic-CBOR encoding (§14.2).
    pub fn to_cbor(&self) -> Result<Vec<u8>, PolicyError> {
        let mut m = vec![
            (read::int(1), read::int(POLICY_VERSION)),
            (read::int(2), read::int(self.code())),
        ];
        match self {
            Policy::Tolerance { atol, rtol } => {
                m.push((read::int(3), Value::Float(*atol)));
                m.push((read::int(4), Value::Float(*rtol)));
            }
            Policy::Cosine { min } => m.push((read::int(3), Value::Float(*min))),
            Policy::TopK { k } => m.push((read::int(3), read::int(*k))),
            Policy::Exact | Policy::Default | Policy::Argmax => {}
        }
        Ok(cbor::encode(&Value::Map(m))?)
    }

    /// Strict decoding of the canonical encoding.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, PolicyError> {
        let v = cbor::decode_deterministic(bytes, MAX_POLICY_LEN)?;
        let entries = read::int_map(&v, "policy", &[1, 2, 3, 4])?;
        let get = |k: u64| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let version = read::uint(
            get(1).ok_or_else(|| PolicyError("version missing".into()))?,
            "version",
        )?;
        if version != POLICY_VERSION {
            return Err(PolicyError(format!("unsupported policy version {version}")));
        }
        let code = read::uint(
            get(2).ok_or_else(|| PolicyError("kind missing".into()))?,
            "kind",
        )?;
        let float = |k: u64, name: &str| -> Result<f64, PolicyError> {
            match get(k) {
                Some(Value::Float(x)) if valid_tol(*x) => Ok(*x),
                _ => Err(PolicyError(format!(
                    "{name} must be a finite float in [0, 1e6]"
                ))),
            }
        };
        let policy = match (code, entries.len()) {
            (1, 2) => Policy::Exact,
            (3, 2) => Policy::Default,
            (2, 4) => Policy::Tolerance {
                atol: float(3, "atol")?,
                rtol: float(4, "rtol")?,
            },
            (4, 3) => match get(3) {
                Some(Value::Float(min)) if valid_cosine(*min) => Policy::Cosine { min: *min },
                _ => return Err(PolicyError("cosine min must be a float in [0, 1]".into())),
            },
            (5, 2) => Policy::Argmax,
            (6, 3) => {
                let k = read::uint(
                    get(3).ok_or_else(|| PolicyError("topk k missing".into()))?,
                    "k",
                )?;
                if !(1..=MAX_TOPK).contains(&k) {
                    return Err(PolicyError(format!("topk k={k} must be in 1..={MAX_TOPK}")));
                }
                Policy::TopK { k }
            }
            _ => {
                return Err(PolicyError(format!(
                    "policy kind {code} with {} fields is not defined",
                    entries.len()
                )));
            }
        };
        // Only the canonical form is accepted (e.g. -0.0 is not a valid tolerance).
        if policy.to_cbor()? != bytes {
            return Err(PolicyError("policy is not in canonical form".into()));
        }
        Ok(policy)
    }

    /// SHA-256 of the canonical encoding: the value of the receipt's `policy` field (§4.2).
    pub fn digest(&self) -> Result<Digest32, PolicyError> {
        Ok(sha256(&self.to_cbor()?))
    }

    /// The `(atol, rtol)` applied to elements of `dtype`; `None` means bit-exact.
    pub fn tolerance_for(&self, dtype: DType) -> Option<(f64, f64)> {
        match (self, dtype) {
            (Policy::Exact, _) => None,
            (Policy::Tolerance { atol, rtol }, DType::F32 | DType::F64) => Some((*atol, *rtol)),
            (Policy::Tolerance { .. }, _) => None,
            (Policy::Default, d) => default_tolerance(d),
            (Policy::Cosine { .. } | Policy::Argmax | Policy::TopK { .. }, _) => None,
        }
    }

    /// Whether two tensors agree under this policy (§14.2). Symmetric by construction.
    pub fn agree(&self, a: &Tensor, b: &Tensor) -> bool {
        if a.name() != b.name() || a.dtype() != b.dtype() || a.shape() != b.shape() {
            return false;
        }
        let floating = matches!(a.dtype(), DType::F32 | DType::F64);
        match self {
            Policy::Cosine { min } if floating => {
                return rows_agree(a, b, |x, y| cosine(x, y) >= *min);
            }
            Policy::Argmax if floating => {
                return rows_agree(a, b, |x, y| argmax(x) == argmax(y));
            }
            Policy::TopK { k } if floating => {
                return rows_agree(a, b, |x, y| top_k(x, *k) == top_k(y, *k));
            }
            _ => {}
        }
        match self.tolerance_for(a.dtype()) {
            None => a.data() == b.data(),
            Some((atol, rtol)) => a
                .to_f64_vec()
                .iter()
                .zip(b.to_f64_vec())
                .all(|(&x, y)| element_agrees(x, y, atol, rtol)),
        }
    }

    /// Whether two output lists agree: same length, same order, every tensor agreeing.
    pub fn agree_all(&self, a: &[Tensor], b: &[Tensor]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| self.agree(x, y))
    }

    /// Human-readable form (the CLI form).
    pub fn describe(&self) -> String {
        match self {
            Policy::Exact => "exact".into(),
            Policy::Default => "default".into(),
            Policy::Tolerance { atol, rtol } => format!("tolerance:atol={atol:e},rtol={rtol:e}"),
            Policy::Cosine { min } => format!("cosine:min={min}"),
            Policy::Argmax => "argmax".into(),
            Policy::TopK { k } => format!("topk:k={k}"),
        }
    }
}

fn valid_cosine(x: f64) -> bool {
    // -0.0 is refused so that every bound has exactly one encoding.
    x.is_finite() && x.is_sign_positive() && (0.0..=1.0).contains(&x)
}

/// Applies `same` to each pair of vectors along the last axis (a rank-0 tensor is one vector
/// of one element). A pair holding a NaN or an infinity agrees only when bit-identical
/// (§14.2): none of these comparisons is defined on them.
fn rows_agree(a: &Tensor, b: &Tensor, same: impl Fn(&[f64], &[f64]) -> bool) -> bool {
    let width = a.shape().last().map_or(1, |&d| d as usize);
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    if width == 0 || x.is_empty() {
        return true;
    }
    let s = a.dtype().size();
    x.chunks(width)
        .zip(y.chunks(width))
        .enumerate()
        .all(|(i, (rx, ry))| {
            if rx.iter().chain(ry).all(|v| v.is_finite()) {
                same(rx, ry)
            } else {
                let bytes = i * width * s..(i + 1) * width * s;
                a.data().get(bytes.clone()) == b.data().get(bytes)
            }
        })
}

/// Cosine similarity of two finite vectors; two zero vectors are identical (1), a zero vector
/// and a non-zero one are not similar at all (0). The comparison of `cosine:min=…` (§14.2),
/// also used by `quorate calibrate` to measure honest drift.
pub fn cosine(x: &[f64], y: &[f64]) -> f64 {
    let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let nx = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let ny = y.iter().map(|b| b * b).sum::<f64>().sqrt();
    match (nx == 0.0, ny == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => dot / (nx * ny),
    }
}

/// Index of the largest element; the first one on ties (numpy's convention).
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

/// The set of indices of the `k` largest elements (ties to the lower index), sorted.
fn top_k(x: &[f64], k: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[j].total_cmp(&x[i]).then(i.cmp(&j)));
    idx.truncate(usize::try_from(k).unwrap_or(usize::MAX));
    idx.sort_unstable();
    idx
}

/// One element under a tolerance (§14.2): NaN agrees only with NaN, an infinity only with the
/// same infinity, finite values when `|x - y| <= atol + rtol * max(|x|, |y|)`.
fn element_agrees(x: f64, y: f64, atol: f64, rtol: f64) -> bool {
    if x.is_nan() || y.is_nan() {
        return x.is_nan() && y.is_nan();
    }
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    (x - y).abs() <= atol + rtol * x.abs().max(y.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_f32("y", vec![v.len() as u64], v).unwrap()
    }

    #[test]
    fn parse_encode_roundtrip() {
        for text in [
            "exact",
            "default",
            "tolerance:atol=1e-5,rtol=1e-4",
            "cosine:min=0.999",
            "cosine:min=1",
            "argmax",
            "topk:k=5",
        ] {
            let p = Policy::parse(text).unwrap();
            let bytes = p.to_cbor().unwrap();
            assert_eq!(Policy::from_cbor(&bytes).unwrap(), p);
            assert_eq!(Policy::parse(&p.describe()).unwrap(), p);
        }
        for bad in [
            "",
            "tolerance:",
            "tolerance:atol=1",
            "tolerance:atol=-1,rtol=0",
            "tolerance:atol=nan,rtol=0",
            "tolerance:atol=inf,rtol=0",
            "tolerance:atol=1,rtol=1,atol=2",
            "tolerance:atol=-0,rtol=0",
            "fuzzy",
            "cosine:min=1.5",
            "cosine:min=-0",
            "cosine:min=nan",
            "cosine:",
            "topk:k=0",
            "topk:k=1025",
            "topk:k=2.5",
            "argmax:k=1",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert_ne!(
            Policy::Exact.digest().unwrap(),
            Policy::Default.digest().unwrap()
        );
    }

    #[test]
    fn agreement_rules() {
        let tol = Policy::Tolerance {
            atol: 1e-3,
            rtol: 0.0,
        };
        assert!(tol.agree(&t(&[1.0, 2.0]), &t(&[1.0005, 2.0])));
        assert!(!tol.agree(&t(&[1.0, 2.0]), &t(&[1.01, 2.0])));
        assert!(!Policy::Exact.agree(&t(&[1.0]), &t(&[1.0000001])));
        assert!(tol.agree(&t(&[f32::NAN]), &t(&[f32::NAN])));
        assert!(!tol.agree(&t(&[f32::NAN]), &t(&[1.0])));
        assert!(!tol.agree(&t(&[f32::INFINITY]), &t(&[f32::NEG_INFINITY])));
        assert!(!tol.agree(&t(&[f32::MAX]), &t(&[f32::INFINITY])));
        assert!(!tol.agree(&t(&[1.0]), &t(&[1.0, 1.0])));
        let renamed = t(&[1.0]).with_name("z").unwrap();
        assert!(!tol.agree(&t(&[1.0]), &renamed));
        // -0.0 and 0.0 differ bitwise but agree under a tolerance.
        assert!(!Policy::Exact.agree(&t(&[0.0]), &t(&[-0.0])));
        assert!(Policy::Default.agree(&t(&[0.0]), &t(&[-0.0])));
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn floats_use_their_shortest_exact_encoding() {
        let p = Policy::Tolerance {
            atol: 0.5,
            rtol: 0.0,
        };
        assert_eq!(
            hex::encode(p.to_cbor().unwrap()),
            "a40101020203f9380004f90000"
        );
    }
}

#[cfg(test)]
mod classifier_and_embedding_tests {
    use super::*;

    fn rows(v: &[f32], width: u64) -> Tensor {
        Tensor::from_f32("y", vec![v.len() as u64 / width, width], v).unwrap()
    }

    #[test]
    fn new_kinds_have_their_own_codes_and_the_old_encodings_are_unchanged() {
        assert_eq!(hex::encode(Policy::Exact.to_cbor().unwrap()), "a201010201");
        assert_eq!(
            hex::encode(Policy::Default.to_cbor().unwrap()),
            "a201010203"
        );
        assert_eq!(hex::encode(Policy::Argmax.to_cbor().unwrap()), "a201010205");
        assert_eq!(
            hex::encode(Policy::TopK { k: 3 }.to_cbor().unwrap()),
            "a3010102060303"
        );
        assert_eq!(
            hex::encode(Policy::Cosine { min: 0.5 }.to_cbor().unwrap()),
            "a30101020403f93800"
        );
        // Fields outside a kind's set, and out-of-range parameters, are refused.
        for bad in [
            "a3010102050301",                 // argmax with a field 3
            "a201010206",                     // topk without k
            "a3010102060300",                 // topk k = 0
            "a201010204",                     // cosine without min
            "a30101020403f93e00",             // cosine min = 1.5
            "a30101020403f9b800",             // cosine min = -0.5
            "a30101020403fb3fe0000000000000", // min = 0.5 as float64: not canonical
        ] {
            assert!(
                Policy::from_cbor(&hex::decode(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn cosine_compares_each_vector_along_the_last_axis() {
        let p = Policy::Cosine { min: 0.99 };
        let a = rows(&[1.0, 0.0, 0.0, 1.0], 2);
        assert!(p.agree(&a, &rows(&[2.0, 0.01, 0.0, 5.0], 2)));
        // The second row turns by 90 degrees: one bad row is enough to disagree.
        assert!(!p.agree(&a, &rows(&[1.0, 0.0, 1.0, 0.0], 2)));
        // Zero vectors: equal to each other, unlike any other vector.
        let z = rows(&[0.0, 0.0], 2);
        assert!(p.agree(&z, &z));
        assert!(!p.agree(&z, &rows(&[0.0, 1e-9], 2)));
        // Non-finite values agree only bit for bit.
        let n = rows(&[f32::NAN, 1.0], 2);
        assert!(p.agree(&n, &n));
        assert!(!p.agree(&n, &rows(&[1.0, 1.0], 2)));
        // Integers stay exact.
        let i = Tensor::new("y", DType::I64, vec![1], 7i64.to_le_bytes().to_vec()).unwrap();
        let j = Tensor::new("y", DType::I64, vec![1], 8i64.to_le_bytes().to_vec()).unwrap();
        assert!(!p.agree(&i, &j));
        assert!(p.agree(&i, &i));
    }

    #[test]
    fn argmax_and_topk_compare_class_decisions() {
        let a = rows(&[0.1, 0.7, 0.2, 0.5, 0.3, 0.2], 3);
        let b = rows(&[0.2, 0.6, 0.2, 0.4, 0.35, 0.25], 3);
        let flipped = rows(&[0.2, 0.6, 0.2, 0.3, 0.4, 0.3], 3);
        assert!(Policy::Argmax.agree(&a, &b));
        assert!(!Policy::Argmax.agree(&a, &flipped));
        // Ties go to the first index on both sides.
        assert!(Policy::Argmax.agree(&rows(&[0.5, 0.5], 2), &rows(&[0.6, 0.6], 2)));
        let top2 = Policy::TopK { k: 2 };
        // The top-2 sets {1, 2} and {0, 1}: the order inside the set does not matter.
        assert!(top2.agree(&rows(&[0.1, 0.5, 0.4], 3), &rows(&[0.1, 0.4, 0.5], 3)));
        assert!(!top2.agree(&rows(&[0.1, 0.5, 0.4], 3), &rows(&[0.45, 0.5, 0.4], 3)));
        // k larger than the row: every index, always the same set.
        assert!(Policy::TopK { k: 9 }.agree(&a, &flipped));
        // Agreement is symmetric.
        for p in [Policy::Argmax, top2, Policy::Cosine { min: 0.9 }] {
            assert_eq!(p.agree(&a, &flipped), p.agree(&flipped, &a));
        }
    }
}
