//! Every verdict of [`super`] against ed25519-dalek's `verify_strict` itself.

use super::*;
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

/// One case: key, message, signature bytes.
struct Case {
    key: VerifyingKey,
    message: Vec<u8>,
    signature: [u8; 64],
}

fn dalek_strict(case: &Case) -> bool {
    case.key
        .verify_strict(
            &case.message,
            &ed25519_dalek::Signature::from_bytes(&case.signature),
        )
        .is_ok()
}

fn check(case: &Case) -> Check<'_> {
    Check {
        key: &case.key,
        message: &case.message,
        signature: &case.signature,
    }
}

/// Asserts that `verify_one`, and `verify_many` over the whole set, give each case the
/// verdict `verify_strict` gives it; returns how many were accepted.
fn assert_agree(cases: &[Case]) -> usize {
    let want: Vec<bool> = cases.iter().map(dalek_strict).collect();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(verify_one(&check(case)), want[i], "case {i} alone");
    }
    let checks: Vec<Check<'_>> = cases.iter().map(check).collect();
    assert_eq!(verify_many(&checks), want, "the set");
    want.iter().filter(|ok| **ok).count()
}

fn signed(seed: u8, message: &[u8]) -> Case {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    Case {
        key: sk.verifying_key(),
        message: message.to_vec(),
        signature: ed25519_dalek::Signer::sign(&sk, message).to_bytes(),
    }
}

/// A signature under the raw scalar `a` of key bytes `a_bytes`, with nonce point `r_point`
/// and `s = r + k·a`.
fn forge(a: Scalar, a_bytes: [u8; 32], r: Scalar, r_point: EdwardsPoint, msg: &[u8]) -> Case {
    let r_bytes = r_point.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(a_bytes);
    h.update(msg);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r_bytes);
    signature[32..].copy_from_slice((r + k * a).as_bytes());
    Case {
        key: VerifyingKey::from_bytes(&a_bytes).expect("a point"),
        message: msg.to_vec(),
        signature,
    }
}

#[test]
fn valid_signatures_and_every_single_bit_change_agree() {
    let mut cases = Vec::new();
    for (seed, msg) in [(1u8, &b""[..]), (2, b"receipt"), (3, &[0xab; 700][..])] {
        let good = signed(seed, msg);
        for bit in 0..512 {
            let mut bad = signed(seed, msg);
            bad.signature[bit / 8] ^= 1 << (bit % 8);
            cases.push(bad);
        }
        let mut other_msg = signed(seed, msg);
        other_msg.message.push(0);
        cases.push(other_msg);
        let mut other_key = signed(seed, msg);
        other_key.key = SigningKey::from_bytes(&[seed + 100; 32]).verifying_key();
        cases.push(other_key);
        cases.push(good);
    }
    assert_eq!(
        assert_agree(&cases),
        3,
        "only the three untouched signatures hold"
    );
}

#[test]
fn edge_cases_agree() {
    let sk = SigningKey::from_bytes(&[9; 32]);
    let a = sk.to_scalar();
    let a_bytes = sk.verifying_key().to_bytes();
    let msg = b"edge";
    let mut cases = vec![signed(9, msg)];
    // R = identity with s = k·a: the equation holds, R is of small order; refused.
    cases.push(forge(
        a,
        a_bytes,
        Scalar::ZERO,
        EdwardsPoint::default(),
        msg,
    ));
    // R with a torsion component: R = rB + T, for each of the eight torsion points.
    for t in EIGHT_TORSION {
        let r = Scalar::from(77u64);
        cases.push(forge(a, a_bytes, r, ED25519_BASEPOINT_POINT * r + t, msg));
        // R a small-order point itself, s from a valid signature.
        let mut small = signed(9, msg);
        small.signature[..32].copy_from_slice(t.compress().as_bytes());
        cases.push(small);
    }
    // Non-canonical encodings of R: y = p + t (y ≥ p) with either sign bit, and the identity
    // with its sign bit set ("−0").
    for t in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut enc = [0xffu8; 32];
            enc[0] = 0xed + t;
            enc[31] = 0x7f | sign;
            let mut c = signed(9, msg);
            c.signature[..32].copy_from_slice(&enc);
            cases.push(c);
        }
    }
    let mut minus_zero = forge(a, a_bytes, Scalar::ZERO, EdwardsPoint::default(), msg);
    minus_zero.signature[31] |= 0x80;
    cases.push(minus_zero);
    // s + ℓ (same value, non-canonical) and s with the top bits set.
    let good = signed(9, msg);
    let s = Scalar::from_canonical_bytes(good.signature[32..].try_into().unwrap()).unwrap();
    let l_minus_one = -Scalar::ONE;
    let mut big_s = signed(9, msg);
    let mut carry = 0u16;
    for i in 0..32 {
        // s + ℓ = s + (ℓ − 1) + 1, added bytewise.
        let add = u16::from(l_minus_one.as_bytes()[i]) + u16::from(i == 0);
        let v = u16::from(s.as_bytes()[i]) + add + carry;
        big_s.signature[32 + i] = v as u8;
        carry = v >> 8;
    }
    cases.push(big_s);
    let mut high_s = signed(9, msg);
    high_s.signature[63] |= 0xe0;
    cases.push(high_s);
    // EIGHT_TORSION[0] is the identity: R = 77·B + 0 is an honest signature too.
    assert_eq!(
        assert_agree(&cases),
        2,
        "only the two honest signatures hold"
    );
}

