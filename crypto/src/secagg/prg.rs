//! Mask expansion (§9.4.3): AES-128-CTR keystream, read as little-endian lanes, added to
//! (or subtracted from) an accumulator mod 2^64 and reduced mod 2^b at the end.
//!
//! Element `i` of the mask seeded by `seed` is the little-endian integer made of keystream
//! bytes `[i·w, (i+1)·w)`, reduced mod 2^b, where the lane width `w` is 1, 2, 4 or 8 bytes
//! (the smallest that holds `b` bits). The keystream is AES-128-CTR with `seed` as key and
//! a 128-bit big-endian counter block that starts at zero.
//!
//! Because 2^b divides 2^64 (and 2^32 when b ≤ 32), adding full lanes modulo that power of
//! two and reducing once at the end gives the same result as reducing every term. The hot
//! loop ([`accumulate_many`]) writes the keystream of up to [`GROUP`] masks of the same sign
//! into reused buffers and adds their lane-wise sum to the accumulator in one pass, which
//! the compiler vectorises: the accumulator slice is loaded and stored once per group
//! instead of once per mask. For b ≤ 32 the lanes are added into a `u32` copy of the
//! accumulator slice (twice the lanes per vector, and half the L1 traffic), so the cost
//! stays close to that of the raw keystream.

use ctr::cipher::{KeyIvInit, StreamCipher};

use super::SecaggCryptoError;
use super::kdf::PrgSeed;

/// Elements processed per step: the accumulator slice and the [`GROUP`] keystream pieces of
/// one step stay in L1 together (20 KiB for b ≤ 32).
pub const CHUNK_ELEMENTS: usize = 1024;

/// Masks whose keystream is summed before it is added to the accumulator.
pub const GROUP: usize = 4;

/// The keystream buffer size that [`raw_keystream`] and the expander use for `bits`.
pub fn chunk_bytes(bits: u32) -> usize {
    CHUNK_ELEMENTS * lane_bytes(bits).unwrap_or(8)
}

type Cipher = ctr::Ctr128BE<aes::Aes128Enc>;

/// Whether a mask is added to or subtracted from the accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// `acc += mask`
    Add,
    /// `acc -= mask`
    Subtract,
}

/// The lane width in bytes for a modulus of 2^`bits` (§9.4.3).
pub fn lane_bytes(bits: u32) -> Result<usize, SecaggCryptoError> {
    match bits {
        1..=8 => Ok(1),
        9..=16 => Ok(2),
        17..=32 => Ok(4),
        33..=64 => Ok(8),
        _ => Err(SecaggCryptoError::ModulusBits(bits)),
    }
}

/// The bit mask of 2^`bits` − 1.
pub fn modulus_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Reduces every element mod 2^`bits`.
pub fn reduce(acc: &mut [u64], bits: u32) {
    let m = modulus_mask(bits);
    for a in acc {
        *a &= m;
    }
}

macro_rules! group_lanes {
    ($name:ident, $acc:ty, $w:literal, $conv:expr) => {
        /// `acc[i] ±= Σ_k lane_k[i]` over the keystream pieces `ks` (one to [`GROUP`]),
        /// wrapping in the accumulator's width.
        #[inline]
        fn $name(acc: &mut [$acc], ks: &[&[u8]], sign: Sign) {
            let conv = $conv;
            let lanes = |k: usize| ks.get(k).map_or(&[][..], |p| p.as_chunks::<$w>().0);
            let (l0, l1, l2, l3) = (lanes(0), lanes(1), lanes(2), lanes(3));
            let apply = |a: &mut $acc, v: $acc| match sign {
                Sign::Add => *a = a.wrapping_add(v),
                Sign::Subtract => *a = a.wrapping_sub(v),
            };
            // One loop per group size, so that each is a straight vectorisable zip.
            match ks.len() {
                4 => {
                    for ((((a, x0), x1), x2), x3) in acc.iter_mut().zip(l0).zip(l1).zip(l2).zip(l3)
                    {
                        let v = conv(x0)
                            .wrapping_add(conv(x1))
                            .wrapping_add(conv(x2).wrapping_add(conv(x3)));
                        apply(a, v);
                    }
                }
                3 => {
                    for (((a, x0), x1), x2) in acc.iter_mut().zip(l0).zip(l1).zip(l2) {
                        apply(a, conv(x0).wrapping_add(conv(x1)).wrapping_add(conv(x2)));
                    }
                }
                2 => {
                    for ((a, x0), x1) in acc.iter_mut().zip(l0).zip(l1) {
                        apply(a, conv(x0).wrapping_add(conv(x1)));
                    }
                }
                _ => {
                    for (a, x0) in acc.iter_mut().zip(l0) {
                        apply(a, conv(x0));
                    }
                }
            }
        }
    };
}

