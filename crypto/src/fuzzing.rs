//! Fuzzing hooks of the crypto crate (the `fuzz/` targets and the corpus replay test call
//! them): each panics exactly when it finds a disagreement.

use crate::batch::{Item, verify_each};
use crate::identity::SecretKey;

/// Strict verification (§2.4, §6.2) against ed25519-dalek's `verify_strict` itself: one
/// signature alone ([`crate::PublicKey::verify`]) and inside a set ([`verify_each`], whose
/// points share one compression) must both get `verify_strict`'s verdict.
///
/// `data`: a key seed byte, a mode byte, 64 bytes, then the message. Mode 0 takes the 64
/// bytes as the signature; mode 1 XORs them into the key's valid signature of the message
/// (near misses); mode 2 keeps the valid `s` and takes the first 32 bytes as `R`; mode 3
/// keeps the valid `R` and takes the last 32 bytes as `s`.
pub fn strict_signature(data: &[u8]) {
    let Some((&[seed, mode], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some((bytes, message)) = rest.split_first_chunk::<64>() else {
        return;
    };
    let key = SecretKey::from_seed(&[seed; 32]);
    let public = key.public_key();
    let valid = key.sign(message).0;
    let mut signature = valid;
    match mode % 4 {
        0 => signature = *bytes,
        1 => signature.iter_mut().zip(bytes).for_each(|(s, b)| *s ^= b),
        2 => signature[..32].copy_from_slice(&bytes[..32]),
        _ => signature[32..].copy_from_slice(&bytes[32..]),
    }
    // A key made from a seed is always a point.
    let Ok(raw_key) = ed25519_dalek::VerifyingKey::from_bytes(&public.to_bytes()) else {
        return;
    };
    let want = raw_key
        .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok();
    assert_eq!(public.verify(message, &signature).is_ok(), want, "alone");
    let items = [
        Item {
            message,
            signature: &valid,
            key: &public,
        },
        Item {
            message,
            signature: &signature,
            key: &public,
        },
    ];
    let got = verify_each(&items);
    assert!(got[0].is_ok(), "a valid neighbour was refused");
    assert_eq!(got[1].is_ok(), want, "in a set");
}
