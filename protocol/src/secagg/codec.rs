//! The strict CBOR subset every secure-aggregation message uses (§9.8.1).
//!
//! Deterministic encoding (RFC 8949 §4.2.1) restricted to what the messages need: unsigned
//! integers, byte strings, definite-length arrays and maps with unsigned-integer keys in
//! ascending order. The reader accepts exactly the bytes the writer produces: shortest
//! argument encodings only, no indefinite lengths, no tags, no floats, no trailing bytes.
//! Every length is checked against both a caller-given bound and the bytes actually left
//! before anything is allocated, and byte strings are borrowed from the input, never
//! copied.

/// A decoding failure. Each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside an item.
    #[error("truncated input")]
    Truncated,
    /// An integer or length was not in its shortest form, or an indefinite length was used.
    #[error("not deterministically encoded (RFC 8949 §4.2.1)")]
    NonCanonical,
    /// An item of another major type was found.
    #[error("expected {expected}")]
    UnexpectedType {
        /// What the schema wants at this point.
        expected: &'static str,
    },
    /// A length exceeds its limit.
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A field has the wrong exact length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// The field.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A map key other than the next expected one.
    #[error("expected map key {expected}, found {found}")]
    UnexpectedKey {
        /// The key the schema wants next.
        expected: u64,
        /// The key found.
        found: u64,
    },
    /// A map has the wrong number of entries.
    #[error("map with {found} entries where {expected} are required")]
    MapSize {
        /// Entries required.
        expected: u64,
        /// Entries found.
        found: u64,
    },
    /// Bytes follow the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A field's value is out of range or breaks a rule of the schema.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

const UINT: u8 = 0;
const BYTES: u8 = 2;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

