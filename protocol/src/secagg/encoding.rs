//! Input encodings (§9.7): bit-packing mod 2^b, fixed-point f32 vectors with a published
//! scale and clipping range, and vote histograms.

use super::codec::DecodeError;

/// Why an input could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// A NaN or infinite element.
    #[error("element {0} is not a finite number")]
    NotFinite(usize),
    /// The scale or clipping range is unusable.
    #[error("invalid fixed-point parameters: {0}")]
    Parameters(&'static str),
    /// A vote outside the class range.
    #[error("vote for class {class} but only {classes} classes exist")]
    VoteOutOfRange {
        /// The vote.
        class: usize,
        /// Number of classes.
        classes: usize,
    },
    /// An element exceeds the configured maximum input.
    #[error("element {index} is {value}, above the maximum input {max}")]
    AboveMaximum {
        /// Position.
        index: usize,
        /// Value.
        value: u64,
        /// The limit.
        max: u64,
    },
}

/// Packs `values` (each < 2^bits) at `bits` bits each, least-significant bit first
/// (§9.7.1): element `i` occupies bits `[i·b, (i+1)·b)` of the little-endian bit string;
/// unused high bits of the last byte are zero. Appends to `out`.
pub fn pack_into(values: &[u64], bits: u32, out: &mut Vec<u8>) {
    let b = bits as usize;
    let total = (values.len() * b).div_ceil(8);
    out.reserve(total);
    match bits {
        8 => out.extend(values.iter().map(|&v| v as u8)),
        16 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&(v as u16).to_le_bytes())),
        32 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&(v as u32).to_le_bytes())),
        64 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&v.to_le_bytes())),
        _ => {
            let mask = quorate_crypto::secagg::prg::modulus_mask(bits);
            let mut acc: u128 = 0;
            let mut have = 0usize;
            for &v in values {
                acc |= u128::from(v & mask) << have;
                have += b;
                while have >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    have -= 8;
                }
            }
            if have > 0 {
                out.push(acc as u8);
            }
        }
    }
}

/// Packs into a fresh vector.
pub fn pack(values: &[u64], bits: u32) -> Vec<u8> {
    let mut out = Vec::new();
    pack_into(values, bits, &mut out);
    out
}

/// Unpacks exactly `acc.len()` elements from `packed` and adds them to `acc` (mod 2^64; the
/// caller reduces mod 2^b). Refuses a wrong length or nonzero padding bits.
pub fn unpack_add(packed: &[u8], bits: u32, acc: &mut [u64]) -> Result<(), DecodeError> {
    let b = bits as usize;
    if !(1..=64).contains(&b) {
        return Err(DecodeError::Invalid("modulus bits outside 1..=64"));
    }
    let need = (acc.len() * b).div_ceil(8);
    if packed.len() != need {
        return Err(DecodeError::WrongLength {
            what: "masked input",
            expected: need,
            found: packed.len(),
        });
    }
    let pad = need * 8 - acc.len() * b;
    if pad > 0 && packed.last().is_some_and(|&l| l >> (8 - pad) != 0) {
        return Err(DecodeError::Invalid(
            "nonzero padding bits in a packed vector",
        ));
    }
    match bits {
        8 => acc
            .iter_mut()
            .zip(packed)
            .for_each(|(a, &v)| *a = a.wrapping_add(u64::from(v))),
        16 => {
            let (l, _) = packed.as_chunks::<2>();
            acc.iter_mut()
                .zip(l)
                .for_each(|(a, v)| *a = a.wrapping_add(u64::from(u16::from_le_bytes(*v))));
        }
        32 => {
            let (l, _) = packed.as_chunks::<4>();
            acc.iter_mut()
                .zip(l)
                .for_each(|(a, v)| *a = a.wrapping_add(u64::from(u32::from_le_bytes(*v))));
        }
        64 => {
            let (l, _) = packed.as_chunks::<8>();
            acc.iter_mut()
                .zip(l)
                .for_each(|(a, v)| *a = a.wrapping_add(u64::from_le_bytes(*v)));
        }
        _ => {
            let mask = quorate_crypto::secagg::prg::modulus_mask(bits);
            let mut bytes = packed.iter();
            let mut buf: u128 = 0;
            let mut have = 0usize;
            for a in acc.iter_mut() {
                while have < b {
                    buf |= u128::from(*bytes.next().unwrap_or(&0)) << have;
                    have += 8;
                }
                *a = a.wrapping_add(buf as u64 & mask);
                buf >>= b;
                have -= b;
            }
        }
    }
    Ok(())
}

/// Unpacks `len` elements.
pub fn unpack(packed: &[u8], bits: u32, len: usize) -> Result<Vec<u64>, DecodeError> {
    let mut out = vec![0u64; len];
    unpack_add(packed, bits, &mut out)?;
    Ok(out)
}

/// Fixed-point encoding of f32 vectors (§9.7.2).
///
/// Each element is clipped to `[-clip, clip]`, multiplied by `scale`, rounded to the
/// nearest integer `q` (ties away from zero) and sent as `q + offset` with
/// `offset = round(clip · scale)`, so every encoded value lies in `[0, 2·offset]`
/// and [`FixedPoint::max_input`] is `2·offset`. The sum of `c` contributions decodes as
/// `(S − c·offset) / scale`. Clipping is counted and returned, never silent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPoint {
    /// Multiplier applied before rounding (published with the round).
    pub scale: f64,
    /// Clipping bound (published with the round).
    pub clip: f32,
}

