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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_crypto::{IdentityError, PublicKey};
use quorate_protocol::roster::{
    self, Entry, MAX_ENTRIES, MAX_LIST, MAX_TEXT, Role, Roster, RosterError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use quorate_node::files::{load_public_key, load_secret_key, read_limited, write_atomic};
use quorate_protocol::time::utc;
use quorate_runtime::providers::Provider;

/// The `format` value of a version-1 draft.
pub const DRAFT_FORMAT: &str = "quorate-roster-draft/1";
/// Largest draft file read (a full roster of [`MAX_ENTRIES`] entries fits easily).
pub const MAX_DRAFT_LEN: u64 = 8 << 20;
/// Largest model file hashed by `roster add --model` (the protobuf limit of an ONNX file).
pub const MAX_MODEL_FILE_LEN: u64 = 2 << 30;

/// Role of a draft entry, as written in the JSON draft and on the command line (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DraftRole {
    /// Serves models and answers requests.
    Node,
    /// Only sends requests.
    Client,
}

impl From<DraftRole> for Role {
    fn from(r: DraftRole) -> Role {
        match r {
            DraftRole::Node => Role::Node,
            DraftRole::Client => Role::Client,
        }
    }
}

impl From<Role> for DraftRole {
    fn from(r: Role) -> DraftRole {
        match r {
            Role::Node => DraftRole::Node,
            Role::Client => DraftRole::Client,
        }
    }
}

/// One member in a draft; the JSON form of [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftEntry {
    /// Unique name.
    pub name: String,
    /// `node` or `client`.
    pub role: DraftRole,
    /// Ed25519 public key, 64 lowercase hex digits (RFC 8032 encoding).
    pub key: String,
    /// `host:port` addresses (nodes).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// SHA-256 digests of served model files, 64 hex digits each (nodes).
    #[serde(default)]
    pub models: Vec<String>,
    /// Execution providers offered, in preference order (informative).
    #[serde(default)]
    pub providers: Vec<String>,
}

/// An unsigned roster: everything of §10.1 except the times, which are set when signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterDraft {
    /// Always [`DRAFT_FORMAT`].
    pub format: String,
    /// Mesh name.
    pub mesh: String,
    /// Serial of the next signed roster (§10.3: serials only grow).
    pub serial: u64,
    /// The members.
    pub entries: Vec<DraftEntry>,
}

impl RosterDraft {
    /// An empty draft (serial 1).
    pub fn new(mesh: &str) -> Result<Self, DraftError> {
        check_text("mesh name", mesh)?;
        Ok(Self {
            format: DRAFT_FORMAT.into(),
            mesh: mesh.into(),
            serial: 1,
            entries: Vec::new(),
        })
    }

    /// Parses a draft file strictly (unknown fields and other formats refused).
    pub fn parse(bytes: &[u8]) -> Result<Self, DraftError> {
        let draft: Self =
            serde_json::from_slice(bytes).map_err(|e| DraftError::Json(e.to_string()))?;
        if draft.format != DRAFT_FORMAT {
            return Err(DraftError::Format(draft.format));
        }
        Ok(draft)
    }

