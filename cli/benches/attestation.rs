//! Cost of attestation against raw primitives measured in the same run (README "Benchmarks").
//!
//! Pairs (ours / baseline): receipt sign / raw Ed25519 sign; receipt verify / raw
//! verify_strict; batch verify of 64 receipts / raw ed25519 verify_batch; 1,000 results in one
//! batch receipt / 1,000 single receipts; attested run / raw ONNX Runtime run (single, and
//! 1,000 in a batch: the pipelined batch of `quorate run`, and the single-run API's commitments
//! signed as a batch on one thread). At the end the medians are read back and printed as
//! ratios.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{median_ns, out_dir, root};

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use ed25519_dalek::Signer;
use ort::session::Session;
use ort::value::TensorRef;
use quorate_crypto::SecretKey;
use quorate_crypto::batch::{Item, verify_all};
use quorate_protocol::batch_receipt::sign_batch;
use quorate_protocol::receipt::{self, Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;
use quorate_runtime::attest::{JobParams, attested_batch, attested_run, run_and_commit};
use quorate_runtime::{LoadedModel, environment};

/// Receipts in the audit group.
const AUDIT_N: usize = 2048;

fn payload(i: u32) -> ReceiptPayload {
    let x = Tensor::from_f32("features", vec![1, 30], &[i as f32; 30]).unwrap();
    let y = Tensor::from_f32("probabilities", vec![1, 2], &[0.25, 0.75]).unwrap();
    ReceiptPayload {
        job_id: [(i % 251) as u8; 16],
        nonce: vec![7; 32],
        kind: JobKind::Local,
        model_digest: [3; 32],
        inputs: vec![Commitment::to(&x, Some(&[5; 32]))],
        outputs: vec![Commitment::to(&y, Some(&[6; 32]))],
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: None,
    }
}

fn signatures(c: &mut Criterion) {
    let key = SecretKey::from_seed(&[1; 32]);
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let p = payload(1);
    let receipt_bytes = p.sign(&key).unwrap();
    let tbs = receipt::parse(&receipt_bytes).unwrap().sign1.to_be_signed;

    let mut g = c.benchmark_group("sign");
    g.bench_function("raw_ed25519", |b| b.iter(|| dalek.sign(&tbs)));
    g.bench_function("receipt", |b| b.iter(|| p.sign(&key).unwrap()));
    g.finish();

    let vk = dalek.verifying_key();
    let sig = dalek.sign(&tbs);
    let pk = key.public_key();
    let mut g = c.benchmark_group("verify");
    g.bench_function("raw_ed25519", |b| {
        b.iter(|| vk.verify_strict(&tbs, &sig).unwrap())
    });
    g.bench_function("receipt", |b| {
        b.iter(|| {
            let r = receipt::parse(&receipt_bytes).unwrap();
            r.sign1.verify(&pk).unwrap();
        })
    });
    g.finish();

    // 64 receipts by 8 signers.
    let keys: Vec<SecretKey> = (0..8u8)
        .map(|i| SecretKey::from_seed(&[i + 1; 32]))
        .collect();
    let receipts: Vec<Vec<u8>> = (0..64u32)
        .map(|i| payload(i).sign(&keys[i as usize % 8]).unwrap())
        .collect();
    let parsed: Vec<_> = receipts
        .iter()
        .map(|r| receipt::parse(r).unwrap())
        .collect();
    let pubs: Vec<_> = (0..64).map(|i| keys[i % 8].public_key()).collect();
    let raw_keys: Vec<ed25519_dalek::VerifyingKey> = pubs
        .iter()
        .map(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.to_bytes()).unwrap())
        .collect();
    let raw_sigs: Vec<ed25519_dalek::Signature> = parsed
        .iter()
        .map(|r| ed25519_dalek::Signature::from_slice(&r.sign1.signature).unwrap())
        .collect();
    let msgs: Vec<&[u8]> = parsed
        .iter()
        .map(|r| r.sign1.to_be_signed.as_slice())
        .collect();
    let mut g = c.benchmark_group("batch_verify_64");
    g.throughput(Throughput::Elements(64));
    g.bench_function("raw_ed25519_batch", |b| {
        b.iter(|| ed25519_dalek::verify_batch(&msgs, &raw_sigs, &raw_keys).unwrap())
    });
    g.bench_function("receipts", |b| {
        b.iter(|| {
            let parsed: Vec<_> = receipts
                .iter()
                .map(|r| receipt::parse(r).unwrap())
                .collect();
            let items: Vec<Item<'_>> = parsed
                .iter()
                .zip(&pubs)
                .map(|(r, k)| Item {
                    message: &r.sign1.to_be_signed,
                    signature: &r.sign1.signature,
                    key: k,
                })
                .collect();
            assert!(verify_all(&items).iter().all(Result::is_ok));
        })
    });
    g.bench_function("receipts_one_by_one", |b| {
        b.iter(|| {
            for (r, k) in receipts.iter().zip(&pubs) {
                receipt::parse(r).unwrap().sign1.verify(k).unwrap();
            }
        })
    });
    g.finish();

    // An audit (§6.4): 2048 receipts of one node, as in its audit log, through the whole
    // verifier (parse, key lookup, strict signature), against one core verifying the same
    // signatures with raw `verify_strict`.
    let audit: Vec<Vec<u8>> = (0..AUDIT_N as u32)
        .map(|i| payload(i).sign(&keys[0]).unwrap())
        .collect();
    let audit_parsed: Vec<_> = audit.iter().map(|r| receipt::parse(r).unwrap()).collect();
    let audit_sigs: Vec<ed25519_dalek::Signature> = audit_parsed
        .iter()
        .map(|r| ed25519_dalek::Signature::from_slice(&r.sign1.signature).unwrap())
        .collect();
    let mut trust = quorate_verify::TrustStore::default();
    trust.add(keys[0].public_key(), "node-1");
    let mut g = c.benchmark_group("audit_2048");
    g.throughput(Throughput::Elements(AUDIT_N as u64));
    g.bench_function("raw_verify_strict_one_core", |b| {
        b.iter(|| {
            for (r, sig) in audit_parsed.iter().zip(&audit_sigs) {
                raw_keys[0]
                    .verify_strict(&r.sign1.to_be_signed, sig)
                    .unwrap();
            }
        })
    });
    g.bench_function("quorate_verify", |b| {
        b.iter(|| {
            let sources = audit
                .iter()
                .enumerate()
                .map(|(i, r)| quorate_verify::receipts::Source {
                    label: format!("audit.qlog#{i}"),
                    bytes: Ok(r.clone()),
                })
                .collect();
            let reports = quorate_verify::receipts::verify_receipts(sources, &trust, &[]);
            assert!(reports.iter().all(|r| r.failure.is_none()));
        })
    });
    g.finish();

    let payloads: Vec<ReceiptPayload> = (0..1000).map(payload).collect();
    let mut g = c.benchmark_group("attest_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("single_receipts", |b| {
        b.iter(|| {
            payloads
                .iter()
                .map(|p| p.sign(&key).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("batch_receipt", |b| {
        b.iter(|| sign_batch(&payloads, &key, 1).unwrap())
    });
    g.finish();
}

fn inference(c: &mut Criterion) {
    let model_path = root().join("models/mlp.onnx");
    let input = parse_npy(
        &std::fs::read(root().join("models/samples/features.npy")).unwrap(),
        "features",
    )
    .unwrap();
    let values: Vec<f32> = input
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut raw = Session::builder(environment().unwrap())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(&model_path)
        .unwrap();
    let model = LoadedModel::from_file(&model_path, 1).unwrap();
    let key = SecretKey::from_seed(&[1; 32]);
    let job = JobParams::fresh_local(true).unwrap();
    let mut raw_run = || {
        let out = raw.run(ort::inputs!["features" => TensorRef::from_array_view(([1usize, 30], values.as_slice())).unwrap()]).unwrap();
        out["probabilities"].try_extract_tensor::<f32>().unwrap().1[0]
    };

    let mut g = c.benchmark_group("run");
    g.bench_function("raw_ort", |b| b.iter(&mut raw_run));
    g.bench_function("attested", |b| {
        b.iter_batched(
            || vec![input.clone()],
            |i| attested_run(&model, i, &job, &key, 1).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("run_x1000");
    g.throughput(Throughput::Elements(1000));
    g.sample_size(10);
    g.bench_function("raw_ort", |b| {
        b.iter(|| (0..1000).map(|_| raw_run()).sum::<f32>())
    });
    // What `quorate run` over N inputs does (§5): the pipelined batch, its commitments on a
    // second thread. Its results and receipts are dropped outside the timing here; `quorate
    // bench mesh` times the same call with them dropped inside.
    g.bench_function("attested_batch", |b| {
        b.iter_batched(
            || vec![vec![input.clone()]; 1000],
            |inputs| attested_batch(&model, inputs, true, vec![9; 32], &key, 1).unwrap(),
            BatchSize::LargeInput,
        )
    });
    // The same work on one thread through the single-run API: each run committed as it comes,
    // then the payloads signed as a batch.
    g.bench_function("run_commit_then_sign", |b| {
        b.iter(|| {
            let payloads: Vec<ReceiptPayload> = (0..1000)
                .map(|_| {
                    run_and_commit(&model, vec![input.clone()], &job, 1)
                        .unwrap()
                        .payload
                })
                .collect();
            sign_batch(&payloads, &key, 1).unwrap()
        })
    });
    g.finish();
}

fn print_ratios() {
    let pairs = [
        ("sign", "receipt", "raw_ed25519"),
        ("verify", "receipt", "raw_ed25519"),
        ("batch_verify_64", "receipts", "raw_ed25519_batch"),
        ("batch_verify_64", "receipts", "receipts_one_by_one"),
        ("attest_1000", "batch_receipt", "single_receipts"),
        ("run", "attested", "raw_ort"),
        ("run_x1000", "attested_batch", "raw_ort"),
        ("run_x1000", "run_commit_then_sign", "raw_ort"),
    ];
    // Goal: an audit at 0.9× or more of the cores' raw verify_strict rate.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let (Some(ours), Some(one_core)) = (
        median_ns("audit_2048", "quorate_verify"),
        median_ns("audit_2048", "raw_verify_strict_one_core"),
    ) {
        println!(
            "\naudit of {AUDIT_N} receipts: {:.0} receipts/s; raw verify_strict {:.0}/s on one core, \
             {cores} cores; audit/cores = {:.2}",
            AUDIT_N as f64 / (ours / 1e9),
            AUDIT_N as f64 / (one_core / 1e9),
            one_core / (cores as f64 * ours)
        );
    }
    println!("\nratios of medians (ours / baseline, measured in this run):");
    for (group, ours, base) in pairs {
        match (median_ns(group, ours), median_ns(group, base)) {
            (Some(a), Some(b)) => println!(
                "  {group:<16} {ours:<20} {:>10.1} µs / {base:<27} {:>10.1} µs = {:.2}",
                a / 1e3,
                b / 1e3,
                a / b
            ),
            _ => println!("  {group}: not measured in this run"),
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    signatures(&mut c);
    inference(&mut c);
    c.final_summary();
    print_ratios();
}
