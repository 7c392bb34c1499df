//! `quorate infer`: one attested inference on the mesh (§11).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN, sha256};
use quorate_protocol::messages::InferRequest;
use quorate_protocol::receipt::JobKind;
use quorate_protocol::roster::Roster;
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, salted_tensors_json};

use quorate_node::clock::unix_now;
use quorate_node::files::{load_public_key, load_secret_key, read_limited, write_atomic};
use quorate_node::mesh::client::MeshClient;

/// Arguments of `quorate infer`.
#[derive(clap::Args)]
#[command(
    after_help = "The client picks a fresh job id and nonce and salts its input commitments. Before\n\
anything is written it checks the receipt: signed by the node's key pinned from the roster,\n\
same job id, nonce and model, and commitments matching exactly the tensors sent and received.\n\n\
With --replicas R the same job runs on R distinct nodes and is accepted only when a quorum\n\
agrees under --policy; a replica that fails is replaced; a disagreeing one is named and an\n\
evidence bundle written to OUT/evidence/ (check it with `quorate verify`).\n\n\
Example:\n  quorate infer --roster roster.cose --admin admin.pub --key client.key \\\n      --model mlp --input models/samples/features.json --out out/\n  \
quorate infer ... --replicas 3 --policy tolerance:atol=1e-5,rtol=1e-4 --out out/"
)]
pub struct InferArgs {
    /// The signed roster.
    #[arg(long, value_name = "FILE")]
    pub roster: PathBuf,
    /// The roster authority's public key.
    #[arg(long, value_name = "PUBKEY")]
    pub admin: PathBuf,
    /// This client's secret key (must be in the roster).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Model: hex SHA-256 digest, an .onnx file, or a name in --models (e.g. `mlp`).
    #[arg(long, value_name = "NAME|DIGEST|FILE")]
    pub model: String,
    /// Folder to look model names up in.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Input tensors: a .npy file (the model's only input) or a JSON tensor list.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Name of the input a .npy file feeds.
    #[arg(long, value_name = "NAME", default_value = "features")]
    pub input_name: String,
    /// Send the job to this node (default: the least loaded node serving the model).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Directory for outputs.json, inputs.json and receipt.cose.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds to wait for the node.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Verified job (§14): run on this many distinct nodes and compare their outputs.
    #[arg(long, value_name = "R", conflicts_with = "node")]
    pub replicas: Option<usize>,
    /// Comparison policy of a verified job: exact, default, or tolerance:atol=A,rtol=B.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "default",
        requires = "replicas"
    )]
    pub policy: String,
    /// Agreeing replicas required to accept (default: a strict majority of R).
    #[arg(long, value_name = "Q", requires = "replicas")]
    pub quorum: Option<usize>,
}

/// Resolves `--model` to a digest.
pub fn resolve_model(spec: &str, models: &Path) -> anyhow::Result<Digest32> {
    let hex_part = spec.strip_prefix("sha256:").unwrap_or(spec);
    if hex_part.len() == 64
        && let Ok(d) = hex::decode(hex_part)
    {
        return d.try_into().map_err(|_| anyhow::anyhow!("bad digest"));
    }
    let path = if Path::new(spec).is_file() {
        PathBuf::from(spec)
    } else {
        models.join(format!("{spec}.onnx"))
    };
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "--model {spec:?} is not a SHA-256 digest, an .onnx file, or a model in {}",
            models.display()
        )
    })?;
    Ok(sha256(&bytes))
}

/// Reads a signed roster and checks it against the roster authority's key, as a client does
/// before every job (§10.3).
pub fn load_roster(roster: &Path, admin: &Path) -> anyhow::Result<Roster> {
    let admin = load_public_key(admin)?;
    let bytes = read_limited(roster, quorate_protocol::roster::MAX_ROSTER_LEN as u64)?;
    Roster::verify(&bytes, &admin, unix_now())
        .with_context(|| format!("roster {}", roster.display()))
}

/// Prints one output tensor (its first 8 values) the way every client command does.
pub fn print_output(t: &Tensor) {
    let v: Vec<String> = t
        .to_f64_vec()
        .iter()
        .take(8)
        .map(|x| format!("{x:.6}"))
        .collect();
    println!(
        "output    {} {}{:?} = [{}]",
        t.name(),
        t.dtype(),
        t.shape(),
        v.join(", ")
    );
}

/// Runs `quorate infer`.
pub fn run(args: &InferArgs) -> anyhow::Result<ExitCode> {
    let key = load_secret_key(&args.key)?;
    let roster = load_roster(&args.roster, &args.admin)?;
    let model = resolve_model(&args.model, &args.models)?;
    let input = read_limited(&args.input, MAX_FILE_LEN as u64)?;
    let inputs: Vec<_> = tensor_file::parse_any(&input, &args.input_name)
        .with_context(|| format!("input {}", args.input.display()))?
        .into_iter()
        .map(|r| r.tensor)
        .collect();
    let input_salts = inputs
        .iter()
        .map(|_| quorate_crypto::random::bytes::<SALT_LEN>())
        .collect::<Result<Vec<_>, _>>()?;
    let req = InferRequest {
        job_id: quorate_crypto::random::bytes()?,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        kind: JobKind::Infer,
        model,
        inputs,
        input_salts: Some(input_salts),
        policy: None,
        previous: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(replicas) = args.replicas {
        return super::infer_verified::run(args, replicas, &key, roster, req, &rt);
    }
    let (node_name, response, payload) = rt.block_on(async {
        let client = MeshClient::new(&key, roster, Duration::from_secs(args.timeout))?;
        let nodes = match &args.node {
            Some(name) => vec![
                client
                    .roster
                    .by_name(name)
                    .with_context(|| format!("no node {name:?} in the roster"))?
                    .clone(),
            ],
            None => {
                let (nodes, failed) = client.candidates(&model).await;
                for f in &failed {
                    eprintln!("skipping {f}");
                }
                if nodes.is_empty() {
                    bail!(
                        "no reachable node serves model sha256:{}",
                        hex::encode(model)
                    );
                }
                nodes
            }
        };
        let node = &nodes[0];
        let (response, payload) = client.infer(node, &req).await?;
        client.close();
        Ok((node.name.clone(), response, payload))
    })?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let outputs = salted_tensors_json(&response.outputs, response.output_salts.as_deref());
    let inputs = salted_tensors_json(&req.inputs, req.input_salts.as_deref());
    write_atomic(
        &args.out.join("outputs.json"),
        serde_json::to_vec_pretty(&outputs)?.as_slice(),
        0o644,
    )?;
    write_atomic(
        &args.out.join("inputs.json"),
        serde_json::to_vec_pretty(&inputs)?.as_slice(),
        0o600,
    )?;
    write_atomic(&args.out.join("receipt.cose"), &response.receipt, 0o644)?;
    println!(
        "node      {node_name} ({} on {})",
        payload.runtime, payload.provider
    );
    for t in &response.outputs {
        print_output(t);
    }
    println!(
        "receipt   verified: signed by {node_name}'s pinned key, job {} , commitments match",
        hex::encode(payload.job_id)
    );
    println!(
        "wrote     {}/outputs.json, inputs.json, receipt.cose",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
