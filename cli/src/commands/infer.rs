//! `quorate infer`: one attested inference on the mesh (§11).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use quorate_protocol::tensor_file::salted_tensors_json;

use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::roster::Entry;

use super::infer_verified::{self, ReplicaArgs};
use super::run::write_job_files;
use super::session::{MeshArgs, Session, print_output, read_input, resolve_model};

/// Arguments of `quorate infer`.
#[derive(clap::Args)]
#[command(
    after_help = "The client picks a fresh job id and nonce and salts its input commitments. Before\n\
anything is written it checks the receipt: signed by the node's key pinned from the roster,\n\
same job id, nonce and model, and commitments matching exactly the tensors sent and received.\n\n\
With --replicas R the same job runs on R distinct nodes and is accepted only when a quorum\n\
agrees under --policy; a replica that fails is replaced; a disagreeing one is named and an\n\
evidence bundle written to OUT/evidence/ (check it with `quorate verify`).\n\n\
Many inputs at once (--inputs DIR: every .npy, .npz and .json file in DIR is one job): the\n\
jobs go to one node, --concurrency at a time over one connection; every reply is checked\n\
as above before its files are written, a job that fails is named and the others go on, and\n\
the command exits with 1 if any failed. Each receipt verifies alone.\n\n\
Example:\n  quorate infer --roster roster.cose --admin admin.pub --key client.key \\\n      --model mlp --input models/samples/features.json --out out/\n  \
quorate infer ... --replicas 3 --policy tolerance:atol=1e-5,rtol=1e-4 --out out/\n  \
quorate infer ... --model mlp --inputs patients/ --out out/\n  \
quorate verify out/receipts/ --roster roster.cose --admin admin.pub"
)]
pub struct InferArgs {
    /// Roster, roster authority and this client's key.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Model: hex SHA-256 digest, an .onnx file, or a name in --models (e.g. `mlp`).
    #[arg(long, value_name = "NAME|DIGEST|FILE")]
    pub model: String,
    /// Folder to look model names up in.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Input tensors: a .npy file (the model's only input) or a JSON tensor list.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "inputs",
        conflicts_with = "inputs"
    )]
    pub input: Option<PathBuf>,
    /// A folder of input files (.npy, .npz or JSON), one job each, sent --concurrency at a
    /// time to one node; each job's receipt is checked and its files written as it comes.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["replicas", "wait_for_log"])]
    pub inputs: Option<PathBuf>,
    /// With --inputs: jobs in flight at once (at most 256). A node answers `Busy` beyond its
    /// `max_concurrent` (8 by default), and the job is sent again after a pause.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "inputs",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Name of the input a .npy file feeds.
    #[arg(long, value_name = "NAME", default_value = "features")]
    pub input_name: String,
    /// Send the job to this node (default: the least loaded node serving the model).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Directory for outputs.json, inputs.json and receipt.cose (with --inputs:
    /// receipts/NAME.cose, outputs/NAME.json and inputs/NAME.json for each input file NAME).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds the node may take to answer; network time on top follows the measured
    /// round-trip time (spec §7.6.1).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// When the node answers with a promise to log the receipt (§18.6), wait for its
    /// deadline (a few seconds) and store the receipt carrying its inclusion receipt.
    #[arg(long)]
    pub wait_for_log: bool,
    /// Verified-job options (§14).
    #[command(flatten)]
    pub verified: ReplicaArgs,
}

/// The node a job goes to: the one named, or the least loaded of the reachable nodes that
/// serve `model` (those that did not answer are told on standard error).
pub(super) async fn pick_node(
    client: &MeshClient,
    name: Option<&str>,
    model: &[u8; 32],
) -> anyhow::Result<Entry> {
    if let Some(name) = name {
        return Ok(client
            .roster
            .by_name(name)
            .with_context(|| format!("no node {name:?} in the roster"))?
            .clone());
    }
    let (nodes, failed) = client.candidates(model).await;
    for f in &failed {
        eprintln!("skipping {f}");
    }
    nodes.into_iter().next().with_context(|| {
        format!(
            "no reachable node serves model sha256:{}",
            hex::encode(model)
        )
    })
}

/// Runs `quorate infer`.
pub fn run(args: &InferArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.mesh)?;
    let model = resolve_model(&args.model, &args.models)?;
    if let Some(dir) = &args.inputs {
        return super::infer_many::run(args, dir, &session, model);
    }
    let input = args
        .input
        .as_ref()
        .context("give --input FILE or --inputs DIR")?;
    let inputs = read_input(input, &args.input_name)?;
    let req = fresh_request(model, inputs, None)?;
    let timeout = Duration::from_secs(args.timeout);
    if let Some(replicas) = args.verified.replicas {
        return infer_verified::run(&args.verified, replicas, timeout, &args.out, &session, req);
    }
    let (node_name, response, payload) = session.rt.block_on(async {
        let client = session.client(timeout)?;
        let node = &pick_node(&client, args.node.as_deref(), &model).await?;
        let (mut response, payload) = client.infer(node, &req).await?;
        // §18.6: with --wait-for-log a promise is upgraded before anything is written, so
        // the stored receipt carries its inclusion receipt.
        if args.wait_for_log
            && let Some(promise) = response.promise.take()
        {
            let deadline = quorate_protocol::tlog::Promise::parse(&promise)
                .map(|p| p.body.deadline)
                .unwrap_or_default();
            eprintln!(
                "log       {} promised to log the receipt by {}; waiting to upgrade the promise",
                node.name,
                quorate_protocol::time::utc(deadline)
            );
            response.receipt = client
                .upgrade_promise(node, &response.receipt, &promise)
                .await?;
        }
        client.close();
        anyhow::Ok((node.name.clone(), response, payload))
    })?;

    write_job_files(
        &args.out,
        "",
        (
            &salted_tensors_json(&req.inputs, req.input_salts.as_deref()),
            &salted_tensors_json(&response.outputs, response.output_salts.as_deref()),
        ),
        &response.receipt,
        response.promise.as_deref(),
    )?;
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
    if response.promise.is_some() {
        let out = args.out.display();
        println!(
            "log       {node_name} promised to log the receipt (receipt.promise); after its deadline (seconds), upgrade it with\n          \
             quorate log prove --roster ... --node {node_name} --receipt {out}/receipt.cose --promise {out}/receipt.promise --out {out}/receipt.cose"
        );
    }
    Ok(ExitCode::SUCCESS)
}
