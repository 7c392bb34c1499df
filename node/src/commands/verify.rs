//! `quorate verify`: offline verification of receipts (§6).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, RevealedTensor};

use crate::files::{load_public_key, read_limited};
use crate::verify::{TrustStore, collect_files, human_line, json_report, verify_files};

/// Arguments of `quorate verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Each receipt is parsed strictly (deterministic CBOR, COSE_Sign1 profile of §4.1), its\n\
signer looked up by key id among the trusted keys, and all signatures checked in one batch\n\
(results identical to one-by-one verify_strict). Exit status 0 only if every receipt verifies.\n\n\
Examples:\n  quorate verify out/receipt.cose --trust keys/node1.key.pub\n  quorate verify receipts/ --trust a.pub --trust b.pub --json\n  quorate verify out/receipt.cose --trust keys/node1.key.pub --tensor probabilities=out/outputs.json\n  quorate verify out/receipts/node-1-eval.cose --roster roster.cose --admin admin.pub --blob fhe:input=out/input.ct"
)]
pub struct VerifyArgs {
    /// Receipt files, or directories searched for *.cose files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// A trusted public key (.pub file from `quorate keygen`); repeat for several.
    #[arg(long, value_name = "PUBKEY", required_unless_present = "roster")]
    pub trust: Vec<PathBuf>,
    /// Trust the nodes of this signed roster (needs --admin).
    #[arg(long, value_name = "FILE", requires = "admin")]
    pub roster: Option<PathBuf>,
    /// The roster authority's public key, to check --roster.
    #[arg(long, value_name = "PUBKEY", requires = "roster")]
    pub admin: Option<PathBuf>,
    /// Check a revealed tensor against its commitment: NAME=FILE (JSON tensor list or .npy).
    #[arg(long, value_name = "NAME=FILE")]
    pub tensor: Vec<String>,
    /// Check a revealed FHE ciphertext or server key against its commitment (§16.6):
    /// NAME=FILE, e.g. fhe:input=out/input.ct.
    #[arg(long, value_name = "NAME=FILE")]
    pub blob: Vec<String>,
    /// Print a JSON report instead of lines.
    #[arg(long)]
    pub json: bool,
}

fn load_reveal(spec: &str) -> anyhow::Result<RevealedTensor> {
    let (name, file) = spec.split_once('=').context("--tensor takes NAME=FILE")?;
    let bytes = read_limited(std::path::Path::new(file), MAX_FILE_LEN as u64)?;
    let all =
        tensor_file::parse_any(&bytes, name).with_context(|| format!("tensor file {file}"))?;
    all.into_iter()
        .find(|r| r.tensor.name() == name)
        .with_context(|| format!("{file} holds no tensor named {name:?}"))
}

/// Runs `quorate verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut trust = TrustStore::default();
    for p in &args.trust {
        let key = load_public_key(p)?;
        trust.add(
            key,
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
        );
    }
    if let (Some(roster), Some(admin)) = (&args.roster, &args.admin) {
        let admin = load_public_key(admin)?;
        let bytes = read_limited(roster, quorate_protocol::roster::MAX_ROSTER_LEN as u64)?;
        // An auditor checks old receipts: the roster's signature must hold, its expiry is
        // reported but does not void receipts signed while it was valid.
        let now = match quorate_protocol::roster::Roster::verify(
            &bytes,
            &admin,
            crate::attest::unix_now(),
        ) {
            Err(quorate_protocol::roster::RosterError::Expired { expires_at, .. }) => {
                eprintln!(
                    "note: the roster expired at {expires_at}; checking receipts against it as signed"
                );
                expires_at.saturating_sub(1)
            }
            _ => crate::attest::unix_now(),
        };
        let r = quorate_protocol::roster::Roster::verify(&bytes, &admin, now)
            .with_context(|| format!("roster {}", roster.display()))?;
        for e in r
            .entries
            .iter()
            .filter(|e| e.role == quorate_protocol::roster::Role::Node)
        {
            trust.add(e.key, e.name.clone());
        }
    }
    let reveals = args
        .tensor
        .iter()
        .map(|s| load_reveal(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let files = collect_files(&args.paths).context("cannot list receipts")?;
    if files.is_empty() {
        bail!("no receipt files found (directories are searched for *.cose)");
    }
    let blobs = args
        .blob
        .iter()
        .map(|s| {
            let (name, file) = s.split_once('=').context("--blob takes NAME=FILE")?;
            let bytes = read_limited(
                std::path::Path::new(file),
                quorate_protocol::fhe::MAX_SERVER_KEY_LEN,
            )?;
            Ok(crate::verify::RevealedBlob {
                name: name.to_string(),
                digest: quorate_crypto::tensor_digest::sha256(&bytes),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut reports = verify_files(&files, &trust, &reveals);
    crate::verify::check_blobs(&mut reports, &blobs);
    let failed = reports.iter().filter(|r| r.failure.is_some()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json_report(&reports))?);
    } else {
        for r in &reports {
            println!("{}", human_line(r));
        }
        println!(
            "{} of {} receipts verified",
            reports.len() - failed,
            reports.len()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
