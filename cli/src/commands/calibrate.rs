//! `quorate calibrate` (§14.10): runs honest inferences of one model across execution
//! providers, precisions and intra-op thread counts, measures how far honest outputs drift
//! apart, and proposes comparison policies (§14.2) with a stated margin over the largest
//! drift observed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_protocol::policy::{Policy, argmax, cosine};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN};
use quorate_runtime::providers::{Precision, Provider};
use quorate_runtime::{IoSpec, LoadedModel};
use serde_json::{Value, json};

/// Arguments of `quorate calibrate`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  quorate calibrate --model third_party/models/all-MiniLM-L6-v2-int8.onnx \\\n      \
--providers cpu,openvino:CPU:f32,openvino:CPU:bf16 --samples 20 --out policy.json --table\n\n\
Every sample runs on every configuration: each provider of --providers, and the cpu provider\n\
once per --threads value. Drift is measured per output between every two configurations\n\
(max abs, max rel, min cosine along the last axis, argmax agreement) and grouped by pair of\n\
precision classes (cpu and openvino f32 are class f32). Proposed policies are the observed\n\
bound widened by --margin (tolerance atol = margin x max abs; cosine 1 - min = margin x\n\
(1 - min observed); argmax only when it never disagreed). Without --input, samples are\n\
generated from the model's declared inputs: float inputs uniform in [-1, 1]; int64 inputs\n\
random ids below --vocab (an input named *mask* all ones, *type* all zeros); a symbolic first\n\
dimension is 1, other symbolic dimensions a sequence length drawn in --seq-min..=--seq-max."
)]
pub struct CalibrateArgs {
    /// The ONNX model.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Providers to compare, comma-separated (e.g. cpu,openvino:CPU:f32,openvino:CPU:bf16).
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub providers: Vec<String>,
    /// Intra-op thread counts to run the cpu provider with.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub threads: Vec<usize>,
    /// Generated samples (ignored with --input).
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// Sample input files (.npy, .npz or JSON tensor list) instead of generated samples.
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Name of the input a .npy sample feeds.
    #[arg(long, default_value = "input_ids")]
    pub input_name: String,
    /// Token ids of generated int64 inputs are drawn below this.
    #[arg(long, default_value_t = 1000)]
    pub vocab: u64,
    /// Shortest generated sequence.
    #[arg(long, default_value_t = 8)]
    pub seq_min: u64,
    /// Longest generated sequence.
    #[arg(long, default_value_t = 256)]
    pub seq_max: u64,
    /// Seed of the generated samples.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Proposed bounds are this many times the largest drift observed.
    #[arg(long, default_value_t = 4.0)]
    pub margin: f64,
    /// Where to write the proposal (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also print the drift table as Markdown (model × provider × precision × drift).
    #[arg(long)]
    pub table: bool,
    /// The model's name in the table (default: its file name).
    #[arg(long)]
    pub name: Option<String>,
}

/// One way of running the model.
struct Config {
    label: String,
    provider: Provider,
    threads: usize,
    class: Precision,
    model: LoadedModel,
}

/// Drift between two runs of one output, accumulated over samples.
#[derive(Clone, Debug, Default)]
pub struct Drift {
    /// Compared elements.
    pub elements: u64,
    /// Largest |x − y|.
    pub max_abs: f64,
    /// Largest |x − y| / max(|x|, |y|) over elements not both zero.
    pub max_rel: f64,
    /// Smallest cosine similarity of vectors along the last axis.
    pub min_cosine: f64,
    /// Vectors along the last axis compared.
    pub rows: u64,
    /// Of those, how many had the same argmax.
    pub argmax_same: u64,
    /// Whether every sample was bit-identical.
    pub bit_identical: bool,
    /// Non-floating outputs: whether every sample was equal.
    pub exact_only: bool,
}

impl Drift {
    fn new() -> Self {
        Drift {
            min_cosine: 1.0,
            bit_identical: true,
            ..Drift::default()
        }
    }

