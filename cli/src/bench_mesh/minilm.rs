//! Goal 2's second half: verified jobs per second on a real transformer (all-MiniLM-L6-v2)
//! against ONNX Runtime's own throughput on the session settings the node serves it with,
//! at the same concurrency.
//!
//! The node is a `quorate node` process of its own serving the model with `--minilm-threads`
//! ONNX Runtime intra-op threads (`intra_threads`; a node's default is one), on XNNPACK then
//! CPU as every bench node. The baseline loads the same file with the same providers and
//! threads in this process and calls `Session::run` on the inputs lent in place, as the
//! node's runs lend them (no commitments, receipts, QUIC or audit log), from as many threads
//! as there are clients and from one: the faster counts. Both sides take one lock per run,
//! as ONNX Runtime's API in this crate requires (`run` borrows the session mutably).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_protocol::tensor::Tensor;
use quorate_runtime::providers::Provider;
use quorate_runtime::{LoadedModel, to_ort};

use super::BenchMeshArgs;
use super::latency::{self, Target};
use crate::commands::calibrate::{generated_input, xorshift};
use crate::local::{Custom, LocalMesh};

/// The providers of the node and of the baseline, in preference order (§12.2).
const PROVIDERS: [&str; 2] = ["xnnpack", "cpu"];

/// Token ids are drawn below this (the model's WordPiece vocabulary).
const VOCAB: u64 = 30_522;

/// What the MiniLM run measured.
pub struct Minilm {
    /// Tokens per input.
    pub seq: u64,
    /// ONNX Runtime intra-op threads, on the node and in the baseline.
    pub threads: usize,
    /// The execution provider the baseline's session runs on (the node's chain, §12.2).
    pub provider: String,
    /// Jobs per second of the first and the last mesh segment.
    pub mesh_segments: [f64; 2],
    /// Runs per second of the two raw segments between them: from as many threads as
    /// clients, and from one.
    pub raw_segments: [f64; 2],
    /// Verified jobs per second.
    pub jobs_per_s: f64,
    /// Jobs that failed.
    pub failed: u64,
    /// Why the first of them failed.
    pub first_error: Option<String>,
    /// Raw `Session::run` calls per second: the faster raw segment.
    pub raw_per_s: f64,
}

impl Minilm {
    /// Verified jobs over raw runs.
    pub fn ratio(&self) -> f64 {
        self.jobs_per_s / self.raw_per_s
    }
}

/// Starts a one-node mesh under `dir` serving `--minilm`, and samples the verified jobs of
/// `--clients` clients and the raw runs in turn (mesh, raw, raw, mesh: a drift of the
/// machine's speed weighs on both alike), `--seconds` in all for each.
pub fn minilm(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    exe: &Path,
    args: &BenchMeshArgs,
) -> anyhow::Result<Minilm> {
    let (model_file, clients, seq) = (args.minilm.as_path(), args.clients, args.minilm_seq);
    let bytes = std::fs::read(model_file)
        .with_context(|| format!("cannot read {}", model_file.display()))?;
    let threads = args.minilm_threads;
    let providers = PROVIDERS
        .iter()
        .map(|p| Provider::parse(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (local, _) = LoadedModel::with_providers(&bytes, threads, &providers)
        .with_context(|| format!("ONNX Runtime refused {}", model_file.display()))?;
    let mut next = xorshift(0x6d69_6e69_6c6d);
    let inputs = local
        .inputs
        .iter()
        .map(|spec| generated_input(spec, seq, VOCAB, &mut next))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = format!(
        "max_concurrent = {}\nintra_threads = {threads}\n",
        clients.max(4)
    );
    let mesh_dir = dir.join("minilm");
    std::fs::create_dir_all(&mesh_dir)?;
    let mesh = LocalMesh::start_custom(
        &mesh_dir,
        1,
        &args.models,
        exe,
        &Custom {
            extra_config: &|_| config.clone(),
            extra_models: &|_| vec![model_file.to_path_buf()],
            providers: &|_| PROVIDERS.iter().map(|p| p.to_string()).collect(),
            ..Custom::default()
        },
    )?;
    let node = super::node_1(&mesh)?;
    let target = Target {
        mesh: &mesh,
        node: &node,
        model: (&bytes, local.digest),
        inputs: &inputs,
    };
    // The first runs of a session allocate its arenas: not part of the steady state.
    raw_throughput(&local, &inputs, 1, 0.0)?;
    let half = args.seconds / 2.0;
    let first = latency::throughput(rt, &target, clients, half)?;
    // ONNX Runtime at the same concurrency, and from one caller in case the lock the callers
    // share costs it something: the baseline is the faster of the two.
    let raw_shared = raw_throughput(&local, &inputs, clients, half)?;
    let raw_alone = raw_throughput(&local, &inputs, 1, half)?;
    let last = latency::throughput(rt, &target, clients, half)?;
    Ok(Minilm {
        seq,
        threads,
        provider: local.provider.clone(),
        mesh_segments: [first.jobs_per_s(), last.jobs_per_s()],
        raw_segments: [raw_shared, raw_alone],
        jobs_per_s: (first.jobs_per_s() + last.jobs_per_s()) / 2.0,
        failed: first.failed + last.failed,
        first_error: first.first_error.or(last.first_error),
        raw_per_s: raw_shared.max(raw_alone),
    })
}

/// `Session::run` calls per second from `clients` threads sharing `model`'s session, each
/// lending it the inputs in place as the node's runs do ([`to_ort`]).
fn raw_throughput(
    model: &LoadedModel,
    inputs: &[Tensor],
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let run = || -> anyhow::Result<()> {
        let values = inputs
            .iter()
            .map(|t| Ok((t.name(), to_ort(t)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        model.lock()?.session().run(values)?;
        Ok(())
    };
    let runs = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<String>);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                // At least one run each, so that a warm-up of zero seconds still runs.
                let mut first = true;
                while std::mem::take(&mut first) || Instant::now() < deadline {
                    match run() {
                        Ok(()) => {
                            runs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(format!("{e:#}"));
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
        bail!("ONNX Runtime failed a raw run: {e}");
    }
    Ok(runs.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
