//! Deterministic CBOR (RFC 8949 §4.2.1) for every signed structure (§1.3).
//!
//! We encode with ciborium and make the result deterministic by sorting map keys by their
//! encoded bytes; ciborium already emits the shortest argument encodings and definite
//! lengths. A received document is accepted only if re-encoding its decoded value this way
//! gives back exactly the bytes received: this rejects indefinite lengths, non-shortest
//! integers, unsorted or duplicate map keys and trailing bytes in one rule.
//!
//! Before ciborium builds a value tree, a walk over the raw bytes checks the structure's
//! limits (§1.3, §17.2): definite lengths only, at most so many data items in all, at most so
//! many elements in any one array or map, nesting no deeper than [`MAX_DEPTH`], and every
//! announced length backed by bytes actually present. A value tree costs tens of bytes per
//! one-byte item, so without this walk a hostile document of one-byte integers makes the
//! receiver allocate many times its own size before any field is looked at.

use ciborium::value::Value;

mod build;
pub mod read;
pub(crate) mod write;

use build::build;

/// Hard cap on the nesting depth accepted from the wire.
pub const MAX_DEPTH: usize = 16;
/// Most data items in one document unless the structure sets its own limit (§1.3).
pub const DEFAULT_MAX_ITEMS: usize = 1 << 17;
/// Most elements of one array, or entries of one map, unless the structure sets its own
/// limit (§1.3).
pub const DEFAULT_MAX_CONTAINER: usize = 1 << 16;

/// Limits checked on the raw bytes before anything is decoded (§1.3, §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input, in bytes.
    pub max_len: usize,
    /// Most data items in the document: every integer, string, array, map, map key, map
    /// value, tag and simple value counts as one.
    pub max_items: usize,
    /// Most elements in one array, or entries (key–value pairs) in one map.
    pub max_container: usize,
    /// Deepest nesting of arrays, maps and tags.
    pub max_depth: usize,
}

impl Limits {
    /// The default limits for a structure of at most `max_len` bytes.
    pub const fn with_len(max_len: usize) -> Self {
        Self {
            max_len,
            max_items: DEFAULT_MAX_ITEMS,
            max_container: DEFAULT_MAX_CONTAINER,
            max_depth: MAX_DEPTH,
        }
    }
}

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
    /// The document holds more data items than the structure allows ([`Limits::max_items`]).
    #[error("more than {limit} CBOR data items")]
    TooManyItems {
        /// The limit.
        limit: usize,
    },
    /// An array or map announces more elements than the structure allows
    /// ([`Limits::max_container`]).
    #[error("a CBOR array or map of {len} elements exceeds the limit of {limit}")]
    ContainerTooLarge {
        /// Elements announced (pairs, for a map).
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// Arrays, maps and tags nest deeper than the structure allows ([`Limits::max_depth`]).
    #[error("CBOR nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// Decodes exactly one deterministically encoded item of at most `limit` bytes from
/// `bytes`, under the default item limits ([`Limits::with_len`]).
pub fn decode_deterministic(bytes: &[u8], limit: usize) -> Result<Value, CborError> {
    decode_deterministic_with(bytes, &Limits::with_len(limit))
}

/// Decodes exactly one deterministically encoded item from `bytes` under `limits`, which
/// are checked on the raw bytes before any value is built (§1.3, §17.2).
pub fn decode_deterministic_with(bytes: &[u8], limits: &Limits) -> Result<Value, CborError> {
    if bytes.len() > limits.max_len {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            limit: limits.max_len,
        });
    }
    let shown_deterministic = walk(bytes, limits)?;
    // Bytes the walk showed deterministic are read into their value directly; ciborium
    // (below) still decides everything the direct reading does not build exactly as it
    // would, so every value and every error is ciborium's.
    if shown_deterministic && let Some(value) = build(bytes) {
        return Ok(value);
    }
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(|e| CborError::Malformed(describe(e)))?;
    if !rest.is_empty() {
        return Err(CborError::TrailingBytes(rest.len()));
    }
    // The walk proves most documents deterministic on their bytes; for the rest (and for
    // every violation, so that the error reported is always the same) the rule itself
    // decides: re-encoding the value must give back exactly the bytes received.
    if !shown_deterministic && encode(&value)? != bytes {
        return Err(CborError::NotDeterministic);
    }
    Ok(value)
}

