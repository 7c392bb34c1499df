//! `quorate ensemble`: a private ensemble over the mesh (§15).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::roster::{Entry, Role, Roster};
use serde_json::json;

use super::session::resolve_model;
use super::session::{MeshArgs, Session, read_input};
use quorate_node::files::write_atomic;
use quorate_node::mesh::ensemble_client::{self, EnsembleOutcome, EnsembleSpec};

/// Arguments of `quorate ensemble`.
#[derive(clap::Args)]
#[command(
    after_help = "Each member node runs its own model on the input, encodes its output (fixed-point\n\
probabilities, or a one-hot vote), masks it and takes part in secure aggregation (SecAgg,\n\
§9) driven by this client over QUIC. The client learns the mean probabilities or the vote\n\
counts and nothing per member. Members that crash or time out are dropped; the job\n\
completes from the survivors if at least --threshold remain, or aborts with the reason.\n\
With --dp EPSILON,DELTA every member adds Skellam noise calibrated so the sum of all members\n\
is (ε, δ)-DP; dropouts leave less noise, and the ε actually achieved is reported.\n\n\
Writes DIR/aggregate.cose (signed by this client), DIR/transcript.cbor, DIR/members/*.cose\n\
and DIR/result.json; check them offline with `quorate verify DIR --roster .. --admin ..`.\n\n\
Many inputs at once (--inputs FOLDER: every .npy, .npz and .json file in it is one job):\n\
the jobs run --concurrency at a time, each one's files go to DIR/NAME/ for its input file\n\
NAME as it finishes, a job that fails is named and the others go on, and the command exits\n\
with 1 if any failed.\n\n\
Example:\n  quorate ensemble --roster roster.cose --admin admin.pub --key client.key \\\n      --members node-1,node-2,node-3,node-4,node-5 --input models/samples/features.npy \\\n      --mode mean --threshold 3 --out ens/\n  \
quorate ensemble ... --inputs patients/ --out ens/\n  \
quorate verify ens/* --roster roster.cose --admin admin.pub"
)]
pub struct EnsembleArgs {
    /// Roster, roster authority and this client's key.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Member nodes, comma-separated, each optionally NODE:MODEL (default: the one model the
    /// roster lists for that node and for no other member).
    #[arg(
        long,
        value_name = "NODE[:MODEL],...",
        value_delimiter = ',',
        required = true
    )]
    pub members: Vec<String>,
    /// Folder to look model names up in.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Input tensors (one example): a .npy file or a JSON tensor list.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "inputs",
        conflicts_with = "inputs"
    )]
    pub input: Option<PathBuf>,
    /// A folder of input files (.npy, .npz or JSON), one ensemble job each, --concurrency at
    /// a time; each job's files go to OUT/NAME/ for its input file NAME.
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
    /// With --inputs: ensemble jobs in flight at once (at most 64); each holds a job slot on
    /// every member while it runs.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "inputs",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Name of the input a .npy file feeds.
    #[arg(long, value_name = "NAME", default_value = "features")]
    pub input_name: String,
    /// mean: average the members' probabilities; votes: count their arg-max votes.
    #[arg(long, default_value = "mean", value_parser = ["mean", "votes"])]
    pub mode: String,
    /// Classes in each member's output.
    #[arg(long, default_value_t = 2)]
    pub classes: u32,
    /// Fewest contributors (and the Shamir threshold); default ⌊n/2⌋ + 1.
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Distributed differential privacy: EPSILON,DELTA (e.g. 1.0,1e-5).
    #[arg(long, value_name = "EPSILON,DELTA")]
    pub dp: Option<String>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds each member may take to answer in each round; network time on top follows the
    /// measured round-trip time (spec §7.6.1).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Resolves `NODE[:MODEL]` against the roster.
pub fn resolve_members(
    roster: &Roster,
    specs: &[String],
    models: &Path,
) -> anyhow::Result<(Vec<Entry>, Vec<Digest32>)> {
    let mut entries = Vec::new();
    let mut explicit = Vec::new();
    for s in specs {
        let (name, model) = match s.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (s.as_str(), None),
        };
        let e = roster
            .by_name(name)
            .with_context(|| format!("no member {name:?} in the roster"))?;
        if e.role != Role::Node {
            bail!("{name:?} is not a node");
        }
        if entries.iter().any(|x: &Entry| x.name == e.name) {
            bail!("member {name:?} is listed twice");
        }
        entries.push(e.clone());
        explicit.push(model.map(|m| resolve_model(m, models)).transpose()?);
    }
    // A node may also serve models no ensemble can use (e.g. quantized linear models for
    // encrypted inference); when a member has several models of its own, the ONNX models
    // found in `models` break the tie.
    let onnx_here: Vec<Digest32> = std::fs::read_dir(models)
        .map(|d| {
            d.flatten()
                .map(|f| f.path())
                .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
                .filter_map(|p| std::fs::read(p).ok())
                .map(|b| sha256(&b))
                .collect()
        })
        .unwrap_or_default();
    let mut digests = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let d = match explicit[i] {
            Some(d) => d,
            None => {
                let mut own: Vec<&Digest32> = e
                    .models
                    .iter()
                    .filter(|m| {
                        entries
                            .iter()
                            .enumerate()
                            .all(|(j, o)| j == i || !o.models.contains(m))
                    })
                    .collect();
                if own.len() > 1 {
                    own.retain(|d| onnx_here.contains(d));
                }
                match own.as_slice() {
                    [d] => **d,
                    _ => bail!(
                        "{}: the roster lists {} models for it alone; name one as {}:MODEL",
                        e.name,
                        own.len(),
                        e.name
                    ),
                }
            }
        };
        digests.push(d);
    }
    Ok((entries, digests))
}

