//! `quorate run`: attested local inference (§4).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, tensors_json};

use quorate_node::clock::unix_now;
use quorate_node::files::{load_secret_key, read_limited};
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::{Committed, JobParams, attested_run};

use super::durable_files::{FileToWrite, JobFiles};

/// Arguments of `quorate run`.
#[derive(clap::Args)]
#[command(
    after_help = "Writes DIR/outputs.json (each output's name, dtype, shape, data, digest and salt),\n\
DIR/inputs.json (the inputs with their salts, to reveal them to an auditor) and DIR/receipt.cose.\n\
Commitments are salted by default so the receipt alone does not let anyone test guesses of\n\
the input (§3.3).\n\n\
Example:\n  quorate run --model models/mlp.onnx --input models/samples/features.npy \\\n      --key keys/node1.key --out out/\n  quorate verify out/receipt.cose --trust keys/node1.key.pub --tensor probabilities=out/outputs.json\n\n\
Many inputs at once (--inputs DIR: every .npy, .npz and .json file in DIR is one job): the\n\
results are signed under one batch root (§5), and each receipt in DIR/receipts/ still\n\
verifies alone:\n  quorate run --model models/mlp.onnx --inputs patients/ --key keys/node1.key --out out/\n  quorate verify out/receipts/ --trust keys/node1.key.pub"
)]
pub struct RunArgs {
    /// The ONNX model file.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Input tensors: a .npy file (one input) or a JSON tensor list (§3.5).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "inputs",
        conflicts_with = "inputs"
    )]
    pub input: Option<PathBuf>,
    /// A folder of input files (.npy, .npz or JSON, §3.5), one job each, in name order:
    /// all results are signed under one batch root (§5).
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
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
    if let Some(dir) = &args.inputs {
        return super::run_batch::run(args, dir, &model, &key);
    }
    let input = args
        .input
        .as_ref()
        .context("give --input FILE or --inputs DIR")?;
    let tensors = load_inputs(&model, input, args)?;
    let mut job = JobParams::fresh_local(!args.no_salt)?;
    if let Some(n) = &args.nonce {
        job.nonce = parse_nonce(n)?;
    }
    let (attested, receipt) = attested_run(&model, tensors, &job, &key, unix_now())?;
    result_files(
        &args.out,
        "",
        (&attested.inputs, &attested.outputs),
        &receipt,
    )?
    .write()?;
    print_run(&model, &attested, &key, &job);
    println!(
        "wrote     {}/outputs.json, inputs.json, receipt.cose",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The client nonce of `--nonce`: hex, 16 to 64 bytes (§4.2).
pub fn parse_nonce(hex_text: &str) -> anyhow::Result<Vec<u8>> {
    let nonce = hex::decode(hex_text).context("--nonce must be hex")?;
    if !quorate_protocol::receipt::NONCE_LEN.contains(&nonce.len()) {
        bail!("--nonce must be 16 to 64 bytes, found {}", nonce.len());
    }
    Ok(nonce)
}

/// Reads one input file and checks it against the model's inputs.
pub fn load_inputs(
    model: &LoadedModel,
    path: &std::path::Path,
    args: &RunArgs,
) -> anyhow::Result<Vec<quorate_protocol::tensor::Tensor>> {
    let bytes = read_limited(path, MAX_FILE_LEN as u64)?;
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
        .with_context(|| format!("input {}", path.display()))?;
    model
        .check_inputs(tensors.into_iter().map(|r| r.tensor).collect())
        .with_context(|| {
            format!(
                "input {} does not fit model {}",
                path.display(),
                args.model.display()
            )
        })
}

/// The files of a local run's results: `out/outputs.json`, `out/inputs.json` (private: it
/// reveals the inputs and their salts) and `out/receipt.cose`; for a job of a batch,
/// `job_name` names it and its files go to `out/outputs/`, `out/inputs/` and `out/receipts/`.
pub fn result_files(
    out: &std::path::Path,
    job_name: &str,
    (committed_inputs, committed_outputs): (&[Committed], &[Committed]),
    receipt: &[u8],
) -> anyhow::Result<JobFiles> {
    let doc = |list: &[Committed]| tensors_json(list.iter().map(|c| (&c.tensor, c.salt.as_ref())));
    job_files(
        out,
        job_name,
        (&doc(committed_inputs), &doc(committed_outputs)),
        receipt,
        None,
    )
}

/// Writes one job's files under `out`, each made durable (see [`job_files`]).
pub fn write_job_files(
    out: &std::path::Path,
    job_name: &str,
    tensors: (&serde_json::Value, &serde_json::Value),
    receipt: &[u8],
    promise: Option<&[u8]>,
) -> anyhow::Result<()> {
    job_files(out, job_name, tensors, receipt, promise)?.write()
}

/// One job's files under `out`: its outputs and inputs as tensor lists (the inputs private,
/// mode 0600: they reveal the inputs and their salts), the promise to log its receipt if there
/// is one (§18.6), and its receipt, written last, so that a receipt on disk means the job's
/// files are all there. An unnamed job (`job_name` empty) has `outputs.json`, `inputs.json`,
/// `receipt.promise` and `receipt.cose`; a named one `outputs/NAME.json`, `inputs/NAME.json`,
/// `promises/NAME.promise` and `receipts/NAME.cose`.
pub fn job_files(
    out: &std::path::Path,
    job_name: &str,
    (inputs, outputs): (&serde_json::Value, &serde_json::Value),
    receipt: &[u8],
    promise: Option<&[u8]>,
) -> anyhow::Result<JobFiles> {
    let path = |single: &str, folder: &str, ext: &str| {
        if job_name.is_empty() {
            out.join(single)
        } else {
            out.join(folder).join(format!("{job_name}.{ext}"))
        }
    };
    let file = |path, bytes, mode| FileToWrite { path, bytes, mode };
    let mut first = vec![
        file(
            path("outputs.json", "outputs", "json"),
            serde_json::to_vec_pretty(outputs)?,
            0o644,
        ),
        file(
            path("inputs.json", "inputs", "json"),
            serde_json::to_vec_pretty(inputs)?,
            0o600,
        ),
    ];
    if let Some(promise) = promise {
        first.push(file(
            path("receipt.promise", "promises", "promise"),
            promise.to_vec(),
            0o644,
        ));
    }
    Ok(JobFiles {
        first,
        last: file(
            path("receipt.cose", "receipts", "cose"),
            receipt.to_vec(),
            0o644,
        ),
    })
}

fn print_run(
    model: &LoadedModel,
    attested: &quorate_runtime::attest::Attested,
    key: &quorate_crypto::SecretKey,
    job: &JobParams,
) {
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
}