/// Writes the CBOR subset in deterministic form.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with `cap` bytes reserved.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
        }
    }

    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            self.buf.push(m | n as u8);
        } else if n <= 0xff {
            self.buf.extend_from_slice(&[m | 24, n as u8]);
        } else if n <= 0xffff {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// An unsigned integer.
    pub fn uint(&mut self, n: u64) -> &mut Self {
        self.head(UINT, n);
        self
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// The head of a byte string of `len` bytes whose content the caller appends with
    /// [`Self::raw`].
    pub fn bytes_head(&mut self, len: usize) -> &mut Self {
        self.head(BYTES, len as u64);
        self
    }

    /// Raw bytes (an already-encoded item, or the content after [`Self::bytes_head`]).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// The head of an array of `n` items.
    pub fn array(&mut self, n: usize) -> &mut Self {
        self.head(ARRAY, n as u64);
        self
    }

    /// The head of a map of `n` entries (keys must then be written in ascending order).
    pub fn map(&mut self, n: usize) -> &mut Self {
        self.head(MAP, n as u64);
        self
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// A mutable view of the buffer (for in-place packing after a [`Self::bytes_head`]).
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// Reads the CBOR subset, strictly.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn head(&mut self, major: u8, expected: &'static str) -> Result<u64, DecodeError> {
        let first = *self.take(1)?.first().ok_or(DecodeError::Truncated)?;
        if first >> 5 != major {
            return Err(DecodeError::UnexpectedType { expected });
        }
        let info = first & 0x1f;
        let (n, min) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (
                u64::from(u16::from_be_bytes([self.take(1)?[0], self.take(1)?[0]])),
                0x100,
            ),
            26 => {
                let b = self.take(4)?;
                (
                    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    0x1_0000,
                )
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 0x1_0000_0000)
            }
            _ => return Err(DecodeError::NonCanonical),
        };
        if n < min {
            return Err(DecodeError::NonCanonical);
        }
        Ok(n)
    }

    /// An unsigned integer no larger than `max`.
    pub fn uint(&mut self, what: &'static str, max: u64) -> Result<u64, DecodeError> {
        let n = self.head(UINT, "an unsigned integer")?;
        if n > max {
            return Err(DecodeError::TooLong { what, len: n, max });
        }
        Ok(n)
    }

    /// A `u32` no larger than `max`.
    pub fn u32(&mut self, what: &'static str, max: u32) -> Result<u32, DecodeError> {
        Ok(self.uint(what, u64::from(max))? as u32)
    }

    /// A byte string of at most `max` bytes, borrowed from the input.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.head(BYTES, "a byte string")?;
        if n > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len: n,
                max: max as u64,
            });
        }
        self.take(n as usize)
    }

    /// A byte string of exactly `N` bytes.
    pub fn bytes_n<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(what, usize::MAX)?;
        b.try_into().map_err(|_| DecodeError::WrongLength {
            what,
            expected: N,
            found: b.len(),
        })
    }

    /// The head of an array of at most `max` items; also refuses a count larger than the
    /// bytes left (every item takes at least `min_item` bytes).
    pub fn array(
        &mut self,
        what: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.head(ARRAY, "an array")?;
        if n > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len: n,
                max: max as u64,
            });
        }
        if n.saturating_mul(min_item.max(1) as u64) > self.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    /// The head of an array of exactly `n` items.
    pub fn array_exact(&mut self, what: &'static str, n: usize) -> Result<(), DecodeError> {
        let found = self.head(ARRAY, "an array")?;
        if found != n as u64 {
            return Err(DecodeError::TooLong {
                what,
                len: found,
                max: n as u64,
            });
        }
        Ok(())
    }

    /// The head of a map that must have exactly `n` entries.
    pub fn map(&mut self, n: u64) -> Result<(), DecodeError> {
        let found = self.head(MAP, "a map")?;
        if found != n {
            return Err(DecodeError::MapSize { expected: n, found });
        }
        Ok(())
    }

    /// The next map key, which must be `k`.
    pub fn key(&mut self, k: u64) -> Result<(), DecodeError> {
        let found = self.head(UINT, "an unsigned map key")?;
        if found != k {
            return Err(DecodeError::UnexpectedKey { expected: k, found });
        }
        Ok(())
    }

    /// Skips exactly one complete item of the subset and returns its encoded bytes.
    pub fn item_bytes(&mut self, depth: usize) -> Result<&'a [u8], DecodeError> {
        if depth > 8 {
            return Err(DecodeError::Invalid("nesting too deep"));
        }
        let start = self.pos;
        let first = *self.data.get(self.pos).ok_or(DecodeError::Truncated)?;
        match first >> 5 {
            UINT => {
                self.head(UINT, "an item")?;
            }
            BYTES => {
                self.bytes("item", usize::MAX)?;
            }
            ARRAY => {
                let n = self.array("item", usize::MAX, 1)?;
                for _ in 0..n {
                    self.item_bytes(depth + 1)?;
                }
            }
            _ => {
                return Err(DecodeError::UnexpectedType {
                    expected: "an item of the secagg subset",
                });
            }
        }
        Ok(&self.data[start..self.pos])
    }

    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_shortest_form() {
        let mut w = Writer::default();
        w.map(2)
            .uint(1)
            .uint(23)
            .uint(2)
            .array(3)
            .uint(24)
            .uint(300)
            .bytes(b"abc");
        let b = w.finish();
        assert_eq!(
            hex::encode(&b),
            "a20117028318181901 2c43616263".replace(' ', "")
        );
        let mut r = Reader::new(&b);
        r.map(2).unwrap();
        r.key(1).unwrap();
        assert_eq!(r.uint("x", 100).unwrap(), 23);
        r.key(2).unwrap();
        assert_eq!(r.array("a", 3, 1).unwrap(), 3);
        assert_eq!(r.uint("x", 1000).unwrap(), 24);
        assert_eq!(r.uint("x", 1000).unwrap(), 300);
        assert_eq!(r.bytes("b", 3).unwrap(), b"abc");
        r.finish().unwrap();
    }

    #[test]
    fn rejects_non_canonical_and_oversized() {
        // 1 encoded as 0x18 0x01.
        assert_eq!(
            Reader::new(&[0x18, 0x01]).uint("x", 10),
            Err(DecodeError::NonCanonical)
        );
        // 255 encoded in two bytes.
        assert_eq!(
            Reader::new(&[0x19, 0x00, 0xff]).uint("x", 1000),
            Err(DecodeError::NonCanonical)
        );
        // Indefinite-length byte string.
        assert_eq!(
            Reader::new(&[0x5f, 0xff]).bytes("x", 10),
            Err(DecodeError::NonCanonical)
        );
        // A claimed 2^32-byte string is refused before anything is read or allocated.
        assert!(matches!(
            Reader::new(&[0x5b, 0, 0, 0, 1, 0, 0, 0, 0]).bytes("x", 1 << 20),
            Err(DecodeError::TooLong { .. })
        ));
        // An array claiming more items than bytes left.
        assert_eq!(
            Reader::new(&[0x98, 200, 0]).array("x", 1000, 1),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x01, 0x00]).finish(),
            Err(DecodeError::TrailingBytes(2))
        );
        assert!(matches!(
            Reader::new(&[0x41]).bytes("x", 10),
            Err(DecodeError::Truncated)
        ));
        assert!(matches!(
            Reader::new(&[0x20]).uint("x", 10),
            Err(DecodeError::UnexpectedType { .. })
        ));
        let mut r = Reader::new(&[0xa1, 0x02, 0x00]);
        r.map(1).unwrap();
        assert_eq!(
            r.key(1),
            Err(DecodeError::UnexpectedKey {
                expected: 1,
                found: 2
            })
        );
    }
}
