//! `quorate bench hetero` (§14.10): verified jobs on a mixed mesh of real providers and
//! precisions serving a real transformer, under the policy calibrated for it.
//!
//! The mesh: honest nodes on the CPU provider at f32 with 1, 2 and 4 threads, on the OpenVINO
//! plugin at f32 and at bf16, and one poisoning node per magnitude. Every job is a verified
//! job with R = 3 and quorum 2 (§14.4) on inputs of random tokens and random length.
//! - Honest jobs take one CPU node, the OpenVINO f32 node and the OpenVINO bf16 node: every
//!   one must be accepted and no node accused.
//! - Poisoning rows take the poisoning node and two honest nodes of different providers. A
//!   poisoning node adds ±m·E to every output element, E being the largest honest drift the
//!   calibration measured across the precision classes (`observed.max_abs` of the widest
//!   pair): the rows state m, the multiple of the honest envelope. Detected means convicted.
//! - Activation rows poison an intermediate activation the same way: the model is split at a
//!   layer boundary (`--activation-cut`, §13.1), every node also serves the stages, and the
//!   poisoning node perturbs only what stage 1 computes (the activation at the cut), run as
//!   a verified job of its own as a pipeline stage is (§13.4).
//!
//! The roster's governance grants the policy for this model with witnesses of any provider
//! (§10.6): that is what calibration is for (§14.10).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::governance::{Governance, Grant, Scope, VerificationRule};
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;
use quorate_runtime::LoadedModel;
use serde_json::{Value, json};

use crate::commands::calibrate::{generated_input, xorshift};
use crate::local::{Custom, LocalMesh};
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::client::fresh_request;
use quorate_node::mesh::verified::{self, Outcome};

/// Arguments of `quorate bench hetero`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "The figures of the issue (takes a while on two cores):\n  \
quorate bench hetero --jobs 1000 --trials 100\n\
A short run:\n  quorate bench hetero --jobs 10 --trials 5 --multiples 1,10\n\n\
Needs the OpenVINO plugin and the model: ./scripts/fetch-openvino-ep.sh, ./scripts/fetch-models.sh."
)]
pub struct BenchHeteroArgs {
    /// The model every node serves.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../third_party/models/all-MiniLM-L6-v2-int8.onnx"))]
    pub model: PathBuf,
    /// Its calibration (`quorate calibrate --out`); gives the policy and the honest envelope.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/calibration/minilm.json"))]
    pub calibration: PathBuf,
    /// Which calibrated comparison to use: `cosine` or `tolerance`; or a policy written out
    /// (`cosine:min=0.998`).
    #[arg(long, default_value = "cosine")]
    pub policy: String,
    /// Honest verified jobs.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Verified jobs per poisoning row.
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// Poisoning magnitudes, as multiples of the calibrated honest envelope: one row (and
    /// one node) each.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.25,0.5,1,3,10")]
    pub multiples: Vec<f64>,
    /// Poisoning magnitudes of the intermediate activation, as multiples of the envelope.
    #[arg(long, value_delimiter = ',', default_value = "0.25,1,10")]
    pub activation_multiples: Vec<f64>,
    /// The tensor at which the model is cut for the activation rows (a layer boundary; see
    /// `quorate split --list`).
    #[arg(long, default_value = "layer_norm_6")]
    pub activation_cut: String,
    /// Shortest and longest token sequence of an input.
    #[arg(long, default_value_t = 8)]
    pub seq_min: u64,
    /// Longest token sequence of an input.
    #[arg(long, default_value_t = 256)]
    pub seq_max: u64,
    /// Token ids are drawn below this (the model's vocabulary size).
    #[arg(long, default_value_t = 30522)]
    pub vocab: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The folder holding the bundled models (every local node also serves those).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
}

/// The honest nodes: (label, providers, intra-op threads).
const HONEST: [(&str, &str, usize); 5] = [
    ("cpu f32 1t", "cpu", 1),
    ("cpu f32 2t", "cpu", 2),
    ("cpu f32 4t", "cpu", 4),
    ("openvino f32", "openvino:CPU:f32", 1),
    ("openvino bf16", "openvino:CPU:bf16", 1),
];
const OV_F32: usize = 3;
const OV_BF16: usize = 4;

