//! `quorate split`: cut an ONNX model into pipeline stage models at named tensors (§13.1).
//!
//! The graph work lives in [`plan`] (pure, no I/O); this module reads the model with a size
//! bound, writes `stage-N.onnx` and `stages.json`, and prints a summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use quorate_node::files::{read_limited, write_atomic};

use quorate_split::{
    MAX_MODEL_LEN, Role, Source, Split, SplitOptions, cut_points, parse_cuts, split_model,
    stage_file, stages_json_text,
};

/// Arguments of `quorate split`.
#[derive(clap::Args)]
#[command(after_help = "How stages are formed (spec §13.1):\n\
  Stage 1 computes everything the first cut needs; stage k everything the k-th cut needs that\n\
  no earlier stage computes; the last stage computes the rest and ends at the graph outputs.\n\
  A stage's inputs are exactly the tensors it reads that are computed elsewhere: graph inputs\n\
  or outputs of earlier stages. Initializers and Constant nodes are copied into the stages\n\
  that use them. A tensor that a later stage needs but no cut names (a skip connection) is\n\
  carried: it becomes an extra output of the stage computing it and an input of the stages\n\
  reading it, and the summary says so; --no-carry refuses such cuts instead.\n\n\
Writes DIR/stage-1.onnx … stage-N.onnx and DIR/stages.json (each stage's file, SHA-256,\n\
inputs and outputs with dtypes and shapes). Stage models keep the IR version, opset imports\n\
and shape information of the source model.\n\n\
Examples:\n  quorate split models/mlp.onnx --list\n  quorate split models/mlp.onnx --at h1,h2,h3 --out stages/\n  \
quorate run --model stages/stage-1.onnx --input models/samples/features.npy \\\n      --key node.key --out s1/")]
pub struct SplitArgs {
    /// The ONNX model to cut (self-contained, at most 1 GiB).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Where to cut: tensor names in the order the graph computes them, separated by ','.
    /// Join tensors with '+' to cut at several at once (one boundary), e.g. `a+b,h3`.
    #[arg(
        long,
        value_name = "T1,T2,...",
        required_unless_present = "list",
        allow_hyphen_values = true
    )]
    pub at: Option<String>,
    /// Directory for stage-N.onnx and stages.json (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Refuse cuts that some tensor crosses without being named, instead of carrying it.
    #[arg(long)]
    pub no_carry: bool,
    /// Replace stage-*.onnx and stages.json already in DIR.
    #[arg(long)]
    pub force: bool,
    /// Print the tensors the model can be cut at, with their types, and exit.
    #[arg(long, conflicts_with_all = ["at", "out"])]
    pub list: bool,
}

/// Runs `quorate split`.
pub fn run(args: &SplitArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_limited(&args.model, MAX_MODEL_LEN)?;
    let model_name = args.model.display();
    if args.list {
        let points = cut_points(&bytes).with_context(|| format!("model {model_name}"))?;
        println!("tensors of {model_name} that --at can name, in the order they are computed:");
        for (name, info) in points {
            match info {
                Some(i) => println!("  {i}"),
                None => println!(
                    "  {name} (type unknown and not inferable: not a possible cut until declared)"
                ),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(at), Some(out)) = (&args.at, &args.out) else {
        bail!("--at and --out are required (or --list)");
    };
    let cuts = parse_cuts(at)?;
    let split = split_model(
        &bytes,
        &cuts,
        &SplitOptions {
            no_carry: args.no_carry,
        },
    )
    .with_context(|| format!("cannot split {model_name}"))?;

    prepare_dir(out, args.force)?;
    for stage in &split.stages {
        write_atomic(&out.join(stage_file(stage.index)), &stage.bytes, 0o644)?;
    }
    let mut text = stages_json_text(&args.model, &cuts, &split)?;
    text.push(b'\n');
    write_atomic(&out.join("stages.json"), &text, 0o644)?;

    print_summary(&args.model, out, &split);
    Ok(ExitCode::SUCCESS)
}

fn is_split_output(name: &str) -> bool {
    name == "stages.json"
        || name
            .strip_prefix("stage-")
            .and_then(|r| r.strip_suffix(".onnx"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates `dir`, refusing to mix with an earlier split unless `force` (then the earlier
/// stage files are removed, so no stale `stage-N.onnx` survives a split into fewer stages).
fn prepare_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut old = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        if e.file_name().to_str().is_some_and(is_split_output) {
            old.push(e.path());
        }
    }
    if old.is_empty() {
        return Ok(());
    }
    old.sort();
    if !force {
        bail!(
            "{} already holds a split ({}); pass --force to replace it",
            dir.display(),
            old.iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for p in old {
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

fn print_summary(model: &Path, out: &Path, split: &Split) {
    println!(
        "model   {}  sha256:{}",
        model.display(),
        hex::encode(split.source_digest)
    );
    if let Some(n) = split.reencoded_len {
        println!(
            "note    the model re-encodes to {n} bytes: it uses fields newer than ONNX 1.23.2 \
             (dropped from the stages) or a non-canonical encoding; check the stages with \
             ONNX Runtime before use"
        );
    }
    for s in &split.stages {
        println!(
            "stage {}  {}  {} nodes, {} initializers, {} bytes  sha256:{}",
            s.index,
            stage_file(s.index),
            s.nodes,
            s.initializers,
            s.bytes.len(),
            hex::encode(s.digest)
        );
        for (i, src) in &s.inputs {
            let from = match src {
                Source::GraphInput => "graph input".to_string(),
                Source::Stage(k) => format!("from stage {k}"),
            };
            println!("    in   {i}  ({from})");
        }
        for (i, role) in &s.outputs {
            let why = match role {
                Role::Cut => "cut",
                Role::GraphOutput => "graph output",
                Role::Carried => "carried",
            };
            println!("    out  {i}  ({why})");
        }
    }
    for c in &split.carried {
        let to: Vec<String> = c.to.iter().map(ToString::to_string).collect();
        println!(
            "carried {}: computed in stage {}, read by stage {}; no cut names it, so it is \
             passed on as an extra output (name it with '+' to make it part of a cut, or use \
             --no-carry to refuse)",
            c.name,
            c.from,
            to.join(", ")
        );
    }
    println!(
        "wrote   {} stage models and stages.json to {}",
        split.stages.len(),
        out.display()
    );
}
