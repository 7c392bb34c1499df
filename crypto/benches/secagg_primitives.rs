//! Criterion benches of the secure-aggregation primitives (§9.4), each against the raw
//! primitive measured in the same run: mask expansion against raw AES-128-CTR keystream,
//! key agreement against bare `x25519`, Shamir against the field operations it is made of.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use quorate_crypto::secagg::ka::KaSecretKey;
use quorate_crypto::secagg::kdf::{self, PrgSeed};
use quorate_crypto::secagg::prg::{self, Sign};
use quorate_crypto::secagg::rng::DeterministicRng;
use quorate_crypto::secagg::{aead, shamir};

fn bench_prg(c: &mut Criterion) {
    let mut g = c.benchmark_group("secagg/prg");
    g.sample_size(20);
    const MASKS: usize = 32;
    for &(len, bits) in &[
        (100_000usize, 32u32),
        (100_000, 16),
        (1_000, 32),
        (100_000, 64),
    ] {
        let w = prg::lane_bytes(bits).unwrap_or(8);
        g.throughput(Throughput::Bytes((MASKS * len * w) as u64));
        let seeds: Vec<(PrgSeed, Sign)> = (0..MASKS)
            .map(|i| {
                (
                    PrgSeed::from_bytes([i as u8; 16]),
                    if i % 2 == 0 {
                        Sign::Add
                    } else {
                        Sign::Subtract
                    },
                )
            })
            .collect();
        let mut buf = vec![0u8; prg::chunk_bytes(bits)];
        let id = format!("{MASKS}x{len}x{bits}b");
        g.bench_with_input(BenchmarkId::new("raw_aes128_ctr", &id), &len, |b, &len| {
            b.iter(|| {
                let mut x = 0u8;
                for (s, _) in &seeds {
                    x ^= prg::raw_keystream(s, len * w, &mut buf);
                }
                black_box(x)
            })
        });
        let mut acc = vec![0u64; len];
        g.bench_with_input(BenchmarkId::new("expand_add", &id), &len, |b, _| {
            b.iter(|| black_box(prg::accumulate_many(&seeds, &mut acc, bits)))
        });
    }
    g.finish();
}

fn bench_ka(c: &mut Criterion) {
    let mut g = c.benchmark_group("secagg/x25519");
    let a = KaSecretKey::from_bytes(&[1; 32]);
    let b_pub = KaSecretKey::from_bytes(&[2; 32]).public_key();
    g.bench_function("raw_x25519", |b| {
        b.iter(|| black_box(x25519_dalek::x25519([1; 32], b_pub.0)))
    });
    g.bench_function("agree_checked", |b| b.iter(|| black_box(a.agree(&b_pub))));
    g.bench_function("agree_then_pairwise_seed", |b| {
        b.iter(|| {
            let s = a
                .agree(&b_pub)
                .map(|s| kdf::pairwise_mask_seed(s.as_bytes(), &[0; 32], 1, 2));
            black_box(s.is_ok())
        })
    });
    g.finish();
}

fn bench_shamir(c: &mut Criterion) {
    let mut g = c.benchmark_group("secagg/shamir");
    for &(n, t) in &[(100u32, 51usize), (500, 251), (1000, 501)] {
        let xs: Vec<u32> = (1..=n).collect();
        let mut rng = DeterministicRng::from_seed(&[9; 32]);
        let secret = shamir::SecretScalar::random(&mut rng).unwrap_or_else(|_| unreachable!());
        g.bench_with_input(BenchmarkId::new("split", format!("{n}/{t}")), &n, |b, _| {
            b.iter(|| black_box(shamir::split(&secret, t, &xs, &mut rng).map(|v| v.len())))
        });
        let shares = shamir::split(&secret, t, &xs, &mut rng).unwrap_or_default();
        let refs: Vec<&shamir::Share> = shares.iter().take(t).collect();
        let interp = shamir::Interpolator::new(&xs[..t]).unwrap_or_else(|_| unreachable!());
        g.bench_with_input(
            BenchmarkId::new("lagrange_coefficients", format!("{n}/{t}")),
            &n,
            |b, _| b.iter(|| black_box(shamir::Interpolator::new(&xs[..t]).is_ok())),
        );
        g.bench_with_input(
            BenchmarkId::new("interpolate", format!("{n}/{t}")),
            &n,
            |b, _| b.iter(|| black_box(interp.interpolate(&refs).is_ok())),
        );
        // Baseline: t raw field multiply-adds (what one interpolation is made of).
        let ys: Vec<curve25519_dalek::Scalar> =
            (0..t as u64).map(curve25519_dalek::Scalar::from).collect();
        g.bench_with_input(
            BenchmarkId::new("raw_field_mul_add", format!("{n}/{t}")),
            &n,
            |b, _| {
                b.iter(|| {
                    let mut acc = curve25519_dalek::Scalar::ZERO;
                    for y in &ys {
                        acc += y * y;
                    }
                    black_box(acc)
                })
            },
        );
    }
    g.finish();
}

fn bench_aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("secagg/chacha20poly1305");
    let k = kdf::share_encryption_key(&[1; 32], &[2; 32], 0, 1);
    let pt = [5u8; 72];
    g.throughput(Throughput::Bytes(72));
    g.bench_function("seal_share_pair", |b| {
        b.iter(|| black_box(aead::seal(&k, &[0; 32], &pt)))
    });
    let ct = aead::seal(&k, &[0; 32], &pt).unwrap_or_default();
    g.bench_function("open_share_pair", |b| {
        b.iter(|| black_box(aead::open(&k, &[0; 32], &ct).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench_prg, bench_ka, bench_shamir, bench_aead);
criterion_main!(benches);