struct Row {
    /// `output` or the activation's name.
    poisoned: String,
    multiple: f64,
    magnitude: f64,
    trials: usize,
    convicted: usize,
    accepted_with_poisoner: usize,
    honest_accused: usize,
}

/// The policy named by `choice` from the calibration's widest pair, and that pair's
/// largest honest element-wise drift.
fn calibrated(doc: &Value, choice: &str) -> anyhow::Result<(Policy, f64, String)> {
    let policies = doc["policies"]
        .as_object()
        .context("calibration has no policies")?;
    // The pair with the largest drift bounds every pair of the mesh.
    let mut widest: Option<(f64, &Value, String)> = None;
    for (pair, outputs) in policies {
        for (output, p) in outputs.as_object().context("bad calibration")? {
            let drift = p["observed"]["max_abs"].as_f64().unwrap_or(0.0);
            if widest.as_ref().is_none_or(|(d, _, _)| drift > *d) {
                widest = Some((drift, p, format!("{pair} {output}")));
            }
        }
    }
    let (envelope, p, pair) = widest.context("calibration lists no pair")?;
    let policy = match choice {
        "cosine" | "tolerance" => {
            let text = p[choice]
                .as_str()
                .with_context(|| format!("the calibration proposes no {choice} policy"))?;
            Policy::parse(text)?
        }
        other => Policy::parse(other)?,
    };
    anyhow::ensure!(envelope > 0.0, "the calibration measured no drift");
    Ok((policy, envelope, pair))
}

/// The default governance, granting `policy` with witnesses of any provider for `models`.
fn governance(models: &[[u8; 32]], policy: Policy) -> Governance {
    let mut g = Governance::default();
    for m in models {
        g.verification.insert(
            0,
            VerificationRule {
                model: Some(*m),
                grants: vec![Grant {
                    policy,
                    scope: Scope::AnyProvider,
                }],
                min_quorum: 2,
            },
        );
    }
    g
}

