//! `node.toml` (§12.1): what a node loads at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use quorate_runtime::providers::Provider;

/// A node's configuration file. Relative paths are relative to the file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's name in the roster.
    pub name: String,
    /// Its secret key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// The signed roster.
    pub roster: PathBuf,
    /// The roster authority's public key.
    pub admin: PathBuf,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Folder of `*.onnx` models to serve, addressed by SHA-256.
    pub models: PathBuf,
    /// Execution-provider preference list, first choice first; the CPU is always the fallback.
    #[serde(default = "default_providers")]
    pub providers: Vec<String>,
    /// Append-only log of every receipt signed (§12.4).
    pub audit_log: PathBuf,
    /// Requests processed at once; more get a `Busy` error.
    #[serde(default = "default_concurrency")]
    pub max_concurrent: u64,
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "default_threads")]
    pub intra_threads: usize,
    /// Most elements in one input tensor.
    #[serde(default = "default_max_elements")]
    pub max_input_elements: u64,
    /// Largest request frame, in bytes.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u32,
    /// Memory budget for requests in flight, in bytes, across all peers (§7.6): a request
    /// is read only when `max_request_bytes` of it is free. At least `max_request_bytes`.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_bytes: u64,
    /// Seconds a client has to send its request.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Seconds between two looks at the roster file: a changed file is reloaded under the
    /// rules of §10.3 (SIGHUP reloads at once). 0 turns the polling off.
    #[serde(default = "default_roster_reload")]
    pub roster_reload_secs: u64,
    /// Local address of the Prometheus/OpenMetrics endpoint (`GET /metrics`, §12.7); none
    /// by default. Keep it on loopback or a management network: it is plain HTTP.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines as `text` (default) or `json` (§12.8).
    #[serde(default)]
    pub log_format: crate::logging::LogFormat,
    /// Least severe level logged: `error`, `warn`, `info` (default), `debug` (one event per
    /// request), `trace` (§12.8).
    #[serde(default)]
    pub log_level: crate::logging::LogLevel,
    /// Decompressed TFHE server keys kept at once (about 172 MiB each; §16.3).
    #[serde(default = "default_fhe_keys")]
    pub fhe_max_keys: usize,
    /// How a reply proves that its receipt is in the log (§18.11.3): `promise` (default: the
    /// signed promise of the current 5 s window, one signature per window, which the client
    /// upgrades after its deadline) or `inclusion` (an inclusion receipt in the receipt's
    /// header 394 at once, one signature per group commit).
    #[serde(default)]
    pub log_replies: LogReplies,
    /// Sign the receipts of plain inferences that one group commit carries under one
    /// signature, as batch receipts (§12.4.2; default `true`, with `log_replies = "promise"`);
    /// `false` signs every receipt alone.
    #[serde(default = "default_true")]
    pub sign_in_groups: bool,
    /// Seconds between two fetches of every peer's tree head, kept and served as witnessed
    /// heads (§18.11.6); 0 turns gossip off.
    #[serde(default = "default_gossip")]
    pub gossip_secs: u64,
    // The keys below exist only in builds with the `test-util` feature (the
    // `quorate-adversary` binary); other builds refuse them (`ConfigError::TestOnlyKey`).
    /// Test harness only: milliseconds to wait before answering an inference, so tests can
    /// stop a node in the middle of a request. Never set in production.
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_delay_ms: u64,
    /// Test harness only: make this node lie (`noise:1e-3`, `sign_flip`, `stale`, `replay`,
    /// `sign_other`, `garbage`; see `mesh::misbehave`). Never set in production.
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_misbehave: Option<String>,
    /// Test harness only: restrict `test_misbehave` to the model with this file name.
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_misbehave_model: Option<String>,
    /// Test harness only: exit the process on receiving this ensemble round (0..=4).
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_exit_at_round: Option<u8>,
    /// Test harness only: send a bad masked input (`malformed`, `oversized`, `short`).
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_tamper_masked: Option<String>,
    /// Test harness only: answer inference jobs without appending their receipts to the
    /// audit log (the reply still carries a promise or a forged inclusion receipt).
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_omit_from_log: bool,
    /// Test harness only: answer head requests from the roster member of this name with a
    /// head over another root (a split view, §18.7).
    #[cfg(feature = "test-util")]
    #[serde(default)]
    pub test_split_view_for: Option<String>,
}

/// How a reply proves inclusion of its receipt (§18.11.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogReplies {
    /// The promise (§18.6) of the window the receipt was issued in: heads are signed, not
    /// leaves.
    #[default]
    Promise,
    /// An inclusion receipt in header 394 under the statement of the receipt's group commit.
    Inclusion,
}

/// A configuration the node refuses before reading it field by field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `test_*` key (a test-harness setting that makes a node lie, stall, crash or tamper)
    /// in a build without the `test-util` feature.
    #[error(
        "config key `{key}` is a test-harness setting, and this build lacks the test-util \
         feature: a `quorate` node never misbehaves on request. Remove the key, or run the \
         node with the test-only `quorate-adversary` binary (cargo build -p quorate-adversary)"
    )]
    TestOnlyKey {
        /// The key found.
        key: String,
    },
}