/// Keys `verify_strict` takes as they come (quorate refuses both kinds when a key is
/// loaded, §2.1, but the verdicts must agree here regardless).
#[test]
fn small_order_and_mixed_order_keys_agree() {
    let msg = b"keys";
    let mut cases = Vec::new();
    // A = identity: [s]B − [k]A = [s]B, so s = 1 with R = B satisfies the equation; refused
    // because A is of small order. s = 0 with R = identity likewise.
    for (s, r_point) in [
        (Scalar::ONE, ED25519_BASEPOINT_POINT),
        (Scalar::ZERO, EdwardsPoint::default()),
    ] {
        let a_bytes = EdwardsPoint::default().compress().to_bytes();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(r_point.compress().as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        cases.push(Case {
            key: VerifyingKey::from_bytes(&a_bytes).unwrap(),
            message: msg.to_vec(),
            signature,
        });
    }
    // A = aB + T (order 8 torsion): the equation holds exactly when k·T = 0, i.e. k ≡ 0
    // mod 8; `verify_strict` then accepts. Nonces are ground until one such k appears, and a
    // few with k ≢ 0 are kept as well.
    let a = Scalar::from(1234567u64);
    let a_bytes = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1])
        .compress()
        .to_bytes();
    let mut accepted = 0;
    for n in 1u64..200 {
        let r = Scalar::from(n);
        let case = forge(a, a_bytes, r, ED25519_BASEPOINT_POINT * r, msg);
        let holds = dalek_strict(&case);
        if holds && accepted < 2 {
            accepted += 1;
            cases.push(case);
        } else if !holds && n < 6 {
            cases.push(case);
        }
    }
    assert_eq!(accepted, 2, "some nonce gives k ≡ 0 mod 8");
    assert_eq!(assert_agree(&cases), 2);
}

#[test]
fn an_empty_set_is_empty() {
    assert!(verify_many(&[]).is_empty());
}

proptest! {
    /// Arbitrary signature bytes, and arbitrary changes to a valid signature, against
    /// arbitrary messages.
    #[test]
    fn arbitrary_signatures_agree(
        seed in 1u8..=255,
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        raw in proptest::collection::vec(any::<u8>(), 64),
        flip in 0usize..512,
        keep_r in any::<bool>(),
    ) {
        let mut random = signed(seed, &msg);
        random.signature.copy_from_slice(&raw);
        let mut changed = signed(seed, &msg);
        if keep_r {
            changed.signature[32..].copy_from_slice(&raw[32..]);
        } else {
            changed.signature[flip / 8] ^= 1 << (flip % 8);
        }
        let cases = [random, changed, signed(seed, &msg)];
        let want: Vec<bool> = cases.iter().map(dalek_strict).collect();
        for (i, case) in cases.iter().enumerate() {
            prop_assert_eq!(verify_one(&check(case)), want[i]);
        }
        let checks: Vec<Check<'_>> = cases.iter().map(check).collect();
        prop_assert_eq!(verify_many(&checks), want);
    }
}

/// On x86_64 the workspace builds curve25519-dalek with its IFMA backend (§6.2.1,
/// `.cargo/config.toml`), so the arithmetic reported is the best the processor allows. Built
/// without it (a RUSTFLAGS in the environment replaces the file's), an IFMA processor would
/// report AVX2 here.
#[test]
fn the_arithmetic_reported_is_the_best_this_processor_allows() {
    let name = ed25519_arithmetic();
    #[cfg(target_arch = "x86_64")]
    {
        let ifma = std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl");
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let want = match (ifma, avx2) {
            (true, _) => "AVX-512 IFMA",
            (false, true) => "AVX2",
            (false, false) => "portable",
        };
        assert_eq!(name, want, "was .cargo/config.toml's rustflags replaced?");
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert_eq!(name, "portable");
}
