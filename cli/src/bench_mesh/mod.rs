//! `quorate bench mesh` (§12.10): the hot path's figures on the user's own hardware, each a
//! ratio against a baseline measured in the same run, ending in one summary line.

mod audit;
mod batch;
mod cores;
pub mod echo;
mod ensemble;
mod figures;
mod latency;
mod minilm;
mod node_metrics;
mod over_runs;
mod sample;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use quorate_node::mesh::client::MeshClient;

use crate::local::{LocalMesh, mlp_sample};
use figures::Bench;
use latency::Target;

/// Arguments of `quorate bench mesh`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Starts five `quorate node` processes on loopback and measures, each against a \
baseline taken in the same run (medians; a figure and its baseline are sampled in turn):\n\
  latency/parts   one verified job over (local ONNX Runtime run + one QUIC round trip of the \
same sizes to a server in another process, as a job's crosses to the node's + one durable \
append)            goal <= 1.5\n\
  jobs_per_s      verified jobs per second one node serves to --clients clients, the node \
signing each group commit's receipts under one root; beside it the same against node-2, which \
signs every receipt alone                                                      goal >= 10000\n\
  minilm          the same on all-MiniLM-L6-v2 (--minilm) over raw ONNX Runtime runs of the \
node's session settings at the same concurrency                                   goal >= 0.9\n\
  batch/raw       --batch local runs with one batch receipt over as many raw ONNX Runtime \
calls (wall time; the batch's commitments use a second thread, its CPU time is printed beside) \
goal <= 1.25\n\
  audit/cores     `quorate verify` of an audit log of --audit receipts over (cores x one \
core's raw verify_strict rate; quorate's own strict check, with the same verdicts, is printed \
beside)              goal >= 0.9\n\
  ensemble/plain  a prepared SecAgg ensemble of five, timed from its input (its first two \
rounds ran before, and their time is printed beside), over five concurrent plain verified jobs; \
a job started with its input, all five rounds timed, is printed beside             goal <= 3\n\n\
The MiniLM line is skipped, saying so, when the model file is missing \
(./scripts/fetch-models.sh fetches it). The last line sums up the figures of the mesh model:\n  latency/parts=R1 jobs_per_s=N1 batch/raw=R2 audit/cores=R3 ensemble/plain=R4\n\n\
On a shared machine a run's figures move with what else runs: --runs N measures them N times on \
the one mesh and ends with each figure's median, lowest and highest, and how many runs met its \
goal; the last line then gives the medians.\n\n\
A quick look:\n  quorate bench mesh --rounds 30 --seconds 1 --batch 100 --audit 5000 --ensembles 3"
)]
pub struct BenchMeshArgs {
    /// Samples of the verified job and of each of its parts.
    #[arg(long, default_value_t = 300)]
    pub rounds: usize,
    /// Concurrent clients of the throughput run, each with its own connection.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of the throughput run (and of the raw ONNX Runtime run beside it, and of the
    /// run against the node signing alone).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Local runs in the batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Receipts in the audit log.
    #[arg(long, default_value_t = 100_000)]
    pub audit: usize,
    /// Ensemble jobs timed of each kind, prepared and not (and as many rounds of five plain
    /// jobs).
    #[arg(long, default_value_t = 20)]
    pub ensembles: usize,
    /// The transformer of the MiniLM throughput figure (skipped if the file is missing).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../third_party/models/all-MiniLM-L6-v2-int8.onnx"))]
    pub minilm: PathBuf,
    /// ONNX Runtime intra-op threads of the MiniLM session, on the node and in the baseline
    /// (a node's `intra_threads`, one unless configured).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub minilm_threads: usize,
    /// Tokens per MiniLM input.
    #[arg(long, default_value_t = 128)]
    pub minilm_seq: u64,
    /// Also write every figure to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Measure every figure this many times on the one mesh, then print each figure's median,
    /// lowest and highest, and how many runs met its goal; the last line then gives the
    /// medians (§12.10.2).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub runs: usize,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
}

/// The roster entry of the mesh's first node, which every figure's jobs go to.
fn node_1(mesh: &LocalMesh) -> anyhow::Result<quorate_protocol::roster::Entry> {
    mesh.roster
        .by_name("node-1")
        .context("the mesh has no node-1")
        .cloned()
}

fn us(ns: f64) -> String {
    format!("{:.1} µs", ns / 1e3)
}

fn ms(ns: f64) -> String {
    format!("{:.2} ms", ns / 1e6)
}

