//! `quorate roster`: build, sign and inspect the signed roster of a mesh (§10).
//!
//! The roster authority keeps an unsigned *draft* as a JSON file it can read, review in
//! version control and edit by hand; `quorate roster sign` turns it into the signed COSE_Sign1
//! roster of §10.1 that nodes and clients pin. The draft format:
//!
//! ```json
//! {
//!   "format": "quorate-roster-draft/1",
//!   "mesh": "hospitals",
//!   "serial": 1,
//!   "entries": [
//!     {"name": "node1", "role": "node", "key": "<64 hex digits>",
//!      "addresses": ["10.0.0.1:4433"], "models": ["<64 hex digits>"], "providers": ["cpu"]}
//!   ]
//! }
//! ```
//!
//! Unknown fields are refused, so a misspelt field never silently drops a setting.

mod draft;

pub use draft::*;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::roster::{self, Entry, MAX_ENTRIES, Role, Roster, RosterError};
use serde_json::json;

use quorate_node::files::{load_public_key, load_secret_key, read_limited, write_atomic};
use quorate_protocol::time::utc;
use quorate_runtime::providers::Provider;

fn now() -> anyhow::Result<u64> {
    quorate_node::clock::checked_unix_now().context("the system clock is before 1970")
}

fn load_draft(path: &Path) -> anyhow::Result<RosterDraft> {
    let bytes = read_limited(path, MAX_DRAFT_LEN)?;
    RosterDraft::parse(&bytes).with_context(|| format!("draft {}", path.display()))
}

fn save_draft(path: &Path, draft: &RosterDraft) -> anyhow::Result<()> {
    write_atomic(path, draft.to_json().as_bytes(), 0o644)
}

/// Loads a member's public key file with a hint when a secret key was given by mistake.
fn load_member_key(path: &Path) -> anyhow::Result<PublicKey> {
    load_public_key(path).map_err(|e| {
        let secret = read_limited(path, 16 << 10)
            .is_ok_and(|b| b.windows(11).any(|w| w == b"PRIVATE KEY"));
        if secret {
            anyhow::anyhow!(
                "{} is a secret key; pass the public key file (the .pub beside it) and keep the secret key on its machine",
                path.display()
            )
        } else {
            e
        }
    })
}

/// `quorate roster` subcommands.
#[derive(clap::Subcommand)]
pub enum RosterCommand {
    /// Start an empty roster draft (JSON) for a new mesh.
    Init(InitArgs),
    /// Add a node or client to a roster draft.
    Add(AddArgs),
    /// Remove a member from a roster draft (sign again with a higher --serial to revoke it).
    Remove(RemoveArgs),
    /// Sign a roster draft with the roster authority's key.
    Sign(SignArgs),
    /// Verify a signed roster against the roster authority's key and list its members.
    Show(ShowArgs),
}

