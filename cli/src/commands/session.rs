//! What every mesh client command shares: the `--roster`, `--admin` and `--key` flags, one
//! session built from them (the verified roster, the client's key, an async runtime), and
//! how a model is named and an output printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::roster::Roster;
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN};

use quorate_node::clock::unix_now;
use quorate_node::files::{load_public_key, load_secret_key, read_limited};
use quorate_node::mesh::client::MeshClient;

/// The flags that put a client on a mesh.
#[derive(clap::Args)]
pub struct MeshArgs {
    /// The signed roster.
    #[arg(long, value_name = "FILE")]
    pub roster: PathBuf,
    /// The roster authority's public key.
    #[arg(long, value_name = "PUBKEY")]
    pub admin: PathBuf,
    /// This client's secret key (must be in the roster).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
}

/// A client's session: its key, the roster it checked, and the runtime its jobs run on.
pub struct Session {
    /// The client's identity key.
    pub key: SecretKey,
    /// The roster, verified against the authority's key (§10.3).
    pub roster: Roster,
    /// The async runtime the client's connections live on.
    pub rt: tokio::runtime::Runtime,
}

impl Session {
    /// Loads the key, verifies the roster and starts the runtime.
    pub fn open(args: &MeshArgs) -> anyhow::Result<Self> {
        let key = load_secret_key(&args.key)?;
        let roster = load_roster(&args.roster, &args.admin)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Self { key, roster, rt })
    }

    /// A mesh client on this session's key and roster; call it inside [`Session::rt`].
    pub fn client(&self, timeout: Duration) -> anyhow::Result<MeshClient> {
        MeshClient::new(&self.key, self.roster.clone(), timeout)
    }
}

/// The tensors of one input file (a `.npy` file feeds the input `npy_name`; `.npz` and JSON
/// name their own), read within the size limit of §3.5.
pub fn read_input(path: &Path, npy_name: &str) -> anyhow::Result<Vec<Tensor>> {
    let bytes = read_limited(path, MAX_FILE_LEN as u64)?;
    Ok(tensor_file::parse_any(&bytes, npy_name)
        .with_context(|| format!("input {}", path.display()))?
        .into_iter()
        .map(|r| r.tensor)
        .collect())
}

/// Resolves `--model` to a digest.
pub fn resolve_model(spec: &str, models: &Path) -> anyhow::Result<Digest32> {
    let hex_part = spec.strip_prefix("sha256:").unwrap_or(spec);
    if hex_part.len() == 64
        && let Ok(d) = hex::decode(hex_part)
    {
        return d.try_into().map_err(|_| anyhow::anyhow!("bad digest"));
    }
    let path = if Path::new(spec).is_file() {
        PathBuf::from(spec)
    } else {
        models.join(format!("{spec}.onnx"))
    };
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "--model {spec:?} is not a SHA-256 digest, an .onnx file, or a model in {}",
            models.display()
        )
    })?;
    Ok(sha256(&bytes))
}

/// Reads a signed roster and checks it against the roster authority's key, as a client does
/// before every job (§10.3).
pub fn load_roster(roster: &Path, admin: &Path) -> anyhow::Result<Roster> {
    let admin = load_public_key(admin)?;
    let bytes = read_limited(roster, quorate_protocol::roster::MAX_ROSTER_LEN as u64)?;
    Roster::verify(&bytes, &admin, unix_now())
        .with_context(|| format!("roster {}", roster.display()))
}

/// Prints one output tensor (its first 8 values) the way every client command does.
pub fn print_output(t: &Tensor) {
    let v: Vec<String> = t
        .to_f64_vec()
        .iter()
        .take(8)
        .map(|x| format!("{x:.6}"))
        .collect();
    println!(
        "output    {} {}{:?} = [{}]",
        t.name(),
        t.dtype(),
        t.shape(),
        v.join(", ")
    );
}