/// Runs the bench.
pub fn run(args: &BenchMeshArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rounds >= 5, "--rounds must be at least 5");
    anyhow::ensure!(
        (1..=1024).contains(&args.clients),
        "--clients must be 1 to 1024"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 3600.0,
        "--seconds must be above 0 and at most an hour"
    );
    anyhow::ensure!(
        (1..=1 << 20).contains(&args.batch),
        "--batch must be 1 to 1048576 (§5.1)"
    );
    anyhow::ensure!(
        (1..=10_000_000).contains(&args.audit),
        "--audit must be 1 to 10,000,000"
    );
    anyhow::ensure!(args.ensembles >= 1, "--ensembles must be at least 1");
    anyhow::ensure!((1..=100).contains(&args.runs), "--runs must be 1 to 100");
    anyhow::ensure!(
        (1..=512).contains(&args.minilm_seq),
        "--minilm-seq must be 1 to 512 (the model's positions)"
    );
    anyhow::ensure!(
        (1..=256).contains(&args.minilm_threads),
        "--minilm-threads must be 1 to 256"
    );
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    let (input, digest) = mlp_sample(&args.models)?;
    let mlp = std::fs::read(args.models.join("mlp.onnx"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    eprintln!("starting 5 node processes…");
    // A job slot per client: the throughput figure is what the node does at that
    // concurrency, not how often it turns clients away (§12.3).
    let slots = format!("max_concurrent = {}\n", args.clients.max(4));
    // node-1, the latency run's node, tells its own time through its metrics (§12.7).
    let metrics = crate::local::loopback_port()?;
    let config = |i: usize| match i {
        0 => format!("{slots}metrics_listen = \"{metrics}\"\n"),
        // node-2 signs every receipt alone: the baseline of group signing (§12.4.2).
        1 => format!("{slots}sign_in_groups = false\n"),
        _ => slots.clone(),
    };
    let mesh = LocalMesh::start_custom(
        dir.path(),
        5,
        &args.models,
        &exe,
        &crate::local::Custom {
            extra_config: &config,
            ..crate::local::Custom::default()
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client = {
        let _entered = rt.enter();
        MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(30),
        )?
    };
    let node = node_1(&mesh)?;
    let target = Target {
        mesh: &mesh,
        node: &node,
        model: (&mlp, digest),
        inputs: std::slice::from_ref(&input),
    };
    // §6.2.1: the signature checks in every figure run on this arithmetic.
    let arithmetic = quorate_crypto::ed25519_arithmetic();
    println!("machine: {cores} cores; Ed25519 arithmetic: {arithmetic}");
    let bench = Bench {
        rt: &rt,
        client: &client,
        target,
        mlp: &mlp,
        input: &input,
        exe: &exe,
        metrics,
        cores,
    };
    let mut runs = Vec::with_capacity(args.runs);
    for k in 1..=args.runs {
        if args.runs > 1 {
            eprintln!("run {k} of {}…", args.runs);
            println!("run {k} of {}", args.runs);
        }
        // Each run's scratch files (the minilm mesh, the audit log) in a folder of its own.
        let run_dir = dir.path().join(format!("run-{k}"));
        std::fs::create_dir_all(&run_dir)?;
        let figures = bench.measure(args, &run_dir)?;
        println!("{}", figures.summary());
        runs.push(figures);
    }
    let head = serde_json::json!({"cores": cores, "ed25519_arithmetic": arithmetic});
    let (doc, summary) = match runs.as_slice() {
        [one] => (merged(head, one.to_json(args)), None),
        _ => {
            let spreads = over_runs::spreads(&runs);
            print!("{}", over_runs::report(&spreads));
            let summary = over_runs::median_summary(&spreads);
            let each: Vec<serde_json::Value> = runs.iter().map(|f| f.to_json(args)).collect();
            let rest = serde_json::json!({
                "runs": each,
                "over_runs": over_runs::to_json(&spreads),
                "summary": summary,
            });
            (merged(head, rest), Some(summary))
        }
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(summary) = summary {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `head`'s fields followed by `rest`'s (both JSON objects).
fn merged(head: serde_json::Value, rest: serde_json::Value) -> serde_json::Value {
    let mut all = serde_json::Map::new();
    for part in [head, rest] {
        if let serde_json::Value::Object(fields) = part {
            all.extend(fields);
        }
    }
    serde_json::Value::Object(all)
}