/// The `test_*` keys of a configuration text, in file order.
fn test_keys(text: &str) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = toml::from_str(text)?;
    Ok(table
        .keys()
        .filter(|k| k.starts_with("test_"))
        .cloned()
        .collect())
}

fn default_providers() -> Vec<String> {
    vec!["cpu".into()]
}
fn default_fhe_keys() -> usize {
    2
}
fn default_concurrency() -> u64 {
    8
}
fn default_threads() -> usize {
    1
}
fn default_max_elements() -> u64 {
    1 << 20
}
fn default_max_request() -> u32 {
    4 << 20
}
fn default_in_flight() -> u64 {
    64 << 20
}
/// Longest interval between two looks at the roster file.
pub const MAX_ROSTER_RELOAD_SECS: u64 = 86_400;

fn default_true() -> bool {
    true
}

fn default_gossip() -> u64 {
    30
}
fn default_roster_reload() -> u64 {
    5
}
fn default_timeout() -> u64 {
    30
}

impl NodeConfig {
    /// Reads and validates a configuration file, resolving relative paths.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        if !cfg!(feature = "test-util") {
            let keys = test_keys(&text).with_context(|| format!("config {}", path.display()))?;
            if let Some(key) = keys.into_iter().next() {
                return Err(anyhow::Error::new(ConfigError::TestOnlyKey { key })
                    .context(format!("config {}", path.display())));
            }
        }
        let mut cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.key,
            &mut cfg.roster,
            &mut cfg.admin,
            &mut cfg.models,
            &mut cfg.audit_log,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.provider_list()?;
        anyhow::ensure!(cfg.max_concurrent >= 1, "max_concurrent must be at least 1");
        anyhow::ensure!(
            cfg.max_in_flight_bytes >= u64::from(cfg.max_request_bytes),
            "max_in_flight_bytes ({}) must be at least max_request_bytes ({})",
            cfg.max_in_flight_bytes,
            cfg.max_request_bytes
        );
        anyhow::ensure!(
            cfg.roster_reload_secs <= MAX_ROSTER_RELOAD_SECS,
            "roster_reload_secs must be at most {MAX_ROSTER_RELOAD_SECS} (one day); 0 turns polling off"
        );
        Ok(cfg)
    }

    /// The parsed provider preference list.
    pub fn provider_list(&self) -> anyhow::Result<Vec<Provider>> {
        self.providers
            .iter()
            .map(|p| Provider::parse(p).map_err(anyhow::Error::msg))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"n\"\nkey = \"k\"\nroster = \"r.cose\"\nadmin = \"a.pub\"\n\
        listen = \"127.0.0.1:0\"\nmodels = \"m\"\naudit_log = \"a.qlog\"\n";

    fn load(extra: &str) -> anyhow::Result<NodeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
        NodeConfig::load(&path)
    }

    #[test]
    fn roster_reload_interval_defaults_to_five_seconds_and_is_bounded() {
        assert_eq!(load("").unwrap().roster_reload_secs, 5);
        assert_eq!(
            load("roster_reload_secs = 0\n").unwrap().roster_reload_secs,
            0
        );
        let err = load("roster_reload_secs = 86401\n").unwrap_err();
        assert!(format!("{err:#}").contains("roster_reload_secs"), "{err:#}");
        let err = load("roster_reload = 5\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    const TEST_KEYS: [&str; 5] = [
        "test_delay_ms = 3000\n",
        "test_misbehave = \"noise:1e-3\"\n",
        "test_misbehave_model = \"stage-2.onnx\"\n",
        "test_exit_at_round = 2\n",
        "test_tamper_masked = \"short\"\n",
    ];

    #[cfg(not(feature = "test-util"))]
    #[test]
    #[allow(clippy::panic)]
    fn a_build_without_test_util_refuses_every_test_key_by_name() {
        for line in TEST_KEYS {
            let err = load(line).unwrap_err();
            let key = line.split(' ').next().unwrap();
            match err.downcast_ref::<ConfigError>() {
                Some(ConfigError::TestOnlyKey { key: k }) => assert_eq!(k, key),
                other => panic!("{line}: {other:?} ({err:#})"),
            }
            let text = format!("{err:#}");
            assert!(text.contains(key), "{text}");
            assert!(text.contains("lacks the test-util feature"), "{text}");
        }
        // A commented-out key is no key.
        assert!(load("# test_misbehave = 1\n").is_ok());
    }

    #[cfg(feature = "test-util")]
    #[test]
    fn a_test_util_build_reads_the_test_keys() {
        for line in TEST_KEYS {
            load(line).unwrap();
        }
        assert_eq!(load(TEST_KEYS[3]).unwrap().test_exit_at_round, Some(2));
    }
}
