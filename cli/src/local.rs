//! A local mesh of `quorate node` processes on loopback (used by `quorate demo` and tests):
//! fresh keys, a fresh signed roster, one process per node, all stopped on drop.
//!
//! A node whose configuration carries test-harness keys (`test_*`: lie, stall, crash, tamper)
//! runs as `quorate-adversary node` instead, the test-only binary built beside `quorate`:
//! the `quorate` binary itself refuses those keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::governance::Governance;
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;

use quorate_node::clock::unix_now;
use quorate_node::files::{write_atomic, write_keypair};

mod ports;
mod startup;

use startup::wait_ready;

pub use ports::loopback_port;

/// A running local mesh.
pub struct LocalMesh {
    /// Its directory (keys/, roster.cose, admin.pub, nodes/).
    pub dir: PathBuf,
    /// The signed roster.
    pub roster: Roster,
    /// The client's secret key (in the roster with role client).
    pub client_key: SecretKey,
    /// Path of the client's key file.
    pub client_key_path: PathBuf,
    /// Node processes by name.
    pub nodes: Vec<(String, Child)>,
}

/// Name of the test-only node binary that honours the `test_*` configuration keys.
pub const ADVERSARY_BIN: &str = "quorate-adversary";

/// Whether a node.toml fragment sets a test-harness key (`test_*`), which only
/// `quorate-adversary` honours.
pub fn has_test_keys(config: &str) -> bool {
    config.lines().any(|l| l.trim_start().starts_with("test_"))
}

/// The `quorate-adversary` binary beside the `quorate` binary `exe`, or an error telling how
/// to build it.
pub fn adversary_exe(exe: &Path) -> anyhow::Result<PathBuf> {
    let path = exe.with_file_name(format!("{ADVERSARY_BIN}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return Ok(path);
    }
    let profile = if exe.parent().is_some_and(|d| d.ends_with("release")) {
        " --release"
    } else {
        ""
    };
    bail!(
        "a misbehaving node runs as the test-only binary {ADVERSARY_BIN}, which is not built \
         beside {} (the quorate binary never misbehaves); build it with \
         `cargo build{profile} -p {ADVERSARY_BIN}` (./scripts/demo and ./scripts/test do)",
        exe.display()
    )
}

/// The bundled sample in `models` (`samples/features.npy`, one patient's features) as the
/// tensor `features`, and the SHA-256 of `mlp.onnx` that takes it.
pub fn mlp_sample(models: &Path) -> anyhow::Result<(Tensor, [u8; 32])> {
    let npy = models.join("samples/features.npy");
    let bytes = std::fs::read(&npy).with_context(|| format!("cannot read {}", npy.display()))?;
    let input = parse_npy(&bytes, "features")?;
    let mlp = models.join("mlp.onnx");
    let model = std::fs::read(&mlp).with_context(|| format!("cannot read {}", mlp.display()))?;
    Ok((input, sha256(&model)))
}

/// What [`LocalMesh::start_custom`] varies per node, and the roster's governance.
pub struct Custom<'a> {
    /// Appended to node `i`'s node.toml.
    pub extra_config: &'a dyn Fn(usize) -> String,
    /// Model files node `i` serves besides the bundled ones (listed in the roster too).
    pub extra_models: &'a dyn Fn(usize) -> Vec<PathBuf>,
    /// Node `i`'s execution providers, in preference order (§12.2), also listed in its
    /// roster entry.
    pub providers: &'a dyn Fn(usize) -> Vec<String>,
    /// The governance signed into the roster (§10.6).
    pub governance: Governance,
    /// Extra environment variables of node `i`'s process (e.g. a shifted clock).
    pub env: &'a dyn Fn(usize) -> Vec<(String, String)>,
    /// Where node `i` runs; `None`: on a free loopback port, advertised as such.
    pub placement: &'a dyn Fn(usize) -> Option<Placement>,
}

impl Default for Custom<'_> {
    /// Loopback nodes serving the bundled models on XNNPACK then CPU, default governance.
    fn default() -> Self {
        Self {
            extra_config: &|_| String::new(),
            extra_models: &|_| Vec::new(),
            providers: &|_| vec!["xnnpack".to_string(), "cpu".to_string()],
            governance: Governance::default(),
            env: &|_| Vec::new(),
            placement: &|_| None,
        }
    }
}

/// Where a node listens, what the roster advertises for it, and how its process is started:
/// a node behind a relay or a NAT listens on one address and is reached at another.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The node's `listen` address.
    pub listen: SocketAddr,
    /// The address the roster lists for it (what clients connect to).
    pub advertise: SocketAddr,
    /// A command the node's command line is appended to (e.g. `ip netns exec NS`); empty
    /// to start the node directly.
    pub prefix: Vec<String>,
}