/// Arguments of `quorate roster init`.
#[derive(clap::Args)]
#[command(
    after_help = "The draft is plain JSON (format \"quorate-roster-draft/1\"): review it, keep it in \
version control, edit it by hand if you like. Nothing in it is secret; nothing in it is trusted \
until `quorate roster sign` signs it.\n\n\
Example:\n  quorate roster init --mesh hospitals --out roster.json"
)]
pub struct InitArgs {
    /// Mesh name, carried in the signed roster.
    #[arg(long, value_name = "NAME")]
    pub mesh: String,
    /// Where to write the draft.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing draft.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `quorate roster add`.
#[derive(clap::Args)]
#[command(
    after_help = "The key is the member's public key file (NAME.key.pub from `quorate keygen`, run on \
the member's machine); weak keys and keys or names already in the draft are refused. A model is \
named by the SHA-256 of its .onnx file: pass the file (--model) or its digest as `sha256sum` \
prints it (--model-digest). Providers are informative: qnn, coreml, nnapi, openvino[:NPU|GPU|CPU], \
cann, vitis, xnnpack, cpu.\n\n\
Examples:\n  quorate roster add roster.json --name node1 --key keys/node1.key.pub --addr 10.0.0.1:4433 --model models/mlp.onnx --provider cpu\n  quorate roster add roster.json --name analyst --key keys/analyst.key.pub --role client"
)]
pub struct AddArgs {
    /// The draft to change.
    #[arg(value_name = "DRAFT")]
    pub draft: PathBuf,
    /// Unique member name.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The member's public key file (.pub).
    #[arg(long, value_name = "PUBKEY")]
    pub key: PathBuf,
    /// What the member may do.
    #[arg(long, value_enum, default_value = "node")]
    pub role: DraftRole,
    /// An address where the node listens, HOST:PORT; repeat for several.
    #[arg(long = "addr", value_name = "HOST:PORT")]
    pub addresses: Vec<String>,
    /// A model file the node serves (its SHA-256 goes in the roster); repeat for several.
    #[arg(long = "model", value_name = "FILE.onnx")]
    pub models: Vec<PathBuf>,
    /// A served model's SHA-256 as 64 hex digits; repeat for several.
    #[arg(long = "model-digest", value_name = "HEX")]
    pub model_digests: Vec<String>,
    /// An execution provider the node offers, in preference order; repeat for several.
    #[arg(long = "provider", value_name = "NAME")]
    pub providers: Vec<String>,
}

/// Arguments of `quorate roster remove`.
#[derive(clap::Args)]
#[command(
    after_help = "Removing a member from the draft revokes nothing until a roster without it is signed \
with a higher serial and distributed; nodes drop the member when they load that roster.\n\n\
Example:\n  quorate roster remove roster.json --name node3\n  quorate roster sign roster.json --admin admin.key --valid-for 30d --serial 4 --out roster.cose"
)]
pub struct RemoveArgs {
    /// The draft to change.
    #[arg(value_name = "DRAFT")]
    pub draft: PathBuf,
    /// The member to remove.
    #[arg(long, value_name = "NAME")]
    pub name: String,
}

/// Arguments of `quorate roster sign`.
#[derive(clap::Args)]
#[command(
    after_help = "The roster is valid from now until now + --valid-for; nodes refuse it afterwards, so \
re-sign and redistribute before then. Every change of members MUST get a higher serial (--serial): \
nodes refuse a roster older than the one they hold. --serial is written back into the draft. The \
signed roster is a COSE_Sign1 (RFC 9052) with content type application/vnd.quorate.roster+cbor, \
written atomically.\n\n\
Example:\n  quorate roster sign roster.json --admin keys/admin.key --valid-for 30d --out roster.cose"
)]
pub struct SignArgs {
    /// The draft to sign.
    #[arg(value_name = "DRAFT")]
    pub draft: PathBuf,
    /// The roster authority's secret key (mode 0600).
    #[arg(long, value_name = "KEY")]
    pub admin: PathBuf,
    /// How long the roster stays valid: a number with s, m, h or d (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub valid_for: u64,
    /// Set the serial (at least the draft's); written back into the draft.
    #[arg(long, value_name = "N")]
    pub serial: Option<u64>,
    /// Where to write the signed roster.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `quorate roster show`.
#[derive(clap::Args)]
#[command(
    after_help = "Checks, in order (§10.3): the COSE_Sign1 profile, that the signer is the pinned roster \
authority, the signature, the content (deterministic CBOR, unique names and keys, no weak keys), \
and the validity period (300 s of clock skew allowed for the issue time). Exit status 0 if the \
roster is valid, 1 with the reason if not, 2 if it could not be checked (unreadable files).\n\n\
Examples:\n  quorate roster show roster.cose --admin keys/admin.key.pub\n  quorate roster show roster.cose --admin keys/admin.key.pub --json > roster.json   # editable draft + status"
)]
pub struct ShowArgs {
    /// The signed roster.
    #[arg(value_name = "ROSTER")]
    pub roster: PathBuf,
    /// The roster authority's public key (.pub), pinned out of band.
    #[arg(long, value_name = "PUBKEY")]
    pub admin: PathBuf,
    /// Check validity at this time (Unix seconds) instead of now, e.g. when auditing.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub at: Option<u64>,
    /// Print JSON: the draft fields plus validity and key ids.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `quorate roster` subcommand.
pub fn run(cmd: &RosterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RosterCommand::Init(a) => init(a),
        RosterCommand::Add(a) => add(a),
        RosterCommand::Remove(a) => remove(a),
        RosterCommand::Sign(a) => sign(a),
        RosterCommand::Show(a) => show(a),
    }
}