group_lanes!(lanes1, u32, 1, |l: &[u8; 1]| u32::from(l[0]));
group_lanes!(lanes2, u32, 2, |l: &[u8; 2]| u32::from(u16::from_le_bytes(
    *l
)));
group_lanes!(lanes4, u32, 4, |l: &[u8; 4]| u32::from_le_bytes(*l));
group_lanes!(lanes8, u64, 8, |l: &[u8; 8]| u64::from_le_bytes(*l));

/// Expands many masks into one accumulator: `acc[i] ±= mask_k[i]` for every
/// `(seed_k, sign_k)`, modulo 2^64 when b > 32 and modulo 2^32 when b ≤ 32 (the high half
/// of each element is then cleared). Either way the result is congruent mod 2^b to the
/// exact sum; the caller reduces mod 2^b. Returns the number of keystream bytes generated.
///
/// The loop is element-chunk-major: for each slice of [`CHUNK_ELEMENTS`] accumulator
/// elements it runs the AES-CTR streams of a group of up to [`GROUP`] masks of the same sign
/// forward by one piece each into reused buffers and adds their sum, so the accumulator
/// slice never leaves L1 and the cost per mask is the keystream plus a fraction of an
/// L1-resident vector add.
pub fn accumulate_many(
    masks: &[(PrgSeed, Sign)],
    acc: &mut [u64],
    bits: u32,
) -> Result<u64, SecaggCryptoError> {
    let w = lane_bytes(bits)?;
    let cipher = |seed: &PrgSeed| Cipher::new(&(*seed.as_bytes()).into(), &[0u8; 16].into());
    // Addition commutes: group the masks by sign, in their order.
    let mut groups: Vec<(Vec<Cipher>, Sign)> = Vec::new();
    for sign in [Sign::Add, Sign::Subtract] {
        let same: Vec<&PrgSeed> = masks
            .iter()
            .filter(|(_, s)| *s == sign)
            .map(|(k, _)| k)
            .collect();
        for g in same.chunks(GROUP) {
            groups.push((g.iter().map(|k| cipher(k)).collect(), sign));
        }
    }
    let mut bufs = vec![0u8; GROUP * CHUNK_ELEMENTS * w];
    let mut narrow = vec![0u32; if w < 8 { CHUNK_ELEMENTS } else { 0 }];
    let mut generated = 0u64;
    for part in acc.chunks_mut(CHUNK_ELEMENTS) {
        let n = part.len() * w;
        let narrow = &mut narrow[..if w < 8 { part.len() } else { 0 }];
        for (a, p) in narrow.iter_mut().zip(part.iter()) {
            *a = *p as u32; // truncation is the point: mod 2^32
        }
        for (ciphers, sign) in &mut groups {
            let mut pieces: [&[u8]; GROUP] = [&[]; GROUP];
            for ((c, buf), piece) in ciphers
                .iter_mut()
                .zip(bufs.chunks_mut(CHUNK_ELEMENTS * w))
                .zip(pieces.iter_mut())
            {
                let ks = &mut buf[..n];
                c.try_write_keystream(ks)
                    .map_err(|_| SecaggCryptoError::SharingParameters("keystream exhausted"))?;
                *piece = ks;
            }
            let ks = &pieces[..ciphers.len()];
            match w {
                1 => lanes1(narrow, ks, *sign),
                2 => lanes2(narrow, ks, *sign),
                4 => lanes4(narrow, ks, *sign),
                _ => lanes8(part, ks, *sign),
            }
            generated += (n * ciphers.len()) as u64;
        }
        for (p, a) in part.iter_mut().zip(narrow.iter()) {
            *p = u64::from(*a);
        }
    }
    Ok(generated)
}

/// The mask of `seed` itself: `len` elements mod 2^`bits` (test vectors, tests).
pub fn expand(seed: &PrgSeed, len: usize, bits: u32) -> Result<Vec<u64>, SecaggCryptoError> {
    let mut acc = vec![0u64; len];
    let one = [(PrgSeed::from_bytes(*seed.as_bytes()), Sign::Add)];
    accumulate_many(&one, &mut acc, bits)?;
    reduce(&mut acc, bits);
    Ok(acc)
}

