//! `quorate bench poisoning` (§14.8): the poisoning harness. Starts a local mesh of real node
//! processes (honest ones with different `intra_threads`, and one node per misbehaviour), runs
//! verified jobs over QUIC with one misbehaving replica among honest ones, and prints per
//! misbehaviour the detection rate of perturbations above the policy's tolerance; then runs
//! honest-only jobs and counts false positives.
//!
//! Intermediate activations are poisoned the way a pipeline meets them (§13.4): mlp.onnx is
//! split at h1,h2, every node serves the stages, and an "activation noise" node perturbs only
//! the activation h2 that stage 2 produces. Each such job first runs stage 1 as a verified job
//! on honest nodes, then stage 2 on its activation with the poisoning node among the replicas.
//!
//! Ground truth is computed independently of the detector: from the perturbation's formula
//! applied to the honest reference output (noise of magnitude e on every element exceeds the
//! tolerance iff some element has e > atol + rtol·max(|x|, |x±e|)).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;
use serde_json::json;

use crate::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::client::fresh_request;
use quorate_node::mesh::verified::{self, Outcome};

/// Arguments of `quorate bench poisoning`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Example (the full table):\n  quorate bench poisoning --trials 100 --honest-runs 1000\n\
A small run:\n  quorate bench poisoning --noise 1e-6,1e-2 --trials 3 --honest-runs 20 --json"
)]
pub struct BenchPoisoningArgs {
    /// Verified jobs per misbehaviour row.
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Honest-only verified jobs (false-positive count).
    #[arg(long, default_value_t = 1000)]
    pub honest_runs: usize,
    /// Noise magnitudes, one row (and one node) each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-7,1e-6,1e-5,3e-5,1e-4,1e-3,1e-2,1e-1"
    )]
    pub noise: Vec<f64>,
    /// Noise magnitudes on the intermediate activation h2 (stage 2 of mlp.onnx split at
    /// h1,h2), one row (and one node) each.
    #[arg(long, value_delimiter = ',', default_value = "1e-6,1e-3,1e-1")]
    pub activation_noise: Vec<f64>,
    /// Comparison policy.
    #[arg(long, default_value = "default")]
    pub policy: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
}

/// Honest nodes, each with its own thread setting.
const HONEST_THREADS: [usize; 4] = [1, 2, 3, 4];
const OTHER_MODES: [&str; 5] = ["sign_flip", "stale", "replay", "sign_other", "garbage"];

struct Row {
    mode: String,
    trials: usize,
    above: usize,
    caught_above: usize,
    below: usize,
    flagged_below: usize,
    honest_accused: usize,
    wrong_accepted: usize,
}

fn random_input(base: &Tensor) -> anyhow::Result<Tensor> {
    let noise = quorate_crypto::random::bytes::<64>()?;
    let v: Vec<f32> = base
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, x)| (*x * (0.5 + f64::from(noise[i % 64]) / 255.0)) as f32)
        .collect();
    Ok(Tensor::from_f32(base.name(), base.shape().to_vec(), &v)?)
}

/// Whether noise of magnitude `e` on every element of `out` exceeds the tolerance.
fn noise_exceeds(policy: &Policy, out: &[Tensor], e: f64) -> bool {
    out.iter().any(|t| match policy.tolerance_for(t.dtype()) {
        None => true,
        Some((atol, rtol)) => t
            .to_f64_vec()
            .iter()
            .any(|x| e > atol + rtol * (x.abs() + e)),
    })
}

/// Whether negating `out` takes some element outside the tolerance: |x - (-x)| = 2|x|.
fn negated_differs(policy: &Policy, out: &[Tensor]) -> bool {
    out.iter().any(|t| {
        let (atol, rtol) = policy.tolerance_for(t.dtype()).unwrap_or((0.0, 0.0));
        t.to_f64_vec()
            .iter()
            .any(|x| 2.0 * x.abs() > atol + rtol * x.abs())
    })
}

