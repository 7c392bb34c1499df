//! `quorate fhe`: encrypted inference (§16). `keygen` makes the client's TFHE keys; `infer`
//! runs an encrypted ensemble on mesh nodes and decrypts only the sum.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::session::{MeshArgs, Session};
use quorate_fhe::engine;
use quorate_node::fhe::client::{ClientKeys, save_keys};
use quorate_node::fhe::job;
use quorate_node::files::read_limited;

/// `quorate fhe` subcommands.
#[derive(clap::Subcommand)]
pub enum FheCommand {
    /// Generate TFHE keys: client key (0600), compressed server key, compact public key.
    #[command(
        after_help = "Parameters: tfhe-rs 1.8 default, PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 (128-bit).\n\
Writes DIR/client.key (secret, mode 0600, never leaves this machine), DIR/server.key (the\n\
compressed evaluation key, ~57 MiB, sent once to each node) and DIR/public.key (encryption).\n\n\
Example:\n  quorate fhe keygen --out fhe-keys/"
    )]
    Keygen(KeygenArgs),
    /// Encrypted ensemble: members score ciphertexts, an aggregator adds them, you decrypt the sum.
    #[command(
        after_help = "The client quantizes its features (models/README.md), encrypts the pre-shifted planes\n\
q, 2q, 4q, 8q of each with the compact public key, uploads the server key once per node (in\n\
1 MiB chunks; nodes cache it by SHA-256), and asks each member to score the ciphertext with\n\
the qlinear model its roster entry lists. The aggregator (default: the first member) adds the\n\
encrypted scores; only the client decrypts the sum. Every answer carries a receipt committing\n\
to the ciphertext digests, the server-key digest and the model digest; all are checked.\n\n\
Example:\n  quorate fhe infer --roster roster.cose --admin admin.pub --key client.key \\\n      --members node-1,node-2 --input models/samples/qlinear-features.json \\\n      --keys fhe-keys/ --out out/"
    )]
    Infer(InferArgs),
}

/// Arguments of `quorate fhe keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Directory to write the keys to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `quorate fhe infer`.
#[derive(clap::Args)]
pub struct InferArgs {
    /// Roster, roster authority and this client's key.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Member nodes, comma-separated; each scores with the qlinear model it serves.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',', required = true)]
    pub members: Vec<String>,
    /// Node that adds the encrypted scores (default: the first member).
    #[arg(long, value_name = "NAME")]
    pub aggregator: Option<String>,
    /// Raw features: JSON `{"features": [30 numbers]}`.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Keys directory from `quorate fhe keygen`.
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
    /// Folder with the qlinear model files (to know what each member serves).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Directory for result.json, the ciphertexts and the receipts.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds a node may take to answer each request; network time on top follows the
    /// measured round-trip time (spec §7.6.1).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Runs `quorate fhe …`.
pub fn run(cmd: &FheCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FheCommand::Keygen(a) => keygen(a),
        FheCommand::Infer(a) => infer(a),
    }
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let keys = engine::keygen(&mut |step| {
        eprintln!(
            "[{:5.1} s] generating {step}",
            start.elapsed().as_secs_f64()
        )
    });
    eprintln!("[{:5.1} s] writing keys", start.elapsed().as_secs_f64());
    let (c, s, p) = save_keys(&keys, &args.out)?;
    let mib = |n: usize| n as f64 / (1 << 20) as f64;
    println!("parameters  {}", engine::PARAMETERS);
    println!(
        "client.key  {:.1} KiB (secret, mode 0600)",
        c as f64 / 1024.0
    );
    println!("server.key  {:.1} MiB (compressed; send to nodes)", mib(s));
    println!("public.key  {:.1} KiB", p as f64 / 1024.0);
    println!(
        "wrote       {} in {:.1} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_features(path: &std::path::Path) -> anyhow::Result<Vec<f64>> {
    let bytes = read_limited(path, 1 << 20)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    serde_json::from_value(v["features"].clone())
        .with_context(|| format!("{} needs {{\"features\": [numbers]}}", path.display()))
}

fn infer(args: &InferArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.mesh)?;
    let roster = &session.roster;
    let raw = read_features(&args.input)?;
    let known = job::known_models(&args.models)?;
    let keys = ClientKeys::load(&args.keys)
        .with_context(|| format!("keys in {} (run `quorate fhe keygen`)", args.keys.display()))?;
    println!("checking that client.key, public.key and server.key belong together");
    keys.check_consistent()
        .with_context(|| format!("keys in {}", args.keys.display()))?;
    let entry = |name: &str| {
        roster
            .by_name(name)
            .cloned()
            .with_context(|| format!("no node {name:?} in the roster"))
    };
    let members = args
        .members
        .iter()
        .map(|m| entry(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let aggregator = match &args.aggregator {
        Some(a) => entry(a)?,
        None => members[0].clone(),
    };
    if members.is_empty() {
        bail!("--members names no node");
    }
    let result = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let r = job::run(
            &client,
            &keys,
            &members,
            &aggregator,
            &known,
            &raw,
            &mut |line| println!("{line}"),
        )
        .await;
        client.close();
        r
    })?;
    job::write(&args.out, &result)?;
    println!(
        "decrypted sum {} → {}",
        result.sum,
        if result.sum > 0 {
            "benign"
        } else {
            "malignant"
        }
    );
    if let Some(e) = result.expected {
        let same = if e == result.sum {
            "equals"
        } else {
            "DIFFERS FROM"
        };
        println!("            {same} the plaintext quantized computation ({e})");
        if e != result.sum {
            return Ok(ExitCode::from(1));
        }
    }
    println!(
        "wrote       {}/result.json, input.ct, score-*.ct, sum.ct, receipts/",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