/// Which bundled models node `i` (0-based) of `n` serves: every node serves mlp and logistic,
/// hospital-(i+1) when it exists, and the encrypted-inference model qlinear-((i % 3) + 1)
/// when it exists (§16.1).
fn models_for(i: usize, models: &Path) -> Vec<PathBuf> {
    let mut m = vec![models.join("mlp.onnx"), models.join("logistic.onnx")];
    let h = models.join(format!("hospital-{}.onnx", i + 1));
    if h.is_file() {
        m.push(h);
    }
    let q = models.join(format!("qlinear-{}.json", i % 3 + 1));
    if q.is_file() {
        m.push(q);
    }
    m
}

impl LocalMesh {
    /// Creates keys, roster and configs for `n` nodes under `dir`, and starts them.
    pub fn start(dir: &Path, n: usize, models: &Path, exe: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, n, models, exe, "")
    }

    /// Like [`Self::start`], appending `extra_config` to every node.toml.
    pub fn start_with(
        dir: &Path,
        n: usize,
        models: &Path,
        exe: &Path,
        extra_config: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_each(dir, n, models, exe, &|_| extra_config.to_string())
    }

    /// Like [`Self::start`], appending `extra_config(i)` to the node.toml of node `i`
    /// (0-based; node `i` is named `node-{i+1}`), so one node can differ from the rest.
    pub fn start_with_each(
        dir: &Path,
        n: usize,
        models: &Path,
        exe: &Path,
        extra_config: &dyn Fn(usize) -> String,
    ) -> anyhow::Result<Self> {
        Self::start_with_models(dir, n, models, exe, extra_config, &|_| Vec::new())
    }

    /// Like [`Self::start_with_each`], node `i` also serving the model files `extra_models(i)`
    /// (e.g. pipeline stage models from `quorate split`, §13); the roster lists them too.
    /// File names must not collide with the bundled models'.
    pub fn start_with_models(
        dir: &Path,
        n: usize,
        models: &Path,
        exe: &Path,
        extra_config: &dyn Fn(usize) -> String,
        extra_models: &dyn Fn(usize) -> Vec<PathBuf>,
    ) -> anyhow::Result<Self> {
        Self::start_custom(
            dir,
            n,
            models,
            exe,
            &Custom {
                extra_config,
                extra_models,
                ..Custom::default()
            },
        )
    }

    /// The most general start: per-node configuration, models and providers, and the
    /// roster's governance (§10.6).
    pub fn start_custom(
        dir: &Path,
        n: usize,
        models: &Path,
        exe: &Path,
        custom: &Custom<'_>,
    ) -> anyhow::Result<Self> {
        let Custom {
            extra_config,
            extra_models,
            providers,
            governance,
            env,
            placement,
        } = custom;
        anyhow::ensure!((1..=32).contains(&n), "a local mesh has 1 to 32 nodes");
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        let admin = SecretKey::generate()?;
        write_keypair(&keys.join("admin.key"), &admin, true)?;
        write_atomic(
            &dir.join("admin.pub"),
            admin.public_key().to_pem()?.as_bytes(),
            0o644,
        )?;
        let client_key = SecretKey::generate()?;
        let client_key_path = keys.join("client.key");
        write_keypair(&client_key_path, &client_key, true)?;
        let mut entries = vec![Entry {
            name: "client".into(),
            key: client_key.public_key(),
            role: Role::Client,
            addresses: vec![],
            models: vec![],
            providers: vec![],
        }];
        let mut configs = Vec::new();
        for i in 0..n {
            let name = format!("node-{}", i + 1);
            let key = SecretKey::generate()?;
            let key_path = keys.join(format!("{name}.key"));
            write_keypair(&key_path, &key, true)?;
            let node_dir = dir.join("nodes").join(&name);
            let model_dir = node_dir.join("models");
            std::fs::create_dir_all(&model_dir)?;
            let mut digests = Vec::new();
            for m in models_for(i, models).into_iter().chain(extra_models(i)) {
                let bytes = std::fs::read(&m)
                    .with_context(|| format!("cannot read bundled model {}", m.display()))?;
                digests.push(sha256(&bytes));
                let file = m.file_name().context("model without a name")?;
                std::fs::write(model_dir.join(file), &bytes)?;
            }
            let (addr, advertise, prefix) = match placement(i) {
                Some(p) => (p.listen, p.advertise, p.prefix),
                None => {
                    let a = loopback_port()?;
                    (a, a, Vec::new())
                }
            };
            entries.push(Entry {
                name: name.clone(),
                key: key.public_key(),
                role: Role::Node,
                addresses: vec![advertise.to_string()],
                models: digests,
                providers: providers(i),
            });
            let cfg = node_dir.join("node.toml");
            let extra = extra_config(i);
            // Four job slots unless the caller sets its own (a key may appear only once).
            let slots = if extra.contains("max_concurrent") {
                ""
            } else {
                "max_concurrent = 4\n"
            };
            let text = format!(
                "name = \"{name}\"\nkey = \"{}\"\nroster = \"{}\"\nadmin = \"{}\"\nlisten = \"{addr}\"\nmodels = \"models\"\n\
                 providers = {:?}\naudit_log = \"audit.qlog\"\n{slots}",
                key_path.display(),
                dir.join("roster.cose").display(),
                dir.join("admin.pub").display(),
                providers(i),
            );
            let program = if has_test_keys(&extra) {
                adversary_exe(exe)?
            } else {
                exe.to_path_buf()
            };
            std::fs::write(&cfg, text + &extra)?;
            configs.push((name, cfg, program, env(i), prefix));
        }
        let now = unix_now();
        let roster = Roster {
            governance: governance.clone(),
            mesh: "quorate-demo".into(),
            serial: 1,
            issued_at: now,
            expires_at: now + 24 * 3600,
            entries,
        };
        write_atomic(&dir.join("roster.cose"), &roster.sign(&admin)?, 0o644)?;
        let mut mesh = Self {
            dir: dir.to_path_buf(),
            roster,
            client_key,
            client_key_path,
            nodes: Vec::new(),
        };
        for (name, cfg, program, vars, prefix) in configs {
            // With a prefix, the node's command line is its argument list: `ip netns exec`
            // and the like replace themselves with the node, so the child is the node.
            let mut command = match prefix.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(&program);
                    c
                }
                None => Command::new(&program),
            };
            let child = command
                .args(["node", "--config"])
                .arg(&cfg)
                .envs(vars)
                .stdout(Stdio::piped())
                .stderr(Stdio::from(std::fs::File::create(
                    cfg.with_file_name("node.log"),
                )?))
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()))?;
            mesh.nodes.push((name, child));
        }
        for (name, child) in &mut mesh.nodes {
            wait_ready(name, child, &node_log(dir, name), Duration::from_secs(60))?;
        }
        Ok(mesh)
    }

    /// The roster entries of the nodes, in order (`node-1`, `node-2`, …).
    pub fn node_entries(&self) -> anyhow::Result<Vec<Entry>> {
        (1..=self.nodes.len())
            .map(|i| self.roster.by_name(&format!("node-{i}")).cloned())
            .collect::<Option<_>>()
            .context("roster incomplete")
    }

    /// The node log of `name`.
    pub fn log_of(&self, name: &str) -> PathBuf {
        node_log(&self.dir, name)
    }

    /// The audit log of `name`.
    pub fn audit_of(&self, name: &str) -> PathBuf {
        self.dir.join("nodes").join(name).join("audit.qlog")
    }

    /// Stops one node: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, name: &str, grace: Duration) -> anyhow::Result<()> {
        if let Some((_, child)) = self.nodes.iter_mut().find(|(n, _)| n == name) {
            stop_child(child, grace)?;
        }
        Ok(())
    }

    /// Starts a stopped node again with `program` (the `quorate` or adversary binary) and
    /// its configuration file, appending `extra_config` to it first; waits until it listens.
    pub fn restart(
        &mut self,
        name: &str,
        program: &Path,
        extra_config: &str,
    ) -> anyhow::Result<()> {
        let cfg = self.dir.join("nodes").join(name).join("node.toml");
        if !extra_config.is_empty() {
            let mut text = std::fs::read_to_string(&cfg)?;
            text.push('\n');
            text.push_str(extra_config);
            std::fs::write(&cfg, text)?;
        }
        let mut child = Command::new(program)
            .args(["node", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(cfg.with_file_name("node.log"))?,
            ))
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        wait_ready(
            name,
            &mut child,
            &cfg.with_file_name("node.log"),
            Duration::from_secs(60),
        )?;
        match self.nodes.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = child,
            None => self.nodes.push((name.to_string(), child)),
        }
        Ok(())
    }

    /// Kills one node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some((_, child)) = self.nodes.iter_mut().find(|(n, _)| n == name) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops every node gracefully.
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        for (_, child) in &mut self.nodes {
            stop_child(child, Duration::from_secs(10))?;
        }
        Ok(())
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Where node `name` of the mesh in `dir` writes its standard error.
fn node_log(dir: &Path, name: &str) -> PathBuf {
    dir.join("nodes").join(name).join("node.log")
}

fn stop_child(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_configs_with_test_keys_need_the_adversary() {
        assert!(!has_test_keys(""));
        assert!(!has_test_keys("intra_threads = 2\n# a test_ comment\n"));
        assert!(has_test_keys(
            "intra_threads = 2\ntest_misbehave = \"garbage\"\n"
        ));
        assert!(has_test_keys("  test_delay_ms = 10\n"));
    }

    #[test]
    fn a_missing_adversary_binary_is_a_clear_error_saying_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir_all(&release).unwrap();
        let err = adversary_exe(&release.join("quorate")).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("cargo build --release -p quorate-adversary"),
            "{text}"
        );
        let adversary = release.join(format!("{ADVERSARY_BIN}{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&adversary, b"").unwrap();
        assert_eq!(adversary_exe(&release.join("quorate")).unwrap(), adversary);
    }
}