/// Runs the harness.
pub fn run(args: &BenchPoisoningArgs) -> anyhow::Result<std::process::ExitCode> {
    let policy = Policy::parse(&args.policy)?;
    // (row label, misbehaviour, whether it poisons the stage-2 activation only)
    let modes: Vec<(String, String, bool)> = args
        .noise
        .iter()
        .map(|e| (format!("noise:{e:e}"), format!("noise:{e:e}"), false))
        .chain(
            OTHER_MODES
                .iter()
                .map(|s| (s.to_string(), s.to_string(), false)),
        )
        .chain(
            args.activation_noise
                .iter()
                .map(|e| (format!("act. noise:{e:e}"), format!("noise:{e:e}"), true)),
        )
        .collect();
    let n_honest = HONEST_THREADS.len();
    let n = n_honest + modes.len();
    anyhow::ensure!(
        n <= 32,
        "at most {} noise magnitudes in all",
        32 - n_honest - OTHER_MODES.len()
    );
    let dir = tempfile::tempdir()?;
    let stages = crate::commands::pipeline::write_split(
        &args.models.join("mlp.onnx"),
        "h1,h2",
        &dir.path().join("stages"),
    )?;
    let stage_digests = stages
        .iter()
        .map(|p| Ok(sha256(&std::fs::read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    eprintln!(
        "starting {n} node processes ({n_honest} honest, {} misbehaving)…",
        modes.len()
    );
    // The misbehaving nodes' test-only keys make the local mesh run them as the test-only
    // `quorate-adversary` binary found beside this one; the honest nodes run `quorate node`.
    let config = |i: usize| {
        if i < n_honest {
            format!("intra_threads = {}\n", HONEST_THREADS[i])
        } else {
            let (_, mode, activation) = &modes[i - n_honest];
            let only = if *activation {
                "test_misbehave_model = \"stage-2.onnx\"\n"
            } else {
                ""
            };
            format!("test_misbehave = \"{mode}\"\n{only}")
        }
    };
    let mesh = LocalMesh::start_with_models(dir.path(), n, &args.models, &exe, &config, &|_| {
        stages.clone()
    })?;
    let (base, model) = mlp_sample(&args.models)?;
    let nodes = mesh.node_entries()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )?;
    let run_on = |model, candidates: Vec<Entry>, input: Tensor| -> anyhow::Result<Outcome> {
        let req = fresh_request(model, vec![input], Some(&policy))?;
        Ok(rt.block_on(verified::run(
            &client,
            req,
            policy,
            3,
            2,
            candidates,
            &|_| {},
        ))?)
    };
    let run_job = |candidates: Vec<Entry>, input: Tensor| run_on(model, candidates, input);
    // An activation job: stage 1 on honest nodes, then stage 2 on its activation h1.
    let run_activation_job = |candidates: Vec<Entry>, input: Tensor| -> anyhow::Result<Outcome> {
        let honest: Vec<Entry> = candidates
            .iter()
            .filter(|e| nodes[..n_honest].contains(e))
            .cloned()
            .collect();
        let first = run_on(stage_digests[0], honest, input)?;
        let h1 = first
            .accepted()
            .and_then(|a| {
                a.response
                    .outputs
                    .iter()
                    .find(|t| t.name() == "h1")
                    .cloned()
            })
            .context("stage 1 gave no activation h1")?;
        run_on(stage_digests[1], candidates, h1)
    };

    let mut rows = Vec::new();
    let started = Instant::now();
    for (m, (label, mode, activation)) in modes.iter().enumerate() {
        let bad = &nodes[n_honest + m];
        let job = |c: Vec<Entry>, i: Tensor| {
            if *activation {
                run_activation_job(c, i)
            } else {
                run_job(c, i)
            }
        };
        let mut row = Row {
            mode: label.clone(),
            trials: args.trials,
            above: 0,
            caught_above: 0,
            below: 0,
            flagged_below: 0,
            honest_accused: 0,
            wrong_accepted: 0,
        };
        // The first answer of stale and replay nodes is honest by construction: warm them up.
        let mut previous: Option<Vec<Tensor>> = None;
        if mode == "stale" || mode == "replay" {
            let o = run_job(
                vec![nodes[0].clone(), nodes[1].clone(), bad.clone()],
                random_input(&base)?,
            )?;
            previous = o.accepted().map(|a| a.response.outputs.clone());
        }
        for t in 0..args.trials {
            let h = |k: usize| nodes[(t + k) % n_honest].clone();
            let o = job(vec![h(0), h(1), bad.clone(), h(2)], random_input(&base)?)?;
            let bad_i = 2;
            let reference = o
                .accepted()
                .map(|a| a.response.outputs.clone())
                .context("no accepted output")?;
            let above = match mode.as_str() {
                "sign_flip" => negated_differs(&policy, &reference),
                "stale" => previous
                    .as_ref()
                    .is_none_or(|p| !policy.agree_all(p, &reference)),
                "replay" | "sign_other" | "garbage" => true,
                noise => {
                    let e: f64 = noise.trim_start_matches("noise:").parse()?;
                    noise_exceeds(&policy, &reference, e)
                }
            };
            previous = Some(reference.clone());
            let v = &o.verdict;
            let caught =
                v.proven_wrong.contains(&bad_i) || v.failed.iter().any(|(i, _)| *i == bad_i);
            if above {
                row.above += 1;
                row.caught_above += usize::from(caught);
            } else {
                row.below += 1;
                row.flagged_below += usize::from(caught || v.disagreeing.contains(&bad_i));
            }
            row.honest_accused += v
                .proven_wrong
                .iter()
                .chain(&v.disagreeing)
                .filter(|&&i| i != bad_i)
                .count();
            row.wrong_accepted += usize::from(v.agreeing.contains(&bad_i) && above);
        }
        eprintln!("{label}: done");
        rows.push(row);
    }

    // Honest only: every replica honest, thread settings differing across the trio.
    let mut honest_fp = 0usize;
    let mut bit_identical = 0usize;
    for t in 0..args.honest_runs {
        let h = |k: usize| nodes[(t + k) % n_honest].clone();
        let o = run_job(vec![h(0), h(1), h(2)], random_input(&base)?)?;
        let v = &o.verdict;
        honest_fp += usize::from(
            !v.disagreeing.is_empty() || !v.proven_wrong.is_empty() || !v.failed.is_empty(),
        );
        let outs: Vec<_> = o
            .answers
            .iter()
            .flatten()
            .map(|a| &a.response.outputs)
            .collect();
        bit_identical += usize::from(outs.windows(2).all(|w| w[0] == w[1]));
    }
    client.close();
    let elapsed = started.elapsed();

    if args.json {
        let doc = json!({
            "policy": policy.describe(),
            "rows": rows.iter().map(|r| json!({
                "mode": r.mode, "trials": r.trials, "above_tolerance": r.above,
                "detected_above": r.caught_above, "below_tolerance": r.below,
                "flagged_below": r.flagged_below, "honest_accused": r.honest_accused,
                "wrong_accepted": r.wrong_accepted,
            })).collect::<Vec<_>>(),
            "honest_runs": args.honest_runs,
            "honest_false_positives": honest_fp,
            "honest_bit_identical": bit_identical,
            "seconds": elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "poisoning harness: policy {}, R=3, quorum 2, one misbehaving replica among honest ones (threads {HONEST_THREADS:?})",
            policy.describe()
        );
        println!(
            "{:<16} {:>6} {:>12} {:>10} {:>9} {:>12} {:>14} {:>14}",
            "misbehaviour",
            "jobs",
            "above tol",
            "detected",
            "rate",
            "below tol",
            "flagged below",
            "honest accused"
        );
        for r in &rows {
            let rate = if r.above == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * r.caught_above as f64 / r.above as f64)
            };
            println!(
                "{:<16} {:>6} {:>12} {:>10} {:>9} {:>12} {:>14} {:>14}",
                r.mode,
                r.trials,
                r.above,
                r.caught_above,
                rate,
                r.below,
                r.flagged_below,
                r.honest_accused
            );
        }
        println!(
            "honest-only jobs: {} (threads {HONEST_THREADS:?} mixed), false positives {honest_fp}, bit-identical across replicas {bit_identical}",
            args.honest_runs
        );
        println!("total {:.1} s", elapsed.as_secs_f64());
    }
    let perfect = rows
        .iter()
        .all(|r| r.caught_above == r.above && r.honest_accused == 0 && r.wrong_accepted == 0)
        && honest_fp == 0;
    if !perfect {
        bail!("detection below 100% or false positives: see the table");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