    /// Pretty JSON with a final newline, as written to disk.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Errors turning a draft (or command-line input) into roster entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DraftError {
    /// Not JSON, or a field is missing, misspelt or of the wrong type.
    #[error("roster draft is not valid: {0}")]
    Json(String),
    /// The `format` field names another format.
    #[error("roster draft has format {0:?}; this version reads {DRAFT_FORMAT:?}")]
    Format(String),
    /// A name, address or provider is empty or too long.
    #[error("{what} {value:?} must be 1 to {MAX_TEXT} bytes")]
    Text {
        /// Which field.
        what: &'static str,
        /// Its value (possibly cut).
        value: String,
    },
    /// A list is longer than the roster allows.
    #[error("{what} has {found} items; a roster allows at most {max}")]
    TooMany {
        /// Which list.
        what: String,
        /// Items present.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// Two entries share a name.
    #[error("an entry named {0:?} is already in the roster; names must be unique (§10.3)")]
    DuplicateName(String),
    /// Two entries share a key.
    #[error(
        "entry {name:?} has the key of entry {existing:?} (key id {key_id}); keys must be unique (§10.3)"
    )]
    DuplicateKey {
        /// The new entry.
        name: String,
        /// The entry that already has the key.
        existing: String,
        /// The key id.
        key_id: String,
    },
    /// The key is a small-order or mixed-order point.
    #[error(
        "entry {name:?}: weak public key refused (§2.3): a point of small or mixed order is never a valid identity"
    )]
    WeakKey {
        /// The entry.
        name: String,
    },
    /// The key is not 32 bytes of hex or not a point encoding.
    #[error("entry {name:?}: key must be 64 hex digits encoding an Ed25519 public key ({problem})")]
    MalformedKey {
        /// The entry.
        name: String,
        /// What was wrong.
        problem: String,
    },
    /// A model digest is not 64 hex digits.
    #[error(
        "model digest {0:?} must be 64 hex digits (the SHA-256 of the .onnx file, as sha256sum prints it)"
    )]
    Digest(String),
    /// An address is not `host:port`.
    #[error("address {0:?} must be HOST:PORT with a port from 1 to 65535 (IPv6 as [addr]:port)")]
    Address(String),
    /// A client entry lists addresses or models.
    #[error(
        "entry {0:?} is a client: clients serve nothing, so they take no addresses or models (use --role node)"
    )]
    ClientServes(String),
    /// The validity period is empty or overflows.
    #[error("expiry {expires_at} is not after the issue time {issued_at}")]
    Validity {
        /// Issue time.
        issued_at: u64,
        /// Expiry time.
        expires_at: u64,
    },
    /// The roster codec refused the result.
    #[error(transparent)]
    Roster(#[from] RosterError),
}

