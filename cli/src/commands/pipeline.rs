//! `quorate pipeline`: a split model run stage by stage across mesh nodes (§13.2–§13.5).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, salted_tensors_json, tensors_json};
use serde_json::json;

use super::session::{MeshArgs, Session};
use quorate_node::files::{read_limited, write_atomic};
use quorate_node::mesh::pipeline::{CrossCheck, PipelineRun, Plan};
use quorate_split::{MAX_MODEL_LEN, SplitOptions, parse_cuts, split_model};

/// Arguments of `quorate pipeline`.
#[derive(clap::Args)]
#[command(
    after_help = "Stages (spec §13): either --stages DIR, a directory written by `quorate split` (its\n\
stages.json names each stage model's SHA-256 and where each stage input comes from), or\n\
--model M --at CUTS, which splits the model here exactly as `quorate split` would (the split is\n\
deterministic, so the stage digests are those of the stage files the nodes serve).\n\n\
Each stage runs on nodes that serve its stage model; all stages share one job id; each\n\
activation goes to the next stage with the salt its node committed it under, so stage k+1's\n\
input commitment equals stage k's output commitment, and each stage receipt names the digest\n\
of the previous stage's receipt. Cross-verification: --replicas R runs every stage on R\n\
distinct nodes; --audit P re-runs each stage on a second node with probability P. Answers that\n\
differ on the same input digest are localised to their stage; a further node breaks the tie\n\
and the node outvoted is named, with an evidence bundle (DIR/evidence/stage-N.bundle) that\n\
`quorate verify` re-checks offline.\n\n\
Writes DIR/outputs.json, inputs.json, activations/stage-N.json, receipts/stage-N-NODE.cose,\n\
chain.qchain (check it offline with `quorate verify DIR/chain.qchain --roster … --admin …`)\n\
and pipeline.json (summary, with any node caught).\n\n\
Example:\n  quorate split models/mlp.onnx --at h1,h2 --out stages/\n  quorate pipeline --roster roster.cose --admin admin.pub --key client.key \\\n      --stages stages/ --replicas 2 --input models/samples/features.npy --out run/"
)]
pub struct PipelineArgs {
    /// Roster, roster authority and this client's key.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// A directory written by `quorate split` (stages.json and stage-N.onnx).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "at"], required_unless_present = "model")]
    pub stages: Option<PathBuf>,
    /// The whole model to split here: an .onnx file or a name in --models (e.g. `mlp`).
    #[arg(long, value_name = "NAME|FILE", requires = "at")]
    pub model: Option<String>,
    /// Where to cut --model, as in `quorate split --at` (e.g. `h1,h2`).
    #[arg(long, value_name = "T1,T2,...", requires = "model")]
    pub at: Option<String>,
    /// Folder to look model names up in.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Run every stage on this many distinct nodes and compare their outputs under --policy.
    #[arg(long, value_name = "R", default_value_t = 1, conflicts_with = "audit")]
    pub replicas: usize,
    /// Re-run each stage on a second node with probability P (0 to 1) and compare.
    #[arg(long, value_name = "P")]
    pub audit: Option<f64>,
    /// How replicas' stage outputs are compared: exact, default, or tolerance:atol=A,rtol=B
    /// (§14.2); its digest is bound into every stage receipt.
    #[arg(long, value_name = "POLICY", default_value = "exact")]
    pub policy: String,
    /// Input tensors: a .npy file (the model's only input) or a JSON tensor list.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Name of the input a .npy file feeds.
    #[arg(long, value_name = "NAME", default_value = "features")]
    pub input_name: String,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds each node may take to answer; network time on top follows the measured
    /// round-trip time (spec §7.6.1).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Splits `model` at `cuts` in memory and returns the plan (what `quorate split` would write).
pub fn plan_from_model(model: &Path, cuts: &str) -> anyhow::Result<Plan> {
    let bytes = read_limited(model, MAX_MODEL_LEN)?;
    let split = split_model(&bytes, &parse_cuts(cuts)?, &SplitOptions::default())
        .with_context(|| format!("cannot split {}", model.display()))?;
    Ok(Plan::from_split(&split))
}

fn load_plan(args: &PipelineArgs) -> anyhow::Result<Plan> {
    if let Some(dir) = &args.stages {
        let text = read_limited(&dir.join("stages.json"), 16 << 20)
            .with_context(|| format!("{} is not a `quorate split` directory", dir.display()))?;
        return Plan::from_stages_json(&text);
    }
    let (Some(model), Some(at)) = (&args.model, &args.at) else {
        bail!("give --stages DIR, or --model and --at");
    };
    let path = if Path::new(model).is_file() {
        PathBuf::from(model)
    } else {
        args.models.join(format!("{model}.onnx"))
    };
    plan_from_model(&path, at)
}

/// Runs `quorate pipeline`.
pub fn run(args: &PipelineArgs) -> anyhow::Result<ExitCode> {
    let check = match args.audit {
        Some(p) if (0.0..=1.0).contains(&p) => CrossCheck::Audit(p),
        Some(p) => bail!("--audit takes a probability from 0 to 1, not {p}"),
        None if args.replicas >= 1 => CrossCheck::Replicas(args.replicas),
        None => bail!("--replicas must be at least 1"),
    };
    let policy = quorate_protocol::policy::Policy::parse(&args.policy)?;
    let session = Session::open(&args.mesh)?;
    let plan = load_plan(args)?;
    // §10.6: refused here, before any connection, when the roster does not allow it.
    quorate_node::mesh::pipeline::check_governance(
        &session.roster.governance,
        &plan,
        check,
        &policy,
    )?;
    let input = read_limited(&args.input, MAX_FILE_LEN as u64)?;
    let inputs: Vec<_> = tensor_file::parse_any(&input, &args.input_name)
        .with_context(|| format!("input {}", args.input.display()))?
        .into_iter()
        .map(|r| r.tensor)
        .collect();
    let run = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let r = quorate_node::mesh::pipeline::run(&client, &plan, &inputs, check, policy, &|l| {
            eprintln!("{l}")
        })
        .await;
        client.close();
        r
    })?;
    write_run(&args.out, &run)?;
    for (t, _) in run.outputs() {
        super::session::print_output(&t);
    }
    for d in &run.dissents {
        println!(
            "caught    stage {}: node {} returned an activation that differs from {} on the same input digest",
            d.stage,
            d.answer.node,
            d.majority.join(", ")
        );
    }
    println!(
        "chain     {} stages, job {}, every receipt verified and linked; wrote {}",
        run.stages.len(),
        hex::encode(run.job_id),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a finished run under `dir` (see the command's help for the layout).
pub fn write_run(dir: &Path, run: &PipelineRun) -> anyhow::Result<()> {
    for sub in ["receipts", "activations"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let outputs = run.outputs();
    let doc = tensors_json(outputs.iter().map(|(t, s)| (t, s.as_ref())));
    write_atomic(
        &dir.join("outputs.json"),
        &serde_json::to_vec_pretty(&doc)?,
        0o644,
    )?;
    if let Some(first) = run.stages.first() {
        let doc = tensors_json(first.inputs.iter().map(|(t, s)| (t, Some(s))));
        write_atomic(
            &dir.join("inputs.json"),
            &serde_json::to_vec_pretty(&doc)?,
            0o600,
        )?;
    }
    let mut stages = Vec::new();
    for s in &run.stages {
        let mut receipts = Vec::new();
        for a in &s.agreeing {
            let file = format!("stage-{}-{}.cose", s.index, a.node);
            write_atomic(
                &dir.join("receipts").join(&file),
                &a.response.receipt,
                0o644,
            )?;
            receipts.push(json!({"node": a.node, "file": format!("receipts/{file}")}));
        }
        if let Some(a) = s.agreeing.first() {
            let doc = salted_tensors_json(&a.response.outputs, a.response.output_salts.as_deref());
            write_atomic(
                &dir.join("activations")
                    .join(format!("stage-{}.json", s.index)),
                &serde_json::to_vec_pretty(&doc)?,
                0o600,
            )?;
        }
        stages.push(json!({
            "index": s.index,
            "receipts": receipts,
            "audited": s.audited,
            "failed": s.failed,
        }));
    }
    let mut caught = Vec::new();
    for d in &run.dissents {
        let bundle_file = format!("stage-{}.bundle", d.stage);
        std::fs::create_dir_all(dir.join("evidence"))?;
        write_atomic(
            &dir.join("evidence").join(&bundle_file),
            &d.bundle.encode()?,
            0o600,
        )?;
        let file = format!("stage-{}-{}.dissent.cose", d.stage, d.answer.node);
        std::fs::create_dir_all(dir.join("caught"))?;
        write_atomic(
            &dir.join("caught").join(&file),
            &d.answer.response.receipt,
            0o644,
        )?;
        let doc = salted_tensors_json(
            &d.answer.response.outputs,
            d.answer.response.output_salts.as_deref(),
        );
        write_atomic(
            &dir.join("caught")
                .join(format!("stage-{}-{}.outputs.json", d.stage, d.answer.node)),
            &serde_json::to_vec_pretty(&doc)?,
            0o600,
        )?;
        caught.push(json!({
            "stage": d.stage,
            "node": d.answer.node,
            "majority": d.majority,
            "receipt": format!("caught/{file}"),
            "evidence": format!("evidence/{bundle_file}"),
        }));
    }
    let chain = run.chain.to_cbor()?;
    write_atomic(&dir.join("chain.qchain"), &chain, 0o644)?;
    let summary = json!({
        "format": "quorate-pipeline-run/1",
        "job_id": hex::encode(run.job_id),
        "stages": stages,
        "caught": caught,
        "chain": "chain.qchain",
    });
    write_atomic(
        &dir.join("pipeline.json"),
        &serde_json::to_vec_pretty(&summary)?,
        0o644,
    )?;
    Ok(())
}

/// The pipeline a `stages.json` declares, to check chains against (§13.3).
pub fn declared_pipeline(stages_json: &Path) -> anyhow::Result<quorate_protocol::chain::Pipeline> {
    let text = read_limited(stages_json, 16 << 20)?;
    let plan = Plan::from_stages_json(&text)
        .with_context(|| format!("pipeline {}", stages_json.display()))?;
    Ok(quorate_protocol::chain::Pipeline {
        stages: plan.stages.iter().map(|s| s.digest).collect(),
        source: Some(plan.source),
    })
}

/// Splits `model` at `cuts` into `dir` exactly as `quorate split` does (stage-N.onnx and
/// stages.json) and returns the stage files, e.g. for a local mesh to serve (§13.1).
pub fn write_split(model: &Path, cuts: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use quorate_split::{stage_file, stages_json_text};
    let bytes = read_limited(model, MAX_MODEL_LEN)?;
    let cuts = parse_cuts(cuts)?;
    let split = split_model(&bytes, &cuts, &SplitOptions::default())
        .with_context(|| format!("cannot split {}", model.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for s in &split.stages {
        let path = dir.join(stage_file(s.index));
        write_atomic(&path, &s.bytes, 0o644)?;
        files.push(path);
    }
    let mut text = stages_json_text(model, &cuts, &split)?;
    text.push(b'\n');
    write_atomic(&dir.join("stages.json"), &text, 0o644)?;
    Ok(files)
}