    /// Adds one sample's pair of outputs.
    pub fn add(&mut self, a: &Tensor, b: &Tensor) -> anyhow::Result<()> {
        if a.shape() != b.shape() || a.dtype() != b.dtype() {
            bail!(
                "output {:?}: shapes or types differ between runs ({:?} {} vs {:?} {})",
                a.name(),
                a.shape(),
                a.dtype(),
                b.shape(),
                b.dtype()
            );
        }
        self.bit_identical &= a.data() == b.data();
        if !matches!(a.dtype(), DType::F32 | DType::F64) {
            self.exact_only = true;
            return Ok(());
        }
        let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
        for (p, q) in x.iter().zip(&y) {
            let d = (p - q).abs();
            if d.is_nan() {
                self.max_abs = f64::INFINITY;
                continue;
            }
            self.max_abs = self.max_abs.max(d);
            let m = p.abs().max(q.abs());
            if m > 0.0 {
                self.max_rel = self.max_rel.max(d / m);
            }
        }
        self.elements += x.len() as u64;
        let width = a.shape().last().map_or(1, |&d| d as usize).max(1);
        for (rx, ry) in x.chunks(width).zip(y.chunks(width)) {
            self.rows += 1;
            self.min_cosine = self.min_cosine.min(cosine(rx, ry));
            if argmax(rx) == argmax(ry) {
                self.argmax_same += 1;
            }
        }
        Ok(())
    }

    fn merge(&mut self, o: &Drift) {
        self.elements += o.elements;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.max_rel = self.max_rel.max(o.max_rel);
        self.min_cosine = self.min_cosine.min(o.min_cosine);
        self.rows += o.rows;
        self.argmax_same += o.argmax_same;
        self.bit_identical &= o.bit_identical;
        self.exact_only |= o.exact_only;
    }

    fn json(&self) -> Value {
        json!({
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "min_cosine": self.min_cosine,
            "argmax_agreement": if self.rows == 0 { 1.0 } else { self.argmax_same as f64 / self.rows as f64 },
            "rows": self.rows,
            "elements": self.elements,
            "bit_identical": self.bit_identical,
        })
    }
}

/// `x` rounded up to two significant digits (so the proposed bound is never below `x`).
pub fn round_up(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x.max(0.0);
    }
    let e = x.log10().floor() as i32 - 1;
    let scale = 10f64.powi(e);
    let up = (x / scale).ceil() * scale;
    // Printing with two significant digits and parsing back gives the shortest decimal.
    let text = format!("{up:.1e}");
    text.parse::<f64>()
        .map_or(up, |v| if v >= x { v } else { up })
}

/// The policies proposed for one output from its drift (§14.10).
pub fn propose(d: &Drift, margin: f64) -> Value {
    if d.exact_only || d.bit_identical {
        return json!({ "tolerance": "exact", "cosine": Value::Null, "argmax": Value::Null });
    }
    let atol = round_up(d.max_abs * margin).min(1e6);
    let tolerance = Policy::Tolerance { atol, rtol: 0.0 };
    let gap = round_up((1.0 - d.min_cosine).max(0.0) * margin);
    let cosine = (gap < 1.0).then(|| {
        let min = ((1.0 - gap) * 1e12).floor() / 1e12;
        Policy::Cosine { min: min.max(0.0) }.describe()
    });
    let argmax = (d.argmax_same == d.rows).then(|| Policy::Argmax.describe());
    json!({ "tolerance": tolerance.describe(), "cosine": cosine, "argmax": argmax })
}

fn class_pair(a: Precision, b: Precision) -> String {
    let (a, b) = if a.name() <= b.name() { (a, b) } else { (b, a) };
    format!("{a}~{b}")
}

/// Sample inputs generated from the declared inputs (see the command's help).
fn generated_samples(
    model: &LoadedModel,
    args: &CalibrateArgs,
) -> anyhow::Result<Vec<Vec<Tensor>>> {
    anyhow::ensure!(
        args.seq_min >= 1 && args.seq_min <= args.seq_max && args.seq_max <= 1 << 14,
        "need 1 <= --seq-min <= --seq-max <= 16384"
    );
    anyhow::ensure!(args.vocab >= 1, "--vocab must be at least 1");
    let mut next = xorshift(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let seq = args.seq_min + next() % (args.seq_max - args.seq_min + 1);
        let mut sample = Vec::new();
        for spec in &model.inputs {
            sample.push(generated_input(spec, seq, args.vocab, &mut next)?);
        }
        out.push(sample);
    }
    Ok(out)
}

/// A xorshift64 generator for generated sample inputs (not cryptographic: test data only).
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