fn init(a: &InitArgs) -> anyhow::Result<ExitCode> {
    if a.out.exists() && !a.force {
        bail!(
            "{} already exists; pass --force to start over",
            a.out.display()
        );
    }
    let draft = RosterDraft::new(&a.mesh)?;
    save_draft(&a.out, &draft)?;
    println!(
        "new roster draft for mesh {:?} (serial 1, no members): {}",
        a.mesh,
        a.out.display()
    );
    println!(
        "next: quorate roster add {} --name NAME --key NAME.key.pub --addr HOST:PORT --model MODEL.onnx",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn add(a: &AddArgs) -> anyhow::Result<ExitCode> {
    let mut draft = load_draft(&a.draft)?;
    let key = load_member_key(&a.key)?;
    let mut models = Vec::new();
    for path in &a.models {
        let bytes = read_limited(path, MAX_MODEL_FILE_LEN)?;
        models.push(hex::encode(sha256(&bytes)));
    }
    for d in &a.model_digests {
        models.push(hex::encode(parse_digest(d)?));
    }
    let providers = a
        .providers
        .iter()
        .map(|p| Provider::parse(p).map(|p| p.label()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let entry = DraftEntry {
        name: a.name.clone(),
        role: a.role,
        key: hex::encode(key.to_bytes()),
        addresses: a.addresses.clone(),
        models,
        providers,
    };
    // Check the whole draft as it will be signed, so a broken hand edit is caught now.
    let mut accepted: Vec<Entry> = Vec::new();
    for e in &draft.entries {
        let checked = entry_from_draft(e, &accepted)
            .with_context(|| format!("draft {} is not valid", a.draft.display()))?;
        accepted.push(checked);
    }
    let checked = entry_from_draft(&entry, &accepted)?;
    check_list("entries".into(), accepted.len() + 1, MAX_ENTRIES)?;
    if checked.role == Role::Node && checked.addresses.is_empty() {
        eprintln!(
            "warning: node {:?} has no --addr; clients will not be able to reach it",
            a.name
        );
    }
    if checked.role == Role::Node && checked.models.is_empty() {
        eprintln!(
            "warning: node {:?} serves no model (--model or --model-digest); no job will be sent to it",
            a.name
        );
    }
    draft.entries.push(entry);
    save_draft(&a.draft, &draft)?;
    println!(
        "added {} {:?} (key id {}) to {}: {}",
        checked.role.name(),
        a.name,
        key.key_id(),
        a.draft.display(),
        count(draft.entries.len(), "member")
    );
    Ok(ExitCode::SUCCESS)
}

fn remove(a: &RemoveArgs) -> anyhow::Result<ExitCode> {
    let mut draft = load_draft(&a.draft)?;
    let before = draft.entries.len();
    draft.entries.retain(|e| e.name != a.name);
    if draft.entries.len() == before {
        bail!("{} has no member named {:?}", a.draft.display(), a.name);
    }
    save_draft(&a.draft, &draft)?;
    println!(
        "removed {:?} from {}: {}; sign with --serial {} to revoke it",
        a.name,
        a.draft.display(),
        count(draft.entries.len(), "member"),
        draft.serial.saturating_add(1)
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(a: &SignArgs) -> anyhow::Result<ExitCode> {
    let mut draft = load_draft(&a.draft)?;
    let admin = load_secret_key(&a.admin)?;
    let bumped = match a.serial {
        Some(n) if n < draft.serial => bail!(
            "--serial {n} is lower than the draft's serial {}; serials only grow (§10.3)",
            draft.serial
        ),
        Some(n) => {
            let changed = n != draft.serial;
            draft.serial = n;
            changed
        }
        None => false,
    };
    if draft.entries.is_empty() {
        bail!(
            "{} has no members; add them with `quorate roster add`",
            a.draft.display()
        );
    }
    let issued_at = now()?;
    let expires_at = issued_at
        .checked_add(a.valid_for)
        .context("--valid-for is too long")?;
    let roster = draft_to_roster(&draft, issued_at, expires_at)
        .with_context(|| format!("draft {}", a.draft.display()))?;
    let signed = roster.sign(&admin)?;
    // Check the result exactly as a node will before anyone receives it.
    Roster::verify(&signed, &admin.public_key(), issued_at)
        .context("the signed roster does not verify")?;
    write_atomic(&a.out, &signed, 0o644)?;
    if bumped {
        save_draft(&a.draft, &draft)?;
    }
    let nodes = roster
        .entries
        .iter()
        .filter(|e| e.role == Role::Node)
        .count();
    println!(
        "signed roster {} for mesh {:?}: serial {}, {}, {}, valid until {}",
        a.out.display(),
        roster.mesh,
        roster.serial,
        count(nodes, "node"),
        count(roster.entries.len() - nodes, "client"),
        utc(expires_at)
    );
    println!(
        "roster authority key id {} (nodes pin its public key)",
        admin.public_key().key_id()
    );
    println!(
        "after changing members, sign with --serial {}",
        roster.serial.saturating_add(1)
    );
    Ok(ExitCode::SUCCESS)
}

fn show(a: &ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = load_public_key(&a.admin)?;
    let bytes = read_limited(&a.roster, roster::MAX_ROSTER_LEN as u64)?;
    let at = match a.at {
        Some(t) => t,
        None => now()?,
    };
    let roster = match Roster::verify(&bytes, &admin, at) {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "valid": false,
                        "error": failure_code(&e),
                        "message": e.to_string(),
                        "checked_at": at,
                    }))?
                );
            }
            let hint = match &e {
                RosterError::ForeignSigner(_) => format!(
                    "; the pinned roster authority is key id {} ({})",
                    admin.key_id(),
                    a.admin.display()
                ),
                _ => String::new(),
            };
            eprintln!("roster {} REJECTED: {e}{hint}", a.roster.display());
            return Ok(ExitCode::from(1));
        }
    };
    if a.json {
        let mut doc = serde_json::to_value(roster_to_draft(&roster))?;
        for (j, e) in roster.entries.iter().enumerate() {
            doc["entries"][j]["key_id"] = json!(e.key.key_id().to_string());
        }
        doc["valid"] = json!(true);
        doc["issued_at"] = json!(roster.issued_at);
        doc["expires_at"] = json!(roster.expires_at);
        doc["checked_at"] = json!(at);
        doc["authority_key_id"] = json!(admin.key_id().to_string());
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "roster {}: VALID, mesh {:?}, serial {}, signed by roster authority {}",
        a.roster.display(),
        roster.mesh,
        roster.serial,
        admin.key_id()
    );
    println!(
        "issued {}, expires {} ({} left)",
        utc(roster.issued_at),
        utc(roster.expires_at),
        human_span(roster.expires_at.saturating_sub(at))
    );
    println!("{}:", count(roster.entries.len(), "member"));
    for e in &roster.entries {
        let mut line = format!(
            "  {:<6} {:<20} key id {}",
            e.role.name(),
            e.name,
            e.key.key_id()
        );
        if !e.addresses.is_empty() {
            line += &format!("  at {}", e.addresses.join(", "));
        }
        if !e.models.is_empty() {
            let m: Vec<String> = e
                .models
                .iter()
                .map(|d| format!("sha256:{}", hex::encode(d)))
                .collect();
            line += &format!("  models {}", m.join(", "));
        }
        if !e.providers.is_empty() {
            line += &format!("  providers {}", e.providers.join(" > "));
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn human_span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}