/// Runs the harness.
pub fn run(args: &BenchHeteroArgs) -> anyhow::Result<std::process::ExitCode> {
    quorate_runtime::plugin::openvino_plugin().map_err(|e| anyhow::anyhow!(e))?;
    // Without the plugin's CPU device every node would run the CPU provider: the figures would
    // not be those of a mixed mesh.
    quorate_runtime::plugin::openvino_device("CPU").map_err(|why| {
        anyhow::anyhow!(
            "{why}: `quorate bench hetero` measures a mesh that mixes the CPU provider with the OpenVINO plugin, so it cannot run on this machine"
        )
    })?;
    let doc: Value = serde_json::from_slice(
        &std::fs::read(&args.calibration)
            .with_context(|| format!("cannot read {}", args.calibration.display()))?,
    )?;
    let (policy, envelope, pair) = calibrated(&doc, &args.policy)?;
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read the model {}", args.model.display()))?;
    let model = sha256(&bytes);
    if doc["model_digest"].as_str() != Some(hex::encode(model).as_str()) {
        bail!(
            "the calibration was measured on another model than {}",
            args.model.display()
        );
    }
    anyhow::ensure!(
        args.seq_min >= 1 && args.seq_min <= args.seq_max && args.seq_max <= 4096,
        "need 1 <= --seq-min <= --seq-max <= 4096"
    );
    let specs = LoadedModel::from_file(&args.model, 1)?.inputs.clone();
    let n_honest = HONEST.len();
    // (what is poisoned, multiple): one poisoning node each.
    let poisonings: Vec<(bool, f64)> = args
        .multiples
        .iter()
        .map(|&m| (false, m))
        .chain(args.activation_multiples.iter().map(|&m| (true, m)))
        .collect();
    let n = n_honest + poisonings.len();
    anyhow::ensure!(n <= 32, "at most {} rows", 32 - n_honest);

    let dir = tempfile::tempdir()?;
    let stage_files = crate::commands::pipeline::write_split(
        &args.model,
        &args.activation_cut,
        &dir.path().join("stages"),
    )?;
    let stage1 = sha256(&std::fs::read(&stage_files[0])?);
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    let magnitude = |m: f64| m * envelope;
    let file = model_file(&args.model)?;
    let extra_config = |i: usize| match HONEST.get(i) {
        Some((_, _, threads)) => format!("intra_threads = {threads}\n"),
        None => {
            let (activation, m) = poisonings[i - n_honest];
            let target = if activation { "stage-1.onnx" } else { &file };
            format!(
                "test_misbehave = \"noise:{:e}\"\ntest_misbehave_model = \"{target}\"\n",
                magnitude(m),
            )
        }
    };
    let providers = |i: usize| vec![HONEST.get(i).map_or("cpu", |h| h.1).to_string()];
    let extra_models = |_: usize| {
        let mut m = vec![args.model.clone()];
        m.extend(stage_files.iter().cloned());
        m
    };
    eprintln!(
        "starting {n} node processes ({n_honest} honest: {}; {} poisoning)…",
        HONEST.map(|h| h.0).join(", "),
        poisonings.len()
    );
    let mesh = LocalMesh::start_custom(
        dir.path(),
        n,
        &args.models,
        &exe,
        &Custom {
            extra_config: &extra_config,
            extra_models: &extra_models,
            providers: &providers,
            governance: governance(&[model, stage1], policy),
            ..Custom::default()
        },
    )?;
    let nodes = mesh.node_entries()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(120),
    )?;
    let mut next = xorshift(u64::from_le_bytes(quorate_crypto::random::bytes::<8>()?));
    let mut input = || -> anyhow::Result<Vec<Tensor>> {
        let seq = args.seq_min + next() % (args.seq_max - args.seq_min + 1);
        specs
            .iter()
            .map(|s| generated_input(s, seq, args.vocab, &mut next))
            .collect()
    };
    let run_on =
        |model: [u8; 32], candidates: Vec<Entry>, inputs: Vec<Tensor>| -> anyhow::Result<Outcome> {
            let req = fresh_request(model, inputs, Some(&policy))?;
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

    let run_job = |candidates: Vec<Entry>, inputs: Vec<Tensor>| run_on(model, candidates, inputs);
    let cut = args.activation_cut.as_str();

    let started = Instant::now();
    let mut rows = Vec::new();
    for (r, &(activation, multiple)) in poisonings.iter().enumerate() {
        let bad = n_honest + r;
        let mut row = Row {
            poisoned: if activation {
                cut.to_string()
            } else {
                "output".into()
            },
            multiple,
            magnitude: magnitude(multiple),
            trials: args.trials,
            convicted: 0,
            accepted_with_poisoner: 0,
            honest_accused: 0,
        };
        for t in 0..args.trials {
            // Two honest witnesses on different providers: a CPU node and an OpenVINO one.
            let cpu = t % 3;
            let ov = if t % 2 == 0 { OV_F32 } else { OV_BF16 };
            let o = run_on(
                if activation { stage1 } else { model },
                vec![nodes[bad].clone(), nodes[cpu].clone(), nodes[ov].clone()],
                input()?,
            )?;
            let v = &o.verdict;
            row.convicted += usize::from(v.proven_wrong.contains(&0));
            row.accepted_with_poisoner += usize::from(v.agreeing.contains(&0));
            row.honest_accused += v.proven_wrong.iter().filter(|&&i| i != 0).count();
        }
        eprintln!(
            "poisoning {} at {multiple}x the envelope: {}/{} convicted",
            row.poisoned, row.convicted, row.trials
        );
        rows.push(row);
    }

    let (mut accepted, mut disagreed, mut honest_accused, mut bit_identical) = (0, 0, 0, 0);
    for t in 0..args.jobs {
        let o = run_job(
            vec![
                nodes[t % 3].clone(),
                nodes[OV_F32].clone(),
                nodes[OV_BF16].clone(),
            ],
            input()?,
        )?;
        let v = &o.verdict;
        accepted += usize::from(o.accepted().is_some() && v.agreeing.len() == 3);
        disagreed += usize::from(!v.disagreeing.is_empty());
        honest_accused += v.proven_wrong.len();
        let outs: Vec<_> = o
            .answers
            .iter()
            .flatten()
            .map(|a| &a.response.outputs)
            .collect();
        bit_identical += usize::from(outs.windows(2).all(|w| w[0] == w[1]));
        if (t + 1) % 100 == 0 {
            eprintln!("honest jobs: {}/{}", t + 1, args.jobs);
        }
    }
    client.close();
    let seconds = started.elapsed().as_secs_f64();
    // Per poisoned tensor, the smallest multiple convicted in at least 99% of its jobs.
    let smallest = |poisoned: &str| {
        rows.iter()
            .filter(|r| r.poisoned == poisoned && r.trials > 0)
            .filter(|r| r.convicted * 100 >= r.trials * 99)
            .map(|r| r.multiple)
            .fold(None, |a: Option<f64>, m| Some(a.map_or(m, |a| a.min(m))))
    };
    let kinds = ["output", cut];

    if args.json {
        let doc = json!({
            "model": args.model.file_name().map(|f| f.to_string_lossy().to_string()),
            "policy": policy.describe(),
            "envelope": envelope,
            "envelope_pair": pair,
            "honest_nodes": HONEST.map(|h| h.0),
            "honest_jobs": args.jobs,
            "honest_all_agreed": accepted,
            "honest_disagreements": disagreed,
            "honest_accused": honest_accused,
            "honest_bit_identical": bit_identical,
            "rows": rows.iter().map(|r| json!({
                "poisoned": r.poisoned, "multiple": r.multiple, "magnitude": r.magnitude, "trials": r.trials,
                "convicted": r.convicted, "accepted_with_poisoner": r.accepted_with_poisoner,
                "honest_accused": r.honest_accused,
            })).collect::<Vec<_>>(),
            "smallest_multiple_detected_99": kinds
                .iter()
                .map(|k| (k.to_string(), json!(smallest(k))))
                .collect::<serde_json::Map<_, _>>(),
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "mixed mesh ({}), policy {}, R=3, quorum 2; honest envelope E = {envelope:.3e} ({pair})",
            HONEST.map(|h| h.0).join(", "),
            policy.describe()
        );
        println!(
            "| poisoned | multiple of E | magnitude | jobs | convicted | rate | accepted (poisoner in the quorum) | honest accused |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {}× | {:.2e} | {} | {} | {:.1}% | {} | {} |",
                r.poisoned,
                r.multiple,
                r.magnitude,
                r.trials,
                r.convicted,
                100.0 * r.convicted as f64 / r.trials.max(1) as f64,
                r.accepted_with_poisoner,
                r.honest_accused
            );
        }
        println!(
            "honest jobs: {} (sequence {}..={} tokens), all three agreed {accepted}, disagreements {disagreed}, honest nodes accused {honest_accused}, bit-identical {bit_identical}",
            args.jobs, args.seq_min, args.seq_max
        );
        for k in kinds {
            match smallest(k) {
                Some(m) => println!(
                    "poisoning {k}: smallest multiple of E convicted in at least 99% of jobs: {m}×"
                ),
                None => println!("poisoning {k}: no row reached 99% conviction"),
            }
        }
        println!("total {seconds:.1} s");
    }
    let ten = rows.iter().filter(|r| r.multiple >= 10.0);
    let sound = honest_accused == 0
        && disagreed == 0
        && rows.iter().all(|r| r.honest_accused == 0)
        && ten.clone().all(|r| r.convicted == r.trials);
    if !sound {
        bail!(
            "an honest node was accused, honest replicas disagreed, or poisoning at 10× was missed"
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn model_file(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(path
        .file_name()
        .context("model path without a file name")?
        .to_string_lossy()
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_pair_gives_the_envelope_and_the_policy() {
        let doc = json!({"policies": {
            "f32~f32": {"out": {"observed": {"max_abs": 1e-5}, "cosine": "cosine:min=0.9999", "tolerance": "tolerance:atol=4e-5,rtol=0e0"}},
            "bf16~f32": {"out": {"observed": {"max_abs": 0.06}, "cosine": "cosine:min=0.998", "tolerance": "tolerance:atol=2.5e-1,rtol=0e0"}},
        }});
        let (p, e, pair) = calibrated(&doc, "cosine").unwrap();
        assert_eq!(p, Policy::Cosine { min: 0.998 });
        assert_eq!(e, 0.06);
        assert_eq!(pair, "bf16~f32 out");
        let (p, _, _) = calibrated(&doc, "tolerance").unwrap();
        assert_eq!(
            p,
            Policy::Tolerance {
                atol: 0.25,
                rtol: 0.0
            }
        );
        assert!(calibrated(&json!({"policies": {}}), "cosine").is_err());
    }
}