/// Raw AES-128-CTR keystream generation of `total` bytes in `buf.len()`-byte pieces into
/// `buf`, with nothing else done: the baseline that benchmarks compare expansion against.
/// Returns a byte of the output so the work cannot be optimised away.
pub fn raw_keystream(seed: &PrgSeed, total: usize, buf: &mut [u8]) -> u8 {
    let mut cipher = Cipher::new(&(*seed.as_bytes()).into(), &[0u8; 16].into());
    let mut left = total;
    let mut x = 0u8;
    let step = buf.len().max(1);
    while left > 0 {
        let n = left.min(step);
        if cipher.try_write_keystream(&mut buf[..n]).is_err() {
            break;
        }
        x ^= buf[n - 1];
        left -= n;
    }
    x
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn lane_widths() {
        assert_eq!(lane_bytes(1).unwrap(), 1);
        assert_eq!(lane_bytes(8).unwrap(), 1);
        assert_eq!(lane_bytes(9).unwrap(), 2);
        assert_eq!(lane_bytes(32).unwrap(), 4);
        assert_eq!(lane_bytes(33).unwrap(), 8);
        assert_eq!(lane_bytes(64).unwrap(), 8);
        assert!(lane_bytes(0).is_err());
        assert!(lane_bytes(65).is_err());
    }

    #[test]
    fn zero_key_keystream_matches_known_aes_blocks() {
        // AES-128 under the all-zero key of counter blocks 0, 1, 2 (the first from FIPS-197
        // folklore, the next two are E(K, Y0) and E(K, Y1) of GCM test cases 1 and 2).
        let seed = PrgSeed::from_bytes([0u8; 16]);
        let mut raw = vec![0u8; 48];
        raw_keystream(&seed, 48, &mut raw);
        assert_eq!(
            hex::encode(&raw),
            "66e94bd4ef8a2c3b884cfa59ca342b2e58e2fccefa7e3061367f1d57a4e7455a0388dace60b6a392f328c2b971b2fe78"
        );
        // Lanes are read little-endian from the keystream.
        let m = expand(&seed, 6, 64).unwrap();
        for (i, v) in m.iter().enumerate() {
            assert_eq!(
                *v,
                u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap())
            );
        }
        let m = expand(&seed, 12, 20).unwrap();
        for (i, v) in m.iter().enumerate() {
            let lane = u32::from_le_bytes(raw[i * 4..i * 4 + 4].try_into().unwrap());
            assert_eq!(*v, u64::from(lane) & 0xfffff);
        }
        assert_eq!(expand(&seed, 1, 8).unwrap(), vec![0x66]);
    }

    #[test]
    fn grouped_masks_of_mixed_signs_equal_their_separate_expansions() {
        // 11 masks in an irregular sign pattern: groups of 4, 3 and 1 of one sign and of
        // 2 and 1 of the other, over a length that ends in a partial chunk.
        let signs = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1];
        for bits in [5u32, 12, 32, 33, 64] {
            let len = CHUNK_ELEMENTS * 3 + 5;
            let masks: Vec<(PrgSeed, Sign)> = signs
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let sign = if s == 1 { Sign::Add } else { Sign::Subtract };
                    (PrgSeed::from_bytes([i as u8 ^ bits as u8; 16]), sign)
                })
                .collect();
            let start: Vec<u64> = (0..len as u64).map(|i| i * 7919).collect();
            let mut acc = start.clone();
            let n = accumulate_many(&masks, &mut acc, bits).unwrap();
            assert_eq!(n, (signs.len() * len * lane_bytes(bits).unwrap()) as u64);
            reduce(&mut acc, bits);
            let mut want: Vec<u64> = start.clone();
            for (seed, sign) in &masks {
                let m = expand(&PrgSeed::from_bytes(*seed.as_bytes()), len, bits).unwrap();
                for (w, v) in want.iter_mut().zip(m) {
                    *w = match sign {
                        Sign::Add => w.wrapping_add(v),
                        Sign::Subtract => w.wrapping_sub(v),
                    };
                }
            }
            reduce(&mut want, bits);
            assert_eq!(acc, want, "bits {bits}");
        }
    }

    #[test]
    fn add_then_subtract_cancels_across_chunk_boundaries() {
        for bits in [7u32, 16, 31, 32, 48, 64] {
            let len = CHUNK_ELEMENTS * 2 + 37;
            let mut acc: Vec<u64> = (0..len as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9) & modulus_mask(bits))
                .collect();
            let orig = acc.clone();
            let s = || PrgSeed::from_bytes([bits as u8; 16]);
            let t = || PrgSeed::from_bytes([bits as u8 + 1; 16]);
            let n = accumulate_many(&[(s(), Sign::Add), (t(), Sign::Subtract)], &mut acc, bits)
                .unwrap();
            assert_eq!(n, 2 * (len * lane_bytes(bits).unwrap()) as u64);
            reduce(&mut acc, bits);
            assert_ne!(acc, orig);
            // Equal to expanding each mask on its own.
            let (ms, mt) = (
                expand(&s(), len, bits).unwrap(),
                expand(&t(), len, bits).unwrap(),
            );
            for i in 0..len {
                assert_eq!(
                    acc[i],
                    orig[i].wrapping_add(ms[i]).wrapping_sub(mt[i]) & modulus_mask(bits)
                );
            }
            accumulate_many(&[(t(), Sign::Add), (s(), Sign::Subtract)], &mut acc, bits).unwrap();
            reduce(&mut acc, bits);
            assert_eq!(acc, orig);
        }
    }
}
