//! Deterministic CBOR (RFC 8949 §4.2.1) for every signed structure (§1.3).
//!
//! We encode with ciborium and make the result deterministic by sorting map keys by their
//! encoded bytes; ciborium already emits the shortest argument encodings and definite
//! lengths. A received document is accepted only if re-encoding its decoded value this way
//! gives back exactly the bytes received: this rejects indefinite lengths, non-shortest
//! integers, unsorted or duplicate map keys and trailing bytes in one rule.

use ciborium::value::Value;

/// Hard cap on the nesting depth accepted from the wire.
pub const MAX_DEPTH: usize = 16;

/// Errors of the CBOR layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The bytes are not well-formed CBOR (or nest deeper than [`MAX_DEPTH`]).
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    /// Bytes follow the first complete data item.
    #[error("trailing bytes after the CBOR item ({0} bytes)")]
    TrailingBytes(usize),
    /// Well-formed, but not in deterministic encoding (RFC 8949 §4.2.1).
    #[error("CBOR is not deterministically encoded (RFC 8949 §4.2.1)")]
    NotDeterministic,
    /// A map holds the same key twice.
    #[error("CBOR map has a duplicate key")]
    DuplicateKey,
    /// The input exceeds the size limit of the structure being decoded.
    #[error("input of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Decodes exactly one deterministically encoded item from `bytes`.
pub fn decode_deterministic(bytes: &[u8], limit: usize) -> Result<Value, CborError> {
    if bytes.len() > limit {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(|e| CborError::Malformed(describe(e)))?;
    if !rest.is_empty() {
        return Err(CborError::TrailingBytes(rest.len()));
    }
    if encode(&value)? != bytes {
        return Err(CborError::NotDeterministic);
    }
    Ok(value)
}

/// A reader's decoding error in words (ciborium's own text is its debug form).
fn describe(e: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the input ends inside an item (truncated)".into()
        }
        Error::Io(io) => format!("cannot read the input: {io}"),
        Error::Syntax(at) => format!("invalid CBOR at byte {at}"),
        Error::Semantic(Some(at), what) => format!("{what} (item at byte {at})"),
        Error::Semantic(None, what) => what,
        Error::RecursionLimitExceeded => format!("nested deeper than {MAX_DEPTH} levels"),
    }
}

/// Encodes `value` deterministically (map keys sorted by their encoded bytes).
pub fn encode(value: &Value) -> Result<Vec<u8>, CborError> {
    let canonical = canonicalize(value)?;
    let mut out = Vec::new();
    ciborium::ser::into_writer(&canonical, &mut out)
        .map_err(|e| CborError::Malformed(e.to_string()))?;
    Ok(out)
}

fn canonicalize(value: &Value) -> Result<Value, CborError> {
    Ok(match value {
        Value::Array(items) => {
            Value::Array(items.iter().map(canonicalize).collect::<Result<_, _>>()?)
        }
        Value::Tag(tag, inner) => Value::Tag(*tag, Box::new(canonicalize(inner)?)),
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = canonicalize(k)?;
                let mut kb = Vec::new();
                ciborium::ser::into_writer(&k, &mut kb)
                    .map_err(|e| CborError::Malformed(e.to_string()))?;
                keyed.push((kb, k, canonicalize(v)?));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        other => other.clone(),
    })
}

/// Helpers to read typed fields out of a decoded map with clear errors.
pub mod read {
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
    pub fn array<'a>(
        v: &'a Value,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [Value], FieldError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_errors_are_stated_in_words() {
        // A 3-element array with one element: truncated.
        let e = decode_deterministic(&[0x83, 0x01], 64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed CBOR: the input ends inside an item (truncated)"
        );
        // Additional information 28 is reserved (RFC 8949 §3).
        let e = decode_deterministic(&[0x1c], 64).unwrap_err();
        assert_eq!(e.to_string(), "malformed CBOR: invalid CBOR at byte 0");
        // A lone "break" is not a data item; no error shows a debug form.
        let e = decode_deterministic(&[0xff], 64).unwrap_err().to_string();
        assert!(
            e.starts_with("malformed CBOR: ") && !e.contains("Error {"),
            "{e}"
        );
    }

    #[test]
    fn rejects_non_deterministic_forms() {
        // {1: 2} canonical.
        assert!(decode_deterministic(&[0xa1, 0x01, 0x02], 100).is_ok());
        // Non-shortest integer: 0x18 0x01 for 1.
        assert_eq!(
            decode_deterministic(&[0xa1, 0x18, 0x01, 0x02], 100),
            Err(CborError::NotDeterministic)
        );
        // Unsorted keys {2: 0, 1: 0}.
        assert_eq!(
            decode_deterministic(&[0xa2, 0x02, 0x00, 0x01, 0x00], 100),
            Err(CborError::NotDeterministic)
        );
        // Duplicate keys.
        assert_eq!(
            decode_deterministic(&[0xa2, 0x01, 0x00, 0x01, 0x00], 100),
            Err(CborError::DuplicateKey)
        );
        // Indefinite-length array.
        assert_eq!(
            decode_deterministic(&[0x9f, 0x01, 0xff], 100),
            Err(CborError::NotDeterministic)
        );
        // Trailing bytes.
        assert_eq!(
            decode_deterministic(&[0x01, 0x01], 100),
            Err(CborError::TrailingBytes(1))
        );
        // Truncated.
        assert!(matches!(
            decode_deterministic(&[0x82, 0x01], 100),
            Err(CborError::Malformed(_))
        ));
        assert!(matches!(
            decode_deterministic(&[0x01; 10], 5),
            Err(CborError::TooLarge { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused_without_panic() {
        let bytes = vec![0x81u8; 10_000];
        assert!(decode_deterministic(&bytes, 1 << 20).is_err());
    }
}
