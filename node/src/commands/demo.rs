//! `quorate demo`: the main job, end to end, with the bundled models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_crypto::SecretKey;
use quorate_protocol::batch_receipt::sign_batch;
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::{parse_npy, tensors_json};

use crate::attest::{JobParams, attested_run, run_and_commit, unix_now};
use crate::files::{write_atomic, write_keypair};
use crate::runtime::LoadedModel;
use crate::verify::{TrustStore, collect_files, human_line, verify_files};

/// Arguments of `quorate demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Runs the bundled breast-cancer models (models/README.md) with the real ONNX Runtime, signs\n\
a receipt for every result, attests a batch of results under one signature, and verifies\n\
everything offline as an auditor would.\n\n\
Example:\n  quorate demo --keep demo-out\n  quorate verify demo-out/receipts --trust demo-out/keys/node-1.key.pub"
)]
pub struct DemoArgs {
    /// Keep keys, receipts and outputs in DIR (otherwise a temporary directory is removed).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
}

fn rows(batch: &Tensor) -> anyhow::Result<Vec<Tensor>> {
    let [n, width] = batch.shape() else {
        bail!("expected a [batch, features] tensor")
    };
    let row_bytes = (*width as usize) * batch.dtype().size();
    (0..*n as usize)
        .map(|i| {
            let data = batch.data()[i * row_bytes..(i + 1) * row_bytes].to_vec();
            Ok(Tensor::new(
                batch.name(),
                batch.dtype(),
                vec![1, *width],
                data,
            )?)
        })
        .collect()
}

/// Runs `quorate demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir: &Path = match &args.keep {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path()
        }
    };
    let receipts = dir.join("receipts");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&receipts)?;
    std::fs::create_dir_all(&keys)?;
    println!("quorate demo: attested inference on the bundled models, verified offline\n");

    let key = SecretKey::generate()?;
    let key_path = keys.join("node-1.key");
    write_keypair(&key_path, &key, true)?;
    println!(
        "1. node-1 has a fresh Ed25519 identity, key id {}",
        key.public_key().key_id()
    );

    let sample = parse_npy(
        &std::fs::read(args.models.join("samples/features.npy"))?,
        "features",
    )?;
    let model = LoadedModel::from_file(&args.models.join("mlp.onnx"), 1)?;
    let job = JobParams::fresh_local(true)?;
    let (attested, receipt) = attested_run(&model, vec![sample], &job, &key, unix_now())?;
    write_atomic(&receipts.join("mlp-single.cose"), &receipt, 0o644)?;
    let out = dir.join("outputs");
    std::fs::create_dir_all(&out)?;
    let doc = tensors_json(
        attested
            .outputs
            .iter()
            .map(|c| (&c.tensor, c.salt.as_ref())),
    );
    write_atomic(
        &out.join("mlp-single.json"),
        serde_json::to_vec_pretty(&doc)?.as_slice(),
        0o644,
    )?;
    let p = attested.outputs[0].tensor.to_f64_vec();
    println!(
        "2. mlp.onnx (sha256:{}…) on one patient's 30 features: P(malignant)={:.4}, P(benign)={:.4}",
        &hex::encode(model.digest)[..16],
        p[0],
        p[1]
    );
    println!(
        "   receipt: {} bytes, COSE_Sign1 / EdDSA, commits salted digests of input and output",
        receipt.len()
    );

    let batch = parse_npy(
        &std::fs::read(args.models.join("samples/features-batch4.npy"))?,
        "features",
    )?;
    let mut payloads = Vec::new();
    for (i, name) in [
        "hospital-1",
        "hospital-2",
        "hospital-3",
        "hospital-4",
        "hospital-5",
    ]
    .iter()
    .enumerate()
    {
        let m = LoadedModel::from_file(&args.models.join(format!("{name}.onnx")), 1)?;
        for row in rows(&batch)? {
            payloads.push(
                run_and_commit(&m, vec![row], &JobParams::fresh_local(true)?, unix_now())?.payload,
            );
        }
        if i == 0 {
            println!(
                "3. five hospital models x four patients = 20 results, attested with ONE signature:"
            );
        }
    }
    let batch_receipts = sign_batch(&payloads, &key, unix_now())?;
    for (i, r) in batch_receipts.iter().enumerate() {
        write_atomic(&receipts.join(format!("batch-{i:02}.cose")), r, 0o644)?;
    }
    println!("   an RFC 9162 Merkle root is signed; each result carries its inclusion proof");

    let mut trust = TrustStore::default();
    trust.add(key.public_key(), "node-1");
    let files = collect_files(std::slice::from_ref(&receipts))?;
    let reports = verify_files(&files, &trust, &[]);
    let ok = reports.iter().filter(|r| r.failure.is_none()).count();
    println!(
        "4. an auditor with only node-1's public key verifies {ok} of {} receipts:",
        reports.len()
    );
    for r in reports.iter().take(2) {
        println!("   {}", human_line(r));
    }
    println!("   …");

    let mut tampered = receipt.clone();
    let n = tampered.len();
    tampered[n / 2] ^= 0x01;
    let bad = dir.join("tampered.cose");
    write_atomic(&bad, &tampered, 0o644)?;
    let report = verify_files(&[bad], &trust, &[]).remove(0);
    println!(
        "5. the same receipt with one bit flipped is refused:\n   {}",
        human_line(&report)
    );

    if let Some(d) = &args.keep {
        println!(
            "\nkept in {}: verify again with\n  quorate verify {} --trust {}.pub",
            d.display(),
            receipts.display(),
            key_path.display()
        );
    }
    if ok != reports.len() || report.failure.is_none() {
        bail!("verification did not behave as expected");
    }
    println!("\nall {ok} receipts verified; tampering detected");
    Ok(ExitCode::SUCCESS)
}