pub(crate) fn generated_input(
    spec: &IoSpec,
    seq: u64,
    vocab: u64,
    next: &mut impl FnMut() -> u64,
) -> anyhow::Result<Tensor> {
    let shape: Vec<u64> = spec
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| d.unwrap_or(if i == 0 { 1 } else { seq }))
        .collect();
    let n: u64 = shape.iter().product();
    anyhow::ensure!(n <= 1 << 24, "input {spec} would have {n} elements");
    let name = spec.name.to_ascii_lowercase();
    let dtype = spec
        .dtype
        .with_context(|| format!("input {spec} has a type calibrate cannot generate"))?;
    let data: Vec<u8> = match dtype {
        DType::F32 => (0..n)
            .flat_map(|_| ((next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).to_le_bytes())
            .collect(),
        DType::F64 => (0..n)
            .flat_map(|_| ((next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0).to_le_bytes())
            .collect(),
        DType::I64 | DType::I32 => {
            let vals: Vec<i64> = (0..n)
                .map(|_| {
                    if name.contains("mask") {
                        1
                    } else if name.contains("type") {
                        0
                    } else {
                        (next() % vocab) as i64
                    }
                })
                .collect();
            if dtype == DType::I64 {
                vals.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                vals.iter()
                    .flat_map(|v| (*v as i32).to_le_bytes())
                    .collect()
            }
        }
        DType::Bool | DType::U8 => (0..n).map(|_| (next() & 1) as u8).collect(),
        other => bail!("input {spec}: calibrate cannot generate {other}"),
    };
    Ok(Tensor::new(&spec.name, dtype, shape, data)?)
}

fn file_samples(model: &LoadedModel, args: &CalibrateArgs) -> anyhow::Result<Vec<Vec<Tensor>>> {
    let mut out = Vec::new();
    for path in &args.inputs {
        let bytes = read_bounded(path)?;
        let tensors = tensor_file::parse_any(&bytes, &args.input_name)
            .with_context(|| format!("input file {}", path.display()))?
            .into_iter()
            .map(|r| r.tensor)
            .collect();
        out.push(
            model
                .check_inputs(tensors)
                .with_context(|| format!("input file {}", path.display()))?,
        );
    }
    Ok(out)
}

/// Reads a file of at most [`MAX_FILE_LEN`] bytes.
pub fn read_bounded(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_FILE_LEN as u64,
        "{} is {len} bytes; at most {MAX_FILE_LEN}",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs `quorate calibrate`.
pub fn run(args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.margin.is_finite() && args.margin >= 1.0,
        "--margin must be at least 1"
    );
    anyhow::ensure!(
        !args.inputs.is_empty() || args.samples >= 1,
        "--samples must be at least 1"
    );
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read model {}", args.model.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
    });
    let mut configs: Vec<Config> = Vec::new();
    let mut passed_over = Vec::new();
    for p in &args.providers {
        let provider = Provider::parse(p).map_err(anyhow::Error::msg)?;
        let (threads, class): (Vec<usize>, Precision) = match provider.precision() {
            None => (args.threads.clone(), Precision::F32),
            Some(prec) => (vec![1], prec),
        };
        for t in threads {
            anyhow::ensure!((1..=256).contains(&t), "thread counts must be in 1..=256");
            let label = if provider == Provider::Cpu {
                format!("cpu/{t}")
            } else {
                provider.label()
            };
            match LoadedModel::on_provider(&bytes, t, &provider) {
                Ok(model) => configs.push(Config {
                    label,
                    provider: provider.clone(),
                    threads: t,
                    class,
                    model,
                }),
                Err(e) => {
                    eprintln!("provider passed over: {label}: {e}");
                    passed_over.push(json!({ "provider": label, "reason": e.to_string() }));
                }
            }
        }
    }
    anyhow::ensure!(
        !configs.is_empty(),
        "no provider could load {}",
        args.model.display()
    );
    let samples = if args.inputs.is_empty() {
        generated_samples(&configs[0].model, args)?
    } else {
        file_samples(&configs[0].model, args)?
    };
    let outputs: Vec<String> = configs[0]
        .model
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect();
    // drift[(i, j)][output]
    let mut drift: BTreeMap<(usize, usize), Vec<Drift>> = BTreeMap::new();
    for (s, sample) in samples.iter().enumerate() {
        let mut results = Vec::with_capacity(configs.len());
        for c in &configs {
            let feed = c.model.check_inputs(sample.clone())?;
            results.push(
                c.model
                    .run(&feed)
                    .with_context(|| format!("sample {s} on {}", c.label))?,
            );
        }
        for i in 0..configs.len() {
            for j in i + 1..configs.len() {
                let entry = drift
                    .entry((i, j))
                    .or_insert_with(|| vec![Drift::new(); outputs.len()]);
                for (k, d) in entry.iter_mut().enumerate() {
                    d.add(&results[i][k], &results[j][k])?;
                }
            }
        }
    }
    // Per pair of precision classes, per output: the worst drift over configuration pairs.
    let mut by_class: BTreeMap<String, Vec<Drift>> = BTreeMap::new();
    for (&(i, j), per_output) in &drift {
        let entry = by_class
            .entry(class_pair(configs[i].class, configs[j].class))
            .or_insert_with(|| vec![Drift::new(); outputs.len()]);
        for (acc, d) in entry.iter_mut().zip(per_output) {
            acc.merge(d);
        }
    }
    let mut policies = serde_json::Map::new();
    let mut worst = vec![Drift::new(); outputs.len()];
    for (pair, per_output) in &by_class {
        let mut m = serde_json::Map::new();
        for (k, d) in per_output.iter().enumerate() {
            worst[k].merge(d);
            let mut p = propose(d, args.margin);
            if let Some(obj) = p.as_object_mut() {
                obj.insert("observed".into(), d.json());
            }
            m.insert(outputs[k].clone(), p);
        }
        policies.insert(pair.clone(), Value::Object(m));
    }
    // One policy applies to every output of a job (§14.2): the loosest element-wise bound
    // over the outputs, for a mesh mixing every configuration measured here.
    let mixed = worst.iter().fold(Drift::new(), |mut acc, d| {
        acc.merge(d);
        acc
    });
    let mesh_policy = propose(&mixed, args.margin)["tolerance"].clone();
    let outputs_ref = &outputs;
    let pairs: Vec<Value> = drift
        .iter()
        .flat_map(|(&(i, j), per_output)| {
            let (a, b) = (&configs[i], &configs[j]);
            per_output.iter().enumerate().map(move |(k, d)| {
                let mut v = d.json();
                if let Some(o) = v.as_object_mut() {
                    o.insert("a".into(), json!(a.label));
                    o.insert("b".into(), json!(b.label));
                    o.insert("output".into(), json!(outputs_ref[k]));
                }
                v
            })
        })
        .collect();
    let doc = json!({
        "format": "quorate-calibration-1",
        "model": name,
        "model_digest": hex::encode(configs[0].model.digest),
        "samples": samples.len(),
        "margin": args.margin,
        "configurations": configs.iter().map(|c| json!({
            "label": c.label,
            "provider": c.provider.label(),
            "threads": c.threads,
            "precision_class": c.class.name(),
            "receipt_provider": c.model.provider,
            "runtime": c.model.runtime,
        })).collect::<Vec<_>>(),
        "passed_over": passed_over,
        "policies": policies,
        "mesh_policy": mesh_policy,
        "pairs": pairs,
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}: {} samples on {} configurations; proposal written to {}",
        name,
        samples.len(),
        configs.len(),
        args.out.display()
    );
    println!(
        "policy for a mesh mixing all of them: {}",
        mesh_policy.as_str().unwrap_or("?")
    );
    if args.table {
        print!("{}", table(&name, &configs, &drift, &outputs));
    }
    Ok(ExitCode::SUCCESS)
}

