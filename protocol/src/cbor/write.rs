//! Writing deterministic CBOR head by head (RFC 8949 §3, §4.2.1), for the structures signed
//! in bulk (payloads and batch receipts, §4.2, §5.3): no value tree, no map to sort, no
//! writer in between, only each item's head with its shortest argument, then its bytes.
//! Tests hold each user equal to the generic encoder ([`super::encode`]).

/// Appends the head of a data item of major type `major` with argument `arg`, in the
/// shortest form (RFC 8949 §4.2.1: 0–23 in the initial byte, then 1, 2, 4 or 8 bytes).
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if let Ok(a) = u8::try_from(arg) {
        out.extend_from_slice(&[m | 24, a]);
    } else if let Ok(a) = u16::try_from(arg) {
        out.push(m | 25);
        out.extend_from_slice(&a.to_be_bytes());
    } else if let Ok(a) = u32::try_from(arg) {
        out.push(m | 26);
        out.extend_from_slice(&a.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// An unsigned integer (major type 0).
pub(crate) fn uint(out: &mut Vec<u8>, n: u64) {
    head(out, 0, n);
}

/// An integer: unsigned (major type 0) or negative (major type 1, argument `-1 - n`).
pub(crate) fn int(out: &mut Vec<u8>, n: i64) {
    match u64::try_from(n) {
        Ok(u) => head(out, 0, u),
        Err(_) => head(out, 1, !(n as u64)),
    }
}

/// A byte string (major type 2).
pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// A text string (major type 3).
pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The head of an array of `len` items (major type 4).
pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    head(out, 4, len as u64);
}

/// The head of a map of `len` entries (major type 5); the caller writes keys in order.
pub(crate) fn map(out: &mut Vec<u8>, len: usize) {
    head(out, 5, len as u64);
}

/// `null` (major type 7, simple value 22).
pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(0xf6);
}

/// `true` or `false` (major type 7, simple values 21 and 20).
pub(crate) fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(if b { 0xf5 } else { 0xf4 });
}

#[cfg(test)]
mod tests {
    use ciborium::value::Value;

    use super::*;
    use crate::cbor::{encode, read};

    /// Every head width, for every major type written here, is what the generic encoder
    /// writes.
    #[test]
    fn heads_are_the_generic_encoders() {
        let edges = [
            0u64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        for n in edges {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, encode(&read::int(n)).unwrap(), "uint {n}");
        }
        for n in [
            -1i64,
            -8,
            -24,
            -25,
            -256,
            -257,
            -65_537,
            i64::MIN,
            0,
            7,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            int(&mut out, n);
            assert_eq!(out, encode(&Value::Integer(n.into())).unwrap(), "int {n}");
        }
        for len in [0usize, 23, 24, 255, 256, 65_535, 65_536, 70_000] {
            let b = vec![0xa5; len];
            let mut out = Vec::new();
            bytes(&mut out, &b);
            assert_eq!(out, encode(&Value::Bytes(b)).unwrap(), "bytes {len}");
            let s = "x".repeat(len);
            let mut out = Vec::new();
            text(&mut out, &s);
            assert_eq!(out, encode(&Value::Text(s)).unwrap(), "text {len}");
        }
        for len in [0usize, 1, 23, 24, 300] {
            let mut out = Vec::new();
            array(&mut out, len);
            for _ in 0..len {
                boolean(&mut out, true);
            }
            let expected = Value::Array(vec![Value::Bool(true); len]);
            assert_eq!(out, encode(&expected).unwrap(), "array {len}");
            let mut out = Vec::new();
            map(&mut out, len);
            let mut entries = Vec::new();
            for k in 0..len as u64 {
                uint(&mut out, k);
                boolean(&mut out, false);
                entries.push((read::int(k), Value::Bool(false)));
            }
            assert_eq!(out, encode(&Value::Map(entries)).unwrap(), "map {len}");
        }
    }
}
