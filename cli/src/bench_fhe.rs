//! `quorate bench fhe` (§16.4): the encrypted dot product of a qlinear model, naive
//! (`q_i · w_i` signed scalar multiplications, then one sum) against the chosen formulation
//! (client-side pre-shifted planes, two multi-operand sums and one subtraction), measured in
//! the same run on the same ciphertexts, with the decrypted results checked against the
//! plaintext score. Also reports key and ciphertext sizes.

use std::time::Instant;

use anyhow::{Context, ensure};
use quorate_fhe::tfhe::prelude::*;
use quorate_fhe::tfhe::{
    ClientKey, CompactPublicKey, CompressedServerKey, FheInt32, set_server_key,
};

use quorate_fhe::engine::{self, INPUT_VALUES};
use quorate_fhe::qlinear::QLinear;

/// Arguments of `quorate bench fhe`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Generates a key set, encrypts the bundled sample's quantized features once, and times\n\
both formulations on qlinear-1.json --samples times each (medians reported). Takes about a\n\
minute on 2 cores.\n\nExample:\n  quorate bench fhe --samples 3"
)]
pub struct BenchFheArgs {
    /// Runs of each formulation.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub samples: u32,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: std::path::PathBuf,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark.
pub fn run(args: &BenchFheArgs) -> anyhow::Result<std::process::ExitCode> {
    let model = QLinear::parse(&std::fs::read(args.models.join("qlinear-1.json"))?)?;
    let raw: Vec<f64> = serde_json::from_value(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(
            args.models.join("samples/qlinear-features.json"),
        )?)?["features"]
            .clone(),
    )
    .context("samples/qlinear-features.json")?;
    let q = model.quantize(&raw)?;
    let want = model.score(&q);

    eprintln!("generating keys ({})", engine::PARAMETERS);
    let t = Instant::now();
    let client = ClientKey::generate(engine::config());
    let compressed = CompressedServerKey::new(&client);
    let keygen = t.elapsed().as_secs_f64();
    let public = CompactPublicKey::new(&client);
    let server_bytes = engine::to_bytes(&compressed, quorate_protocol::fhe::MAX_SERVER_KEY_LEN)?;
    let t = Instant::now();
    let server = compressed.decompress();
    let decompress = t.elapsed().as_secs_f64();
    set_server_key(server.clone());

    let t = Instant::now();
    let input_bytes = engine::encrypt_input(&public, &q)?;
    let encrypt = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let input = engine::decode_input(&input_bytes)?;
    let expand = t.elapsed().as_secs_f64();

    let mut naive = Vec::new();
    let mut planes = Vec::new();
    let mut score_len = 0;
    for i in 0..args.samples {
        eprintln!("sample {}/{}", i + 1, args.samples);
        let t = Instant::now();
        let a = engine::eval_naive(&model, &input);
        naive.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let b = engine::eval_planes(&model, &input);
        planes.push(t.elapsed().as_secs_f64());
        for (what, ct) in [("naive", &a), ("planes", &b)] {
            let v: i32 = ct.decrypt(&client);
            ensure!(
                i64::from(v) == want,
                "{what} decrypted to {v}, plaintext score is {want}"
            );
        }
        score_len = engine::encode_score(&b)?.len();
    }
    let three: Vec<FheInt32> = (0..3)
        .map(|_| engine::eval_planes(&model, &input))
        .collect();
    let t = Instant::now();
    let sum = engine::aggregate(&three);
    let aggregate = t.elapsed().as_secs_f64();
    let v: i32 = sum.decrypt(&client);
    ensure!(i64::from(v) == 3 * want, "aggregate decrypted to {v}");

    let (n, p) = (median(naive), median(planes));
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "quorate bench fhe: qlinear-1.json, 8 features, {} samples, {} threads",
        args.samples,
        rayon_threads()
    );
    println!("parameters            {}", engine::PARAMETERS);
    println!("keygen (compressed)   {keygen:.2} s");
    println!(
        "server key            {:.1} MiB compressed, decompress {decompress:.2} s",
        mib(server_bytes.len())
    );
    println!(
        "input ciphertext      {} bytes ({INPUT_VALUES} values, unpacked compact list), encrypt {:.1} ms, expand {:.1} ms",
        input_bytes.len(),
        encrypt * 1e3,
        expand * 1e3
    );
    println!(
        "score ciphertext      {:.1} KiB (FheInt32)",
        score_len as f64 / 1024.0
    );
    println!("naive  (c·w + sum)    median {n:.3} s");
    println!("planes (2 sums − 1)   median {p:.3} s");
    println!("ratio                 {:.2}× faster (goal ≥ 4×)", n / p);
    println!("aggregate of 3 scores {aggregate:.3} s");
    println!("all results decrypted to the plaintext score {want}");
    Ok(std::process::ExitCode::SUCCESS)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