/// The Markdown drift table: each configuration against the first (the reference).
fn table(
    name: &str,
    configs: &[Config],
    drift: &BTreeMap<(usize, usize), Vec<Drift>>,
    outputs: &[String],
) -> String {
    let mut s = format!(
        "\nDrift against {} (honest runs, {} vs each configuration):\n\n\
| model | provider | precision | threads | output | max abs | max rel | min cosine | argmax agreement |\n\
|---|---|---|---|---|---|---|---|---|\n",
        configs[0].label, configs[0].model.provider
    );
    for (j, c) in configs.iter().enumerate().skip(1) {
        let Some(per_output) = drift.get(&(0, j)) else {
            continue;
        };
        for (k, d) in per_output.iter().enumerate() {
            let agreement = if d.rows == 0 {
                "—".to_string()
            } else {
                format!("{}/{}", d.argmax_same, d.rows)
            };
            let max_abs = if d.bit_identical {
                "0 (bit-identical)".to_string()
            } else {
                format!("{:.1e}", d.max_abs)
            };
            s += &format!(
                "| {name} | {} | {} | {} | {} | {max_abs} | {:.1e} | {:.9} | {agreement} |\n",
                c.model.provider, c.class, c.threads, outputs[k], d.max_rel, d.min_cosine,
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_up_to_two_digits_never_below() {
        for x in [1.48e-7, 3.7e-8, 0.0132, 1.0, 9.99, 123.4, 1e-30] {
            let r = round_up(x);
            assert!(r >= x, "{x} -> {r}");
            assert!(r <= x * 1.1 + f64::MIN_POSITIVE, "{x} -> {r}");
        }
        assert_eq!(round_up(0.0), 0.0);
    }
}