/// An encoded vector and how many of its elements were clipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Values in `[0, max_input]`.
    pub values: Vec<u64>,
    /// Elements whose magnitude exceeded `clip`.
    pub clipped: usize,
}

impl FixedPoint {
    /// Checks the parameters: finite positive scale and clip with `clip · scale < 2^52`.
    pub fn new(scale: f64, clip: f32) -> Result<Self, EncodingError> {
        if !(scale.is_finite() && scale > 0.0 && clip.is_finite() && clip > 0.0) {
            return Err(EncodingError::Parameters(
                "scale and clip must be finite and positive",
            ));
        }
        if f64::from(clip) * scale >= (1u64 << 52) as f64 {
            return Err(EncodingError::Parameters(
                "clip × scale must stay below 2^52",
            ));
        }
        Ok(Self { scale, clip })
    }

    fn offset(&self) -> u64 {
        (f64::from(self.clip) * self.scale).round() as u64
    }

    /// The largest encoded value (for the overflow budget).
    pub fn max_input(&self) -> u64 {
        2 * self.offset()
    }

    /// Encodes; NaN and infinities are refused, out-of-range values are clipped and counted.
    pub fn encode(&self, xs: &[f32]) -> Result<Encoded, EncodingError> {
        let off = self.offset() as i64;
        let mut clipped = 0;
        let mut values = Vec::with_capacity(xs.len());
        for (i, &x) in xs.iter().enumerate() {
            if !x.is_finite() {
                return Err(EncodingError::NotFinite(i));
            }
            let c = if x.abs() > self.clip {
                clipped += 1;
                x.clamp(-self.clip, self.clip)
            } else {
                x
            };
            let q = ((f64::from(c) * self.scale).round() as i64).clamp(-off, off);
            values.push((q + off) as u64);
        }
        Ok(Encoded { values, clipped })
    }

    /// Decodes the sum of `contributors` encoded vectors.
    pub fn decode_sum(&self, sum: &[u64], contributors: usize) -> Vec<f64> {
        let base = i128::from(self.offset()) * contributors as i128;
        sum.iter()
            .map(|&s| (i128::from(s) - base) as f64 / self.scale)
            .collect()
    }
}

/// A one-hot vote over `classes` classes (§9.7.3); the sum is the vote histogram.
/// The maximum input is 1.
pub fn encode_vote(class: usize, classes: usize) -> Result<Vec<u64>, EncodingError> {
    if class >= classes {
        return Err(EncodingError::VoteOutOfRange { class, classes });
    }
    let mut v = vec![0u64; classes];
    v[class] = 1;
    Ok(v)
}

/// Checks every element is at most `max`.
pub fn check_max(values: &[u64], max: u64) -> Result<(), EncodingError> {
    match values.iter().position(|&v| v > max) {
        Some(index) => Err(EncodingError::AboveMaximum {
            index,
            value: values[index],
            max,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_every_width() {
        for bits in 1..=64u32 {
            let mask = quorate_crypto::secagg::prg::modulus_mask(bits);
            let vals: Vec<u64> = (0..37u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask)
                .collect();
            let p = pack(&vals, bits);
            assert_eq!(p.len(), (37 * bits as usize).div_ceil(8));
            assert_eq!(unpack(&p, bits, 37).unwrap(), vals, "bits {bits}");
            assert!(unpack(&p[..p.len() - 1], bits, 37).is_err());
        }
        // 3 elements of 3 bits: 1, 2, 7 -> bits 001 010 111 -> 0b11_010_001, 0b0000000_1.
        assert_eq!(pack(&[1, 2, 7], 3), vec![0b1101_0001, 0b0000_0001]);
        assert!(
            unpack(&[0b1101_0001, 0b0000_0011], 3, 3).is_err(),
            "padding bits must be zero"
        );
    }

    #[test]
    fn fixed_point_roundtrip_and_clipping() {
        let fp = FixedPoint::new(1000.0, 1.0).unwrap();
        assert_eq!(fp.max_input(), 2000);
        let e = fp.encode(&[0.5, -0.25, 3.0, -1.0]).unwrap();
        assert_eq!(e.values, vec![1500, 750, 2000, 0]);
        assert_eq!(e.clipped, 1);
        let sum: Vec<u64> = e.values.iter().map(|v| v * 2).collect();
        assert_eq!(fp.decode_sum(&sum, 2), vec![1.0, -0.5, 2.0, -2.0]);
        assert_eq!(fp.encode(&[f32::NAN]), Err(EncodingError::NotFinite(0)));
        assert!(FixedPoint::new(0.0, 1.0).is_err());
        assert!(FixedPoint::new(1e30, 1.0).is_err());
    }

    #[test]
    fn votes() {
        assert_eq!(encode_vote(2, 4).unwrap(), vec![0, 0, 1, 0]);
        assert!(encode_vote(4, 4).is_err());
        assert!(check_max(&[0, 5, 3], 4).is_err());
        assert!(check_max(&[0, 4, 3], 4).is_ok());
    }
}
