//! Reading a value tree straight off bytes the structure walk has already vouched for (§1.3).

use ciborium::value::Value;

use super::MAX_DEPTH;

/// Nesting [`build`] reads, well inside ciborium's recursion limit of [`MAX_DEPTH`] (deeper
/// documents are left to ciborium).
pub(super) const BUILD_DEPTH: usize = MAX_DEPTH / 2;

/// The value ciborium would decode from `bytes`, which [`walk`](super::walk) has shown to be one
/// well-formed deterministic item within its limits, read straight off the bytes (about a
/// fifth of ciborium's cost: no serde visitors, no scratch buffer). `None` for anything not
/// built exactly as ciborium builds it: invalid UTF-8, simple values other than `false`,
/// `true` and `null`, floats, the bignum tags, nesting deeper than [`BUILD_DEPTH`].
pub(super) fn build(bytes: &[u8]) -> Option<Value> {
    let mut pos = 0;
    let value = build_item(bytes, &mut pos, 0)?;
    (pos == bytes.len()).then_some(value)
}

fn build_item(bytes: &[u8], pos: &mut usize, depth: usize) -> Option<Value> {
    let initial = *bytes.get(*pos)?;
    *pos += 1;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let raw = bytes.get(*pos..pos.checked_add(n)?)?;
            *pos += n;
            raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }
        _ => return None,
    };
    let nested = depth < BUILD_DEPTH;
    Some(match major {
        0 => Value::Integer(arg.into()),
        1 => Value::Integer(ciborium::value::Integer::try_from(-1 - i128::from(arg)).ok()?),
        2 | 3 => {
            let end = pos.checked_add(usize::try_from(arg).ok()?)?;
            let raw = bytes.get(*pos..end)?;
            *pos = end;
            if major == 2 {
                Value::Bytes(raw.to_vec())
            } else {
                Value::Text(std::str::from_utf8(raw).ok()?.to_owned())
            }
        }
        4 if nested => {
            // Every element takes a byte at least: the capacity is bounded by the input.
            let n = usize::try_from(arg).ok()?;
            let mut items = Vec::with_capacity(n.min(bytes.len() - *pos));
            for _ in 0..n {
                items.push(build_item(bytes, pos, depth + 1)?);
            }
            Value::Array(items)
        }
        5 if nested => {
            let n = usize::try_from(arg).ok()?;
            let mut entries = Vec::with_capacity(n.min(bytes.len() - *pos));
            for _ in 0..n {
                let key = build_item(bytes, pos, depth + 1)?;
                entries.push((key, build_item(bytes, pos, depth + 1)?));
            }
            Value::Map(entries)
        }
        6 if nested && arg != 2 && arg != 3 => {
            Value::Tag(arg, Box::new(build_item(bytes, pos, depth + 1)?))
        }
        7 => match info {
            20 => Value::Bool(false),
            21 => Value::Bool(true),
            22 => Value::Null,
            _ => return None,
        },
        _ => return None,
    })
}
