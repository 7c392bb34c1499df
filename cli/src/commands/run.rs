//! `quorate run`: attested local inference (§4).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, tensors_json};

use quorate_node::clock::unix_now;
use quorate_node::files::{load_secret_key, read_limited, write_atomic};
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::{Committed, JobParams, attested_run};

/// Arguments of `quorate run`.
#[derive(clap::Args)]
#[command(
    after_help = "Writes DIR/outputs.json (each output's name, dtype, shape, data, digest and salt),\n\
DIR/inputs.json (the inputs with their salts, to reveal them to an auditor) and DIR/receipt.cose.\n\
Commitments are salted by default so the receipt alone does not let anyone test guesses of\n\
the input (§3.3).\n\n\
Example:\n  quorate run --model models/mlp.onnx --input models/samples/features.npy \\\n      --key keys/node1.key --out out/\n  quorate verify out/receipt.cose --trust keys/node1.key.pub --tensor probabilities=out/outputs.json"
)]
pub struct RunArgs {
    /// The ONNX model file.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Input tensors: a .npy file (one input) or a JSON tensor list (§3.5).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Name of the model input a .npy file feeds (default: the model's only input).
    #[arg(long, value_name = "NAME")]
    pub input_name: Option<String>,
    /// The node's secret key (from `quorate keygen`).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Directory for outputs.json, inputs.json and receipt.cose (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Commit without salts (only for high-entropy data).
    #[arg(long)]
    pub no_salt: bool,
    /// Client nonce to bind into the receipt, as hex (16 to 64 bytes); random by default.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Runs `quorate run`.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let key = load_secret_key(&args.key)?;
    let model = LoadedModel::from_file(&args.model, args.threads)?;
    let bytes = read_limited(&args.input, MAX_FILE_LEN as u64)?;
    let npy_name = match (&args.input_name, model.inputs.as_slice()) {
        (Some(n), _) => n.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => String::new(),
    };
    if bytes.starts_with(b"\x93NUMPY") && npy_name.is_empty() {
        bail!(
            "the model takes several inputs ({}); name the one this .npy feeds with --input-name",
            model.describe_inputs()
        );
    }
    let tensors = tensor_file::parse_any(&bytes, &npy_name)
        .with_context(|| format!("input {}", args.input.display()))?;
    let tensors = model
        .check_inputs(tensors.into_iter().map(|r| r.tensor).collect())
        .with_context(|| {
            format!(
                "input {} does not fit model {}",
                args.input.display(),
                args.model.display()
            )
        })?;
    let mut job = JobParams::fresh_local(!args.no_salt)?;
    if let Some(n) = &args.nonce {
        let nonce = hex::decode(n).context("--nonce must be hex")?;
        if !quorate_protocol::receipt::NONCE_LEN.contains(&nonce.len()) {
            bail!("--nonce must be 16 to 64 bytes, found {}", nonce.len());
        }
        job.nonce = nonce;
    }
    let (attested, receipt) = attested_run(&model, tensors, &job, &key, unix_now())?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let doc = |list: &[Committed]| tensors_json(list.iter().map(|c| (&c.tensor, c.salt.as_ref())));
    write_atomic(
        &args.out.join("outputs.json"),
        serde_json::to_vec_pretty(&doc(&attested.outputs))?.as_slice(),
        0o644,
    )?;
    write_atomic(
        &args.out.join("inputs.json"),
        serde_json::to_vec_pretty(&doc(&attested.inputs))?.as_slice(),
        0o600,
    )?;
    write_atomic(&args.out.join("receipt.cose"), &receipt, 0o644)?;

    println!("model     sha256:{}", hex::encode(model.digest));
    println!(
        "runtime   {} on {}",
        attested.payload.runtime, attested.payload.provider
    );
    for c in &attested.outputs {
        let values = c.tensor.to_f64_vec();
        let shown: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
        let more = if values.len() > 8 { ", …" } else { "" };
        println!(
            "output    {} {}{:?} = [{}{more}]",
            c.tensor.name(),
            c.tensor.dtype(),
            c.tensor.shape(),
            shown.join(", ")
        );
    }
    println!(
        "signed by {} (job {})",
        key.public_key().key_id(),
        hex::encode(job.job_id)
    );
    println!(
        "wrote     {}/outputs.json, inputs.json, receipt.cose",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
