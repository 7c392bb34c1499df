//! `quorate bench mesh` (§12.10): the hot path's figures on the user's own hardware, each a
//! ratio against a baseline measured in the same run, ending in one summary line.

mod audit;
mod batch;
mod cores;
pub mod echo;
mod ensemble;
mod latency;
mod minilm;
mod node_metrics;
mod sample;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use quorate_node::mesh::client::MeshClient;

use crate::local::{LocalMesh, mlp_sample};
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

    eprintln!("latency: {} rounds…", args.rounds);
    let lat = latency::latency(
        &rt,
        &client,
        &target,
        args.rounds,
        dir.path(),
        &exe,
        metrics,
    )?;
    println!(
        "latency     verified job {} / (local ORT {} + QUIC round trip to another process {} \
         ({} B out, {} B back; {} within this process) + durable append {}) = {:.2}   goal <= 1.5",
        us(lat.job),
        us(lat.ort),
        us(lat.round_trip),
        lat.sizes.0,
        lat.sizes.1,
        us(lat.round_trip_in_process),
        us(lat.append),
        lat.ratio()
    );
    if let Some((node, commit)) = lat.inside_node {
        println!(
            "            inside the node (means from its metrics): {} from decoded request to answer, of which a group commit {}; outside it {}: the client's request and checks, QUIC, and waking threads on both sides",
            us(node),
            us(commit),
            us(lat.job - node)
        );
    }

    eprintln!(
        "throughput: {} clients for {} s…",
        args.clients, args.seconds
    );
    // The same run against node-2, which signs every receipt alone (§12.4.2), in
    // alternating halves: the baseline of group signing.
    let node_alone = mesh
        .roster
        .by_name("node-2")
        .context("the mesh has no node-2")?
        .clone();
    let target_alone = Target {
        node: &node_alone,
        ..target
    };
    let half = args.seconds / 2.0;
    let tp = latency::throughput(&rt, &target, args.clients, half)?;
    let alone = latency::throughput(&rt, &target_alone, args.clients, half)?;
    let tp = tp.merge(latency::throughput(&rt, &target, args.clients, half)?);
    let alone = alone.merge(latency::throughput(&rt, &target_alone, args.clients, half)?);
    let (jobs_per_s, failed) = (tp.jobs_per_s(), tp.failed);
    let per_signature = tp.receipts_per_signature();
    let raw_per_s = latency::raw_throughput(&mlp, &input, args.seconds)?;
    let cpu = tp.cpu_per_job.map_or(String::new(), |(node, clients)| {
        format!(
            "; CPU per job: node {}, clients {}",
            us(node * 1e9),
            us(clients * 1e9)
        )
    });
    println!(
        "throughput  {jobs_per_s:.0} verified jobs/s from {} clients ({failed} failed){cpu}; \
         {:.0}% of replies in batch receipts, {per_signature:.2} receipts per signature; \
         local ORT on {cores} cores {raw_per_s:.0} runs/s; ratio {:.2}   goal >= 10000 jobs/s",
        args.clients,
        100.0 * tp.batched_share(),
        jobs_per_s / raw_per_s
    );
    if let Some(e) = &tp.first_error {
        println!("            first failure: {e}");
    }
    let alone_cpu = alone.cpu_per_job.map_or(String::new(), |(node, _)| {
        format!(", node CPU per job {}", us(node * 1e9))
    });
    println!(
        "            signing each receipt alone (node-2, same run): {:.0} jobs/s{alone_cpu}; \
         group signing {:.2}x",
        alone.jobs_per_s(),
        jobs_per_s / alone.jobs_per_s().max(f64::MIN_POSITIVE)
    );
    if let Some(e) = &alone.first_error {
        println!("            first failure: {e}");
    }

    let mini = if args.minilm.is_file() {
        eprintln!(
            "minilm: {} clients for {} s, {} tokens per input…",
            args.clients, args.seconds, args.minilm_seq
        );
        let m = minilm::minilm(&rt, dir.path(), &exe, args)?;
        println!(
            "minilm      {:.1} verified jobs/s from {} clients ({} failed) / raw ORT {:.1} runs/s \
             (from {} threads {:.1}, from one {:.1}; {} tokens, {}, {} intra-op thread{}) = {:.2}   goal >= 0.9",
            m.jobs_per_s,
            args.clients,
            m.failed,
            m.raw_per_s,
            args.clients,
            m.raw_segments[0],
            m.raw_segments[1],
            m.seq,
            m.provider,
            m.threads,
            if m.threads == 1 { "" } else { "s" },
            m.ratio()
        );
        if let Some(e) = &m.first_error {
            println!("            first failure: {e}");
        }
        Some(m)
    } else {
        println!(
            "minilm      skipped: {} is missing (./scripts/fetch-models.sh fetches it)",
            args.minilm.display()
        );
        None
    };

    eprintln!("batch: {} runs…", args.batch);
    // 40 samples of each side: a 1,000-run batch takes a few milliseconds, and a run of
    // this machine's noise can move a median of fewer by several percent.
    let b = batch::batch(&mlp, &input, args.batch, 40)?;
    // The attested batch makes its commitments on a second thread: its CPU time beside its
    // wall time says what the figure costs the machine.
    let cpu = b.attested_cpu.map_or(String::new(), |c| {
        format!(" (CPU {}, {} a run)", ms(c), us(c / b.n as f64))
    });
    println!(
        "batch       {} attested runs, one batch receipt {}{cpu} / {} raw ORT calls {} = {:.2}   goal <= 1.25",
        b.n,
        ms(b.attested),
        b.n,
        ms(b.raw),
        b.ratio()
    );
    // §12.10.1: every hand-over between the batch's threads pays this.
    match b.round_trip {
        Some(rt) => println!(
            "            a cache line's round trip between two cores before each batch: {:.0} ns median ({:.0}-{:.0} ns)",
            rt.median, rt.min, rt.max
        ),
        None => println!(
            "            a cache line's round trip between two cores: not measured (no second core kept up)"
        ),
    }

    eprintln!(
        "audit: writing and verifying a log of {} receipts…",
        args.audit
    );
    let a = audit::audit(&exe, dir.path(), args.audit, 3)?;
    println!(
        "audit       quorate verify {:.0} receipts/s / ({cores} cores x raw verify_strict {:.0}/s) = {:.2}   goal >= 0.9   (quorate's strict check, same verdicts: {:.0}/s on one core)",
        a.verify_rate,
        a.raw_one_core,
        a.ratio(),
        a.ours_one_core
    );

    eprintln!("ensembles: {} rounds…", args.ensembles);
    let e = ensemble::ensemble(&rt, &client, &mesh, &args.models, &input, args.ensembles)?;
    println!(
        "ensemble    SecAgg ensemble of 5 from its input {} (rounds 0-1 prepared before it came: {}) / 5 concurrent plain verified jobs {} = {:.2}   goal <= 3",
        ms(e.ensemble),
        ms(e.preparation),
        ms(e.plain),
        e.ratio()
    );
    println!(
        "            started with its input instead, all five rounds after it: {} = {:.2}x the plain jobs",
        ms(e.unprepared),
        e.unprepared_ratio()
    );
    let by_round: Vec<String> = ensemble::PHASE_NAMES
        .iter()
        .zip(e.phases)
        .map(|(name, ns)| format!("{name} {}", ms(ns)))
        .collect();
    println!(
        "            its rounds: {}; one round of 5 concurrent requests that do nothing (health) {}, five of them {:.2}x the plain jobs",
        by_round.join(", "),
        ms(e.empty_round),
        5.0 * e.empty_round / e.plain
    );

    let summary = format!(
        "latency/parts={:.2} jobs_per_s={jobs_per_s:.0} batch/raw={:.2} audit/cores={:.2} ensemble/plain={:.2}",
        lat.ratio(),
        b.ratio(),
        a.ratio(),
        e.ratio()
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "cores": cores,
            "ed25519_arithmetic": arithmetic,
            "latency": {"job_ns": lat.job, "ort_ns": lat.ort, "round_trip_ns": lat.round_trip,
                        "round_trip_in_process_ns": lat.round_trip_in_process,
                        "append_ns": lat.append, "request_bytes": lat.sizes.0,
                        "node_mean_ns": lat.inside_node.map(|n| n.0),
                        "commit_mean_ns": lat.inside_node.map(|n| n.1),
                        "response_bytes": lat.sizes.1, "ratio": lat.ratio()},
            "throughput": {"clients": args.clients, "jobs_per_s": jobs_per_s, "failed": failed,
                           "node_cpu_s_per_job": tp.cpu_per_job.map(|c| c.0),
                           "clients_cpu_s_per_job": tp.cpu_per_job.map(|c| c.1),
                           "batch_receipts": tp.batched,
                           "receipts_per_signature": per_signature,
                           "signing_alone_jobs_per_s": alone.jobs_per_s(),
                           "signing_alone_node_cpu_s_per_job": alone.cpu_per_job.map(|c| c.0),
                           "raw_ort_runs_per_s": raw_per_s},
            "minilm": mini.as_ref().map(|m| serde_json::json!({
                "clients": args.clients, "tokens": m.seq, "intra_threads": m.threads,
                "provider": m.provider, "mesh_segments": m.mesh_segments,
                "raw_segments": m.raw_segments,
                "jobs_per_s": m.jobs_per_s, "failed": m.failed,
                "raw_ort_runs_per_s": m.raw_per_s, "ratio": m.ratio()})),
            "batch": {"n": b.n, "attested_ns": b.attested, "attested_cpu_ns": b.attested_cpu,
                      "raw_ns": b.raw, "ratio": b.ratio(),
                      "core_round_trip_ns": b.round_trip.map(|rt| serde_json::json!(
                          {"median": rt.median, "min": rt.min, "max": rt.max}))},
            "audit": {"n": a.n, "verify_per_s": a.verify_rate, "raw_one_core_per_s": a.raw_one_core,
                      "quorate_strict_one_core_per_s": a.ours_one_core, "ratio": a.ratio()},
            "ensemble": {"plain_ns": e.plain, "ensemble_ns": e.ensemble, "ratio": e.ratio(),
                         "preparation_ns": e.preparation, "unprepared_ns": e.unprepared,
                         "unprepared_ratio": e.unprepared_ratio(),
                         "phases_ns": ensemble::PHASE_NAMES.iter().zip(e.phases)
                             .map(|(name, ns)| serde_json::json!({"phase": name, "ns": ns}))
                             .collect::<Vec<_>>(),
                         "empty_round_ns": e.empty_round},
            "summary": summary,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