/// Parses `EPSILON,DELTA`.
pub fn parse_dp(s: &str) -> anyhow::Result<(f64, f64)> {
    let (e, d) = s
        .split_once(',')
        .context("--dp takes EPSILON,DELTA, e.g. 1.0,1e-5")?;
    Ok((
        e.trim().parse().context("--dp epsilon")?,
        d.trim().parse().context("--dp delta")?,
    ))
}

/// Writes the job's files under `out`.
pub fn write_outcome(out: &Path, o: &EnsembleOutcome, mode: Mode) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("members"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("aggregate.cose"), &o.receipt, 0o644)?;
    write_atomic(&out.join("transcript.cbor"), &o.transcript, 0o644)?;
    for (name, r) in &o.member_receipts {
        write_atomic(&out.join("members").join(format!("{name}.cose")), r, 0o644)?;
    }
    let result = json!({
        "job_id": hex::encode(o.payload.job_id),
        "mode": mode.name(),
        "result": o.result,
        "contributors": o.payload.contributors,
        "dropped": o.payload.dropped,
        "events": o.events,
        "epsilon_calibrated": o.epsilon.map(|e| e.0),
        "epsilon_achieved": o.epsilon.map(|e| e.1),
    });
    write_atomic(
        &out.join("result.json"),
        serde_json::to_vec_pretty(&result)?.as_slice(),
        0o644,
    )?;
    Ok(())
}

/// The roster names of members by their index in the job (`?` for an index out of range).
pub fn member_names(members: &[Entry], indices: &[u32]) -> Vec<String> {
    indices
        .iter()
        .map(|&i| {
            members
                .get(i as usize)
                .map_or("?".into(), |e| e.name.clone())
        })
        .collect()
}

/// A job's result as printed: `[0.123456, 0.876544]`.
pub fn result_values(result: &[f64]) -> String {
    let values: Vec<String> = result.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", values.join(", "))
}

/// Prints the human summary of an outcome.
pub fn print_outcome(o: &EnsembleOutcome, members: &[Entry], mode: Mode) {
    let names = |v: &[u32]| member_names(members, v);
    for e in &o.events {
        println!("event     {e}");
    }
    println!(
        "members   {} contributed: {}; dropped: [{}]",
        o.payload.contributors.len(),
        names(&o.payload.contributors).join(", "),
        names(&o.payload.dropped).join(", ")
    );
    println!("{:<9} {}", mode.name(), result_values(&o.result));
    if let Some((cal, got)) = o.epsilon {
        println!(
            "dp        Skellam noise μ={} per member; ε={cal:.4} with all {} members, ε={got:.4} achieved with {} contributors",
            o.payload
                .params
                .noise
                .map_or(0.0, |n| n.mu_milli as f64 / 1000.0),
            members.len(),
            o.payload.contributors.len()
        );
    }
}

/// Runs `quorate ensemble`.
pub fn run(args: &EnsembleArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.mesh)?;
    let roster = &session.roster;
    let (members, models) = resolve_members(roster, &args.members, &args.models)?;
    let n = members.len() as u32;
    let mode = if args.mode == "votes" {
        Mode::Votes
    } else {
        Mode::Mean
    };
    let dp = args.dp.as_deref().map(parse_dp).transpose()?;
    let spec = |inputs| EnsembleSpec {
        mode,
        members: members.clone(),
        models: models.clone(),
        inputs,
        classes: args.classes,
        threshold: args.threshold.unwrap_or(n / 2 + 1),
        dp,
    };
    if let Some(dir) = &args.inputs {
        return super::ensemble_many::run(args, dir, &session, &spec);
    }
    let input = args
        .input
        .as_ref()
        .context("give --input FILE or --inputs DIR")?;
    let spec = spec(read_input(input, &args.input_name)?);
    let outcome = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let o = ensemble_client::run(&client, &session.key, &spec, &|m| {
            eprintln!("ensemble  {m}")
        })
        .await;
        client.close();
        o
    })?;
    write_outcome(&args.out, &outcome, mode)?;
    print_outcome(&outcome, &members, mode);
    println!(
        "receipts  aggregate signed by this client; {} member receipts checked",
        outcome.member_receipts.len()
    );
    println!(
        "wrote     {}/aggregate.cose, transcript.cbor, members/, result.json",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
