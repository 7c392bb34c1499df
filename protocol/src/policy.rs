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
}

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
        }
    }

    /// Parses the CLI form: `exact`, `default`, or `tolerance:atol=A,rtol=B`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let text = text.trim();
        match text {
            "exact" => return Ok(Policy::Exact),
            "default" => return Ok(Policy::Default),
            _ => {}
        }
        let Some(params) = text.strip_prefix("tolerance:") else {
            return Err(PolicyError(format!(
                "unknown policy {text:?}: use exact, default, or tolerance:atol=A,rtol=B"
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
        if let Policy::Tolerance { atol, rtol } = self {
            m.push((read::int(3), Value::Float(*atol)));
            m.push((read::int(4), Value::Float(*rtol)));
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
        }
    }

    /// Whether two tensors agree under this policy (§14.2). Symmetric by construction.
    pub fn agree(&self, a: &Tensor, b: &Tensor) -> bool {
        if a.name() != b.name() || a.dtype() != b.dtype() || a.shape() != b.shape() {
            return false;
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
        }
    }
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
        for text in ["exact", "default", "tolerance:atol=1e-5,rtol=1e-4"] {
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
