//! Criterion bench of strict signature verification (§6.2) against ed25519-dalek's
//! `verify_strict`, measured in the same run: one signature through `PublicKey::verify`, and
//! 256 receipts-sized signatures through `batch::verify_each` (per-item verdicts, one shared
//! compression), each against `verify_strict` over the same signatures.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use quorate_crypto::SecretKey;
use quorate_crypto::batch::{Item, verify_each};

/// Signed bytes about the size of a mesh job's receipt payload.
const MESSAGE_LEN: usize = 360;
const SET: usize = 256;

fn bench_strict(c: &mut Criterion) {
    let key = SecretKey::from_seed(&[3; 32]);
    let public = key.public_key();
    let raw_key = ed25519_dalek::VerifyingKey::from_bytes(&public.to_bytes()).unwrap();
    let messages: Vec<Vec<u8>> = (0..SET)
        .map(|i| {
            let mut m = vec![0x5a; MESSAGE_LEN];
            m[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m
        })
        .collect();
    let signatures: Vec<[u8; 64]> = messages.iter().map(|m| key.sign(m).0).collect();
    let raw_signatures: Vec<ed25519_dalek::Signature> = signatures
        .iter()
        .map(ed25519_dalek::Signature::from_bytes)
        .collect();

    let mut g = c.benchmark_group("strict/one");
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            raw_key
                .verify_strict(black_box(&messages[0]), &raw_signatures[0])
                .unwrap()
        })
    });
    g.bench_function("public_key_verify", |b| {
        b.iter(|| {
            public
                .verify(black_box(&messages[0]), &signatures[0])
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("strict/set_of_256");
    g.throughput(Throughput::Elements(SET as u64));
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            messages
                .iter()
                .zip(&raw_signatures)
                .filter(|(m, s)| raw_key.verify_strict(black_box(m), s).is_ok())
                .count()
        })
    });
    let items: Vec<Item<'_>> = messages
        .iter()
        .zip(&signatures)
        .map(|(m, s)| Item {
            message: m,
            signature: s,
            key: &public,
        })
        .collect();
    g.bench_function("verify_each", |b| {
        b.iter(|| {
            verify_each(black_box(&items))
                .iter()
                .filter(|r| r.is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_strict);
criterion_main!(benches);
