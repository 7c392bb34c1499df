//! Criterion bench of loading a public key (§2.1) against the raw checks it is made of,
//! measured in the same run: `PublicKey::from_bytes` of a key seen before (every roster key
//! after the first message) and of keys never seen, against ed25519-dalek's decompression,
//! small-order and subgroup checks done directly.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use quorate_crypto::{PublicKey, SecretKey};

fn bench_public_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("identity/public_key");
    let known = SecretKey::from_seed(&[1; 32]).public_key().to_bytes();
    PublicKey::from_bytes(&known).unwrap();
    // More distinct keys than are remembered, taken in turn: every load validates afresh.
    let fresh: Vec<[u8; 32]> = (0..4096u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(&seed).public_key().to_bytes()
        })
        .collect();
    g.bench_function("raw_dalek_checks", |b| {
        b.iter(|| {
            let key = ed25519_dalek::VerifyingKey::from_bytes(black_box(&known)).unwrap();
            black_box(key.is_weak() || !key.to_edwards().is_torsion_free())
        })
    });
    g.bench_function("from_bytes_seen_before", |b| {
        b.iter(|| PublicKey::from_bytes(black_box(&known)).unwrap())
    });
    let mut i = 0;
    g.bench_function("from_bytes_never_seen", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            PublicKey::from_bytes(black_box(&fresh[i])).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_public_key);
criterion_main!(benches);
