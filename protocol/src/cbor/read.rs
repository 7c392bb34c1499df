//! Helpers to read typed fields out of a decoded map with clear errors.

use ciborium::value::{Integer, Value};

/// A field-level decoding error: which field, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct FieldError {
    /// The field's name in the spec.
    pub field: &'static str,
    /// What was wrong with it.
    pub problem: String,
}

fn err(field: &'static str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: problem.into(),
    }
}

/// An unsigned integer.
pub fn uint(v: &Value, field: &'static str) -> Result<u64, FieldError> {
    match v {
        Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| err(field, "must be an unsigned integer"))
        }
        _ => Err(err(field, "must be an unsigned integer")),
    }
}

/// A byte string of exactly `N` bytes.
pub fn bytes_n<const N: usize>(v: &Value, field: &'static str) -> Result<[u8; N], FieldError> {
    match v {
        Value::Bytes(b) => b
            .as_slice()
            .try_into()
            .map_err(|_| err(field, format!("must be {N} bytes, found {}", b.len()))),
        _ => Err(err(field, "must be a byte string")),
    }
}

/// A byte string with a length in `min..=max`.
pub fn bytes_range<'a>(
    v: &'a Value,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<&'a [u8], FieldError> {
    match v {
        Value::Bytes(b) if (min..=max).contains(&b.len()) => Ok(b),
        Value::Bytes(b) => Err(err(
            field,
            format!("must be {min} to {max} bytes, found {}", b.len()),
        )),
        _ => Err(err(field, "must be a byte string")),
    }
}

/// A text string of at most `max` bytes.
pub fn text<'a>(v: &'a Value, field: &'static str, max: usize) -> Result<&'a str, FieldError> {
    match v {
        Value::Text(t) if t.len() <= max => Ok(t),
        Value::Text(_) => Err(err(field, format!("longer than {max} bytes"))),
        _ => Err(err(field, "must be a text string")),
    }
}

/// A boolean.
pub fn boolean(v: &Value, field: &'static str) -> Result<bool, FieldError> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(err(field, "must be a boolean")),
    }
}

/// An array of at most `max` items.
pub fn array<'a>(v: &'a Value, field: &'static str, max: usize) -> Result<&'a [Value], FieldError> {
    match v {
        Value::Array(a) if a.len() <= max => Ok(a),
        Value::Array(a) => Err(err(
            field,
            format!("has {} items, at most {max} allowed", a.len()),
        )),
        _ => Err(err(field, "must be an array")),
    }
}

/// A map with small unsigned-integer keys, returned as (key, value) pairs in order.
/// Keys outside `allowed` are rejected.
pub fn int_map<'a>(
    v: &'a Value,
    field: &'static str,
    allowed: &[u64],
) -> Result<Vec<(u64, &'a Value)>, FieldError> {
    let Value::Map(entries) = v else {
        return Err(err(field, "must be a map"));
    };
    entries
        .iter()
        .map(|(k, v)| {
            let key = match k {
                Value::Integer(i) => u64::try_from(*i).ok(),
                _ => None,
            }
            .ok_or_else(|| err(field, "map keys must be unsigned integers"))?;
            if !allowed.contains(&key) {
                return Err(err(field, format!("unknown key {key}")));
            }
            Ok((key, v))
        })
        .collect()
}

/// Builds an integer CBOR value.
pub fn int(i: u64) -> Value {
    Value::Integer(Integer::from(i))
}