fn check_text(what: &'static str, value: &str) -> Result<(), DraftError> {
    if value.is_empty() || value.len() > MAX_TEXT {
        let mut value = value.to_string();
        if value.len() > 64 {
            let mut cut = 64;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        return Err(DraftError::Text { what, value });
    }
    Ok(())
}

fn check_list(what: String, found: usize, max: usize) -> Result<(), DraftError> {
    if found > max {
        return Err(DraftError::TooMany { what, found, max });
    }
    Ok(())
}

/// Parses a model digest: 64 hex digits, optionally prefixed `sha256:`.
pub fn parse_digest(s: &str) -> Result<Digest32, DraftError> {
    let hexits = s.strip_prefix("sha256:").unwrap_or(s);
    let mut d = [0u8; 32];
    hex::decode_to_slice(hexits.to_ascii_lowercase(), &mut d)
        .map_err(|_| DraftError::Digest(s.into()))?;
    Ok(d)
}

/// Checks an address is `host:port` (IPv6 hosts in brackets).
pub fn check_address(addr: &str) -> Result<(), DraftError> {
    let bad = || DraftError::Address(addr.into());
    check_text("address", addr)?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && !port.starts_with('+');
    let host_ok = !host.is_empty()
        && !host.chars().any(char::is_whitespace)
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !port_ok || !host_ok {
        return Err(bad());
    }
    Ok(())
}

fn parse_key(name: &str, key: &str) -> Result<PublicKey, DraftError> {
    let bytes = hex::decode(key).map_err(|e| DraftError::MalformedKey {
        name: name.into(),
        problem: e.to_string(),
    })?;
    PublicKey::from_bytes(&bytes).map_err(|e| match e {
        IdentityError::WeakKey => DraftError::WeakKey { name: name.into() },
        e => DraftError::MalformedKey {
            name: name.into(),
            problem: e.to_string(),
        },
    })
}

/// Checks one draft entry against the entries already accepted and converts it (§10.2, §10.3).
pub fn entry_from_draft(e: &DraftEntry, existing: &[Entry]) -> Result<Entry, DraftError> {
    check_text("name", &e.name)?;
    let key = parse_key(&e.name, &e.key)?;
    if existing.iter().any(|x| x.name == e.name) {
        return Err(DraftError::DuplicateName(e.name.clone()));
    }
    if let Some(x) = existing.iter().find(|x| x.key == key) {
        return Err(DraftError::DuplicateKey {
            name: e.name.clone(),
            existing: x.name.clone(),
            key_id: key.key_id().to_string(),
        });
    }
    let role = Role::from(e.role);
    if role == Role::Client && !(e.addresses.is_empty() && e.models.is_empty()) {
        return Err(DraftError::ClientServes(e.name.clone()));
    }
    for (what, list) in [
        ("addresses", &e.addresses),
        ("models", &e.models),
        ("providers", &e.providers),
    ] {
        check_list(format!("entry {:?}: {what}", e.name), list.len(), MAX_LIST)?;
    }
    for a in &e.addresses {
        check_address(a)?;
    }
    for p in &e.providers {
        check_text("provider", p)?;
    }
    let models = e
        .models
        .iter()
        .map(|m| parse_digest(m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Entry {
        name: e.name.clone(),
        key,
        role,
        addresses: e.addresses.clone(),
        models,
        providers: e.providers.clone(),
    })
}

/// Turns a draft into the roster of §10.1 valid from `issued_at` until `expires_at`.
///
/// Every rule a verifier applies to the content (§10.3) is checked here with a precise error,
/// and the encoding is then decoded again with the verifier's own decoder, so whatever this
/// returns will be accepted by every node.
pub fn draft_to_roster(
    draft: &RosterDraft,
    issued_at: u64,
    expires_at: u64,
) -> Result<Roster, DraftError> {
    if draft.format != DRAFT_FORMAT {
        return Err(DraftError::Format(draft.format.clone()));
    }
    check_text("mesh name", &draft.mesh)?;
    check_list("entries".into(), draft.entries.len(), MAX_ENTRIES)?;
    if expires_at <= issued_at {
        return Err(DraftError::Validity {
            issued_at,
            expires_at,
        });
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(draft.entries.len());
    for e in &draft.entries {
        let entry = entry_from_draft(e, &entries)?;
        entries.push(entry);
    }
    let roster = Roster {
        mesh: draft.mesh.clone(),
        serial: draft.serial,
        issued_at,
        expires_at,
        entries,
    };
    let decoded = Roster::from_cbor(&roster.to_cbor()?)?;
    if decoded != roster {
        return Err(DraftError::Roster(RosterError::Malformed(
            "the roster does not survive encoding".into(),
        )));
    }
    Ok(roster)
}

/// The draft form of a roster's entry.
pub fn entry_to_draft(e: &Entry) -> DraftEntry {
    DraftEntry {
        name: e.name.clone(),
        role: e.role.into(),
        key: hex::encode(e.key.to_bytes()),
        addresses: e.addresses.clone(),
        models: e.models.iter().map(hex::encode).collect(),
        providers: e.providers.clone(),
    }
}

/// The draft a roster was signed from (times dropped): `quorate roster show --json` prints
/// this, so a signed roster can be turned back into an editable draft.
pub fn roster_to_draft(r: &Roster) -> RosterDraft {
    RosterDraft {
        format: DRAFT_FORMAT.into(),
        mesh: r.mesh.clone(),
        serial: r.serial,
        entries: r.entries.iter().map(entry_to_draft).collect(),
    }
}

/// Parses a validity period: a positive integer with a unit `s`, `m`, `h` or `d`
/// (`90s`, `15m`, `12h`, `30d`). Returns seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let help = || format!("{s:?} is not a duration: use a number with s, m, h or d, e.g. 30d");
    let split = s.len().checked_sub(1).ok_or_else(help)?;
    let (num, unit) = (s.get(..split).ok_or_else(help)?, &s[split..]);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(help());
    }
    let n: u64 = num.parse().map_err(|_| help())?;
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))?;
    if secs == 0 {
        return Err(format!(
            "{s:?} is empty: a roster must be valid for some time"
        ));
    }
    Ok(secs)
}