fn truncated() -> CborError {
    CborError::Malformed("the input ends inside an item (truncated)".into())
}

fn invalid_at(pos: usize) -> CborError {
    CborError::Malformed(format!("invalid CBOR at byte {pos}"))
}

/// Walks the data item heads of `bytes` without building anything (§1.3, §17.2): exactly
/// one item, definite lengths only, every string and container backed by enough remaining
/// bytes, and `limits` respected. Memory used is bounded by `limits.max_depth`, whatever
/// the input. Determinism itself (shortest forms, key order) is checked after decoding.
pub fn check_structure(bytes: &[u8], limits: &Limits) -> Result<(), CborError> {
    walk(bytes, limits).map(drop)
}

/// One open array, map or tag of [`walk`].
struct Frame {
    /// Items still to read (a map's keys and values both count).
    left: u64,
    /// Whether it is a map, whose items alternate key, value.
    map: bool,
    /// Where the key being read began.
    key_start: usize,
    /// The previous key's bytes (start, end), to check the order of the next one.
    previous_key: Option<(usize, usize)>,
}

/// [`check_structure`], and whether the bytes are shown deterministic on their own (RFC 8949
/// §4.2.1): every argument in its shortest form, and every map's keys in strictly increasing
/// order of their encoded bytes. It says `false`, leaving the decision to the re-encoding
/// rule, for anything it does not prove: a violation, any major-type-7 item other than
/// `false`, `true` and `null` (floats have shortest-form rules of their own), and the bignum
/// tags 2 and 3 (the decoder turns a small bignum into an integer).
fn walk(bytes: &[u8], limits: &Limits) -> Result<bool, CborError> {
    let mut open: Vec<Frame> = Vec::with_capacity(limits.max_depth.min(MAX_DEPTH) + 1);
    open.push(Frame {
        left: 1,
        map: false,
        key_start: 0,
        previous_key: None,
    });
    let mut shown = true;
    let mut pos = 0usize;
    let mut items = 0usize;
    while let Some(top) = open.last_mut() {
        let start = pos;
        if top.map && top.left % 2 == 0 {
            top.key_start = start;
        }
        let initial = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let raw = bytes.get(pos..pos + n).ok_or_else(truncated)?;
                pos += n;
                raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            // Indefinite lengths are well-formed CBOR but never deterministic (RFC 8949
            // §4.2.1); a lone "break" and the reserved values 28–30 are not CBOR.
            31 if (2..=5).contains(&major) => return Err(CborError::NotDeterministic),
            _ => return Err(invalid_at(start)),
        };
        if major == 7 {
            shown &= (20..=22).contains(&info);
        } else {
            // The shortest form: an argument below 24 in the initial byte, else in the
            // fewest bytes that hold it.
            let shortest = match info {
                24 => arg >= 24,
                25 => arg > 0xff,
                26 => arg > 0xffff,
                27 => arg > 0xffff_ffff,
                _ => true,
            };
            shown &= shortest && !(major == 6 && (arg == 2 || arg == 3));
        }
        items += 1;
        if items > limits.max_items {
            return Err(CborError::TooManyItems {
                limit: limits.max_items,
            });
        }
        let remaining = (bytes.len() - pos) as u64;
        let children = match major {
            2 | 3 => {
                if arg > remaining {
                    return Err(truncated());
                }
                // arg <= remaining <= bytes.len(), so it fits in usize.
                pos += arg as usize;
                0
            }
            4 | 5 => {
                if arg > limits.max_container as u64 {
                    return Err(CborError::ContainerTooLarge {
                        len: arg,
                        limit: limits.max_container,
                    });
                }
                let n = if major == 5 { arg * 2 } else { arg };
                // Every element takes at least one byte.
                if n > remaining {
                    return Err(truncated());
                }
                n
            }
            6 => 1,
            _ => 0,
        };
        if children > 0 {
            if open.len() > limits.max_depth {
                return Err(CborError::TooDeep {
                    limit: limits.max_depth,
                });
            }
            open.push(Frame {
                left: children,
                map: major == 5,
                key_start: 0,
                previous_key: None,
            });
            continue;
        }
        // The item is complete: close every container it completes, checking each map key
        // completed on the way against the key before it.
        while let Some(frame) = open.last_mut() {
            if frame.map && frame.left % 2 == 0 {
                let key = (frame.key_start, pos);
                if let Some(previous) = frame.previous_key {
                    shown &= bytes[previous.0..previous.1] < bytes[key.0..key.1];
                }
                frame.previous_key = Some(key);
            }
            frame.left -= 1;
            if frame.left > 0 {
                break;
            }
            open.pop();
        }
    }
    if pos < bytes.len() {
        return Err(CborError::TrailingBytes(bytes.len() - pos));
    }
    Ok(shown)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::build::BUILD_DEPTH;
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
    fn structure_limits_are_checked_before_decoding() {
        let limits = Limits {
            max_len: 1 << 20,
            max_items: 10,
            max_container: 4,
            max_depth: 2,
        };
        // [1, [2, 3]]: 5 items, depth 2.
        let ok = [0x82, 0x01, 0x82, 0x02, 0x03];
        assert!(decode_deterministic_with(&ok, &limits).is_ok());
        // Five elements in one array.
        assert_eq!(
            check_structure(&[0x85, 0, 0, 0, 0, 0], &limits),
            Err(CborError::ContainerTooLarge { len: 5, limit: 4 })
        );
        // A map of 5 pairs.
        assert!(matches!(
            check_structure(&[0xa5], &limits),
            Err(CborError::ContainerTooLarge { len: 5, .. })
        ));
        // 11 items in nested arrays of 4.
        let many = [0x83, 0x84, 0, 0, 0, 0, 0x84, 0, 0, 0, 0, 0x80];
        assert_eq!(
            check_structure(&many, &limits),
            Err(CborError::TooManyItems { limit: 10 })
        );
        // Depth 3, and a tag counts as a level.
        assert_eq!(
            check_structure(&[0x81, 0x81, 0x81, 0x00], &limits),
            Err(CborError::TooDeep { limit: 2 })
        );
        assert_eq!(
            check_structure(&[0x81, 0xc1, 0x81, 0x00], &limits),
            Err(CborError::TooDeep { limit: 2 })
        );
        // Lengths announced beyond the input: truncated, whatever the claim.
        for bad in [
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x7a, 0x00, 0x10, 0x00, 0x00, 0x61][..],
            &[0x84, 0x00][..],
            &[0x19, 0x01][..],
        ] {
            assert_eq!(
                check_structure(bad, &Limits::with_len(1 << 20)),
                Err(truncated()),
                "{bad:02x?}"
            );
        }
        // A claimed array length beyond the input is refused even when the limits allow it.
        assert_eq!(
            check_structure(
                &[0x9a, 0x00, 0x01, 0x00, 0x01, 0x00],
                &Limits::with_len(1 << 20)
            ),
            Err(CborError::ContainerTooLarge {
                len: 65537,
                limit: DEFAULT_MAX_CONTAINER
            })
        );
        assert_eq!(
            check_structure(&[0x99, 0x10, 0x00, 0x00], &Limits::with_len(1 << 20)),
            Err(truncated())
        );
        // Indefinite lengths, breaks and reserved values.
        assert_eq!(
            check_structure(&[0x5f, 0x41, 0x00, 0xff], &limits),
            Err(CborError::NotDeterministic)
        );
        assert_eq!(check_structure(&[0xff], &limits), Err(invalid_at(0)));
        assert_eq!(check_structure(&[0x81, 0x1d], &limits), Err(invalid_at(1)));
        assert_eq!(check_structure(&[], &limits), Err(truncated()));
        assert_eq!(
            check_structure(&[0x00, 0x00], &limits),
            Err(CborError::TrailingBytes(1))
        );
    }

    /// The direct reading builds exactly ciborium's value, and leaves to ciborium what it
    /// does not build the same way.
    #[test]
    fn direct_reading_builds_ciboriums_value() {
        let int = |i: i128| Value::Integer(ciborium::value::Integer::try_from(i).unwrap());
        let docs = [
            int(0),
            int(23),
            int(24),
            int(u64::MAX.into()),
            int(-1),
            int(-25),
            int(i128::from(i64::MIN) - 1),
            int(-1 - i128::from(u64::MAX)),
            Value::Bytes(vec![]),
            Value::Bytes(vec![7; 300]),
            Value::Text("é…".into()),
            Value::Text("x".repeat(70_000)),
            Value::Bool(true),
            Value::Bool(false),
            Value::Null,
            Value::Tag(18, Box::new(Value::Array(vec![int(1), Value::Map(vec![])]))),
            Value::Map(vec![
                (int(1), Value::Array(vec![int(-8), Value::Text("a".into())])),
                (
                    int(-1),
                    Value::Map(vec![(Value::Text("k".into()), Value::Null)]),
                ),
                (Value::Text("z".into()), Value::Tag(1, Box::new(int(5)))),
            ]),
        ];
        for doc in docs {
            let bytes = encode(&doc).unwrap();
            assert_eq!(build(&bytes), Some(doc.clone()), "{doc:?}");
            let mut rest = bytes.as_slice();
            let ciborium: Value = ciborium::de::from_reader(&mut rest).unwrap();
            assert_eq!(build(&bytes), Some(ciborium));
        }
        let mut deep = int(0);
        for _ in 0..BUILD_DEPTH + 1 {
            deep = Value::Array(vec![deep]);
        }
        for left in [
            encode(&deep).unwrap(),
            encode(&Value::Float(1.5)).unwrap(),
            vec![0xc2, 0x41, 0x01],
            vec![0x62, 0xc3, 0x28],
            vec![0xf7],
        ] {
            assert_eq!(build(&left), None, "{left:02x?}");
        }
    }

    proptest::proptest! {
        /// Every document the encoder writes passes the walk under default limits.
        #[test]
        fn encoded_documents_pass_the_walk(
            ints in proptest::collection::vec(proptest::num::i64::ANY, 0..40),
            blob in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            text in ".{0,40}",
        ) {
            let v = Value::Map(vec![
                (Value::Integer(1.into()), Value::Array(ints.iter().map(|i| Value::Integer((*i).into())).collect())),
                (Value::Integer(2.into()), Value::Bytes(blob)),
                (Value::Text(text), Value::Tag(24, Box::new(Value::Array(vec![Value::Null, Value::Bool(true), Value::Float(1.5)])))),
            ]);
            let bytes = encode(&v).unwrap();
            proptest::prop_assert_eq!(check_structure(&bytes, &Limits::with_len(1 << 20)), Ok(()));
            proptest::prop_assert!(decode_deterministic(&bytes, 1 << 20).is_ok());
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_panic() {
        let bytes = vec![0x81u8; 10_000];
        assert!(decode_deterministic(&bytes, 1 << 20).is_err());
    }

    /// The rule itself, as it was before the walk could vouch for a document: decode, then
    /// re-encode and compare.
    fn decode_by_reencoding(bytes: &[u8]) -> Result<Value, CborError> {
        let limits = Limits::with_len(1 << 20);
        check_structure(bytes, &limits)?;
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

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any::<u64>().prop_map(|i| Value::Integer(i.into())),
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            (0u8..30).prop_map(|i| Value::Integer(i.into())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            "[a-c]{0,3}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            any::<f32>().prop_map(|f| Value::Float(f64::from(f))),
            (0u64..5, proptest::collection::vec(any::<u8>(), 0..10))
                .prop_map(|(t, b)| Value::Tag(t, Box::new(Value::Bytes(b)))),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            (0u8..6).prop_map(|i| Value::Integer(i.into())),
                            "[a-b]{0,2}".prop_map(Value::Text),
                            (-3i8..0).prop_map(|i| Value::Integer(i.into())),
                        ],
                        inner.clone()
                    ),
                    0..5
                )
                .prop_map(Value::Map),
                inner.prop_map(|v| Value::Tag(18, Box::new(v))),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever the walk vouches for, the re-encoding rule accepts identically, and every
        /// document gets the same verdict and error either way: maps in any key order, with
        /// duplicate keys, floats, bignum tags, and heads widened past their shortest form.
        #[test]
        fn the_walk_never_changes_a_verdict(v in any_value(), widen in proptest::num::usize::ANY, to in 24u8..28) {
            let mut plain = Vec::new();
            ciborium::ser::into_writer(&v, &mut plain).unwrap();
            let mut docs = vec![plain.clone()];
            if let Ok(canonical) = encode(&v) {
                docs.push(canonical);
            }
            // Widen one integer head (major 0) to a longer argument form.
            let heads: Vec<usize> = (0..plain.len()).filter(|&i| plain[i] < 24).collect();
            if !heads.is_empty() {
                let at = heads[widen % heads.len()];
                let mut wide = plain[..at].to_vec();
                wide.push(to);
                let n = 1usize << (to - 24);
                let mut arg = vec![0u8; n];
                arg[n - 1] = plain[at];
                wide.extend(arg);
                wide.extend(&plain[at + 1..]);
                docs.push(wide);
            }
            for doc in docs {
                proptest::prop_assert_eq!(
                    decode_deterministic(&doc, 1 << 20),
                    decode_by_reencoding(&doc),
                    "{}", hex::encode(&doc)
                );
            }
        }
    }

    #[test]
    fn the_walk_vouches_only_for_what_it_proves() {
        let limits = Limits::with_len(64);
        // Shortest heads, sorted keys: shown.
        assert_eq!(walk(&[0xa2, 0x01, 0x00, 0x02, 0x00], &limits), Ok(true));
        assert_eq!(walk(&[0x18, 0x18], &limits), Ok(true));
        // A one-byte argument below 24, keys out of order, a duplicate key, a float, a
        // bignum tag: not shown, left to the rule.
        assert_eq!(walk(&[0x18, 0x17], &limits), Ok(false));
        assert_eq!(walk(&[0x19, 0x00, 0xff], &limits), Ok(false));
        assert_eq!(walk(&[0xa2, 0x02, 0x00, 0x01, 0x00], &limits), Ok(false));
        assert_eq!(walk(&[0xa2, 0x01, 0x00, 0x01, 0x00], &limits), Ok(false));
        assert_eq!(walk(&[0xf9, 0x3c, 0x00], &limits), Ok(false));
        assert_eq!(walk(&[0xc2, 0x41, 0x01], &limits), Ok(false));
        // Keys that are containers are compared by their whole encoding.
        assert_eq!(
            walk(&[0xa2, 0x81, 0x01, 0x00, 0x81, 0x02, 0x00], &limits),
            Ok(true)
        );
        assert_eq!(
            walk(&[0xa2, 0x81, 0x02, 0x00, 0x81, 0x01, 0x00], &limits),
            Ok(false)
        );
        assert_eq!(
            decode_deterministic(&[0xa2, 0x01, 0x00, 0x01, 0x00], 64),
            Err(CborError::DuplicateKey)
        );
    }
}