/// Stable machine-readable code of a roster verification failure (used by `--json` output
/// and the conformance vectors).
pub fn failure_code(e: &RosterError) -> &'static str {
    e.failure_name()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    fn entry(name: &str, seed: u8) -> DraftEntry {
        DraftEntry {
            name: name.into(),
            role: DraftRole::Node,
            key: hex::encode(SecretKey::from_seed(&[seed; 32]).public_key().to_bytes()),
            addresses: vec!["127.0.0.1:4433".into()],
            models: vec![hex::encode([7u8; 32])],
            providers: vec!["cpu".into()],
        }
    }

    #[test]
    fn draft_and_roster_convert_both_ways() {
        let mut d = RosterDraft::new("m").unwrap();
        d.entries.push(entry("a", 1));
        d.entries.push(DraftEntry {
            role: DraftRole::Client,
            addresses: vec![],
            models: vec![],
            providers: vec![],
            ..entry("c", 2)
        });
        let r = draft_to_roster(&d, 10, 20).unwrap();
        assert_eq!(r.entries[0].models, vec![[7u8; 32]]);
        assert_eq!(r.entries[1].role, Role::Client);
        assert_eq!(roster_to_draft(&r), d);
        assert_eq!(RosterDraft::parse(d.to_json().as_bytes()).unwrap(), d);
    }

    #[test]
    fn drafts_violating_section_10_3_are_refused_precisely() {
        let mut d = RosterDraft::new("m").unwrap();
        d.entries.push(entry("a", 1));
        d.entries.push(entry("a", 2));
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::DuplicateName("a".into()))
        );
        d.entries[1] = entry("b", 1);
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::DuplicateKey { .. })
        ));
        // A small-order point (the identity, y = 1).
        d.entries[1] = entry("b", 2);
        d.entries[1].key = format!("01{}", "00".repeat(31));
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::WeakKey { name: "b".into() })
        );
        d.entries[1] = entry("b", 2);
        d.entries[1].addresses = vec!["no-port".into()];
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Address(_))
        ));
        d.entries[1] = entry("b", 2);
        d.entries[1].role = DraftRole::Client;
        assert_eq!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::ClientServes("b".into()))
        );
        d.entries[1] = entry("b", 2);
        d.entries[1].models = vec!["abcd".into()];
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Digest(_))
        ));
        d.entries[1] = entry("b", 2);
        assert!(draft_to_roster(&d, 10, 20).is_ok());
        assert!(matches!(
            draft_to_roster(&d, 20, 20),
            Err(DraftError::Validity { .. })
        ));
        d.entries[1].name = "x".repeat(MAX_TEXT + 1);
        assert!(matches!(
            draft_to_roster(&d, 10, 20),
            Err(DraftError::Text { .. })
        ));
    }

    #[test]
    fn draft_parsing_is_strict() {
        let good = RosterDraft::new("m").unwrap().to_json();
        assert!(RosterDraft::parse(good.as_bytes()).is_ok());
        let extra = good.replacen("\"serial\"", "\"seriall\": 1, \"serial\"", 1);
        assert!(matches!(
            RosterDraft::parse(extra.as_bytes()),
            Err(DraftError::Json(_))
        ));
        let other = good.replace(DRAFT_FORMAT, "quorate-roster-draft/2");
        assert!(matches!(
            RosterDraft::parse(other.as_bytes()),
            Err(DraftError::Format(_))
        ));
    }

    #[test]
    fn durations_and_addresses() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-1d",
            "+1d",
            "0d",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for good in ["10.0.0.1:4433", "node1.example:1", "[::1]:4433"] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.1", ":4433", "h:0", "h:65536", "::1:4433", "h :1", "h:+1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
