//! `quorate node`: serve models to the mesh (§12).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use quorate_node::mesh::config::NodeConfig;
use quorate_runtime::plugin::{self, openvino_plugin};
use quorate_runtime::providers::Provider;

/// Arguments of `quorate node`.
#[derive(clap::Args)]
#[command(after_help = "node.toml (paths relative to the file):\n\
  name = \"node-1\"               # this node's name in the roster\n\
  key = \"keys/node-1.key\"       # its secret key (mode 0600)\n\
  roster = \"roster.cose\"        # signed roster\n\
  admin = \"keys/admin.key.pub\"  # roster authority's public key\n\
  listen = \"127.0.0.1:4701\"\n\
  models = \"models\"             # every *.onnx in it is served, addressed by SHA-256\n\
  providers = [\"openvino:CPU:f32\", \"xnnpack\", \"cpu\"]   # preference order; cpu is the fallback\n\
                                 # openvino:DEVICE:PRECISION (CPU|GPU|NPU, f32|bf16|f16; §12.2.1)\n\
  audit_log = \"audit/node-1.qlog\"\n\
  max_concurrent = 8             # more concurrent requests get a Busy error\n\
  roster_reload_secs = 5         # look at the roster file this often; 0: only on SIGHUP\n\n\
SIGINT or SIGTERM stops the node after in-flight requests finish; every receipt is in the\n\
audit log (fsynced) before its reply is sent. `quorate verify audit/node-1.qlog --trust ...`\n\
checks the log.\n\n\
SIGHUP, or a change of the roster file, reloads the roster (§10.3): a roster that verifies and\n\
has a higher serial replaces the one in use, and open connections of members it removed are\n\
closed; an older, same-serial or invalid roster is refused with a log line and the node keeps\n\
the one it has. Once the roster in use has expired, or no longer lists this node with its key,\n\
the node refuses new connections and answers requests with no_valid_roster (12) until a newer\n\
roster is loaded; it does not exit.")]
pub struct NodeArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["list_providers", "check_config"])]
    pub config: Option<PathBuf>,
    /// Check this configuration and everything it names (keys and their permissions, the
    /// roster and this node's entry, the listen address, providers, models, the audit log)
    /// as the node would at start, without serving or writing anything; exits 1 if a check
    /// fails.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "list_providers"])]
    pub check_config: Option<PathBuf>,
    /// Print the execution providers this machine offers, with their devices (or why each is
    /// unavailable), and exit. With --config, also what the node's preference list would use.
    #[arg(long)]
    pub list_providers: bool,
}

/// `quorate node --list-providers [--config FILE]` (§12.2).
fn list_providers(config: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    quorate_runtime::environment()?;
    println!("ONNX Runtime: {}", quorate_runtime::runtime_version());
    match openvino_plugin() {
        Ok(p) => println!(
            "OpenVINO plugin: {} ({})",
            p.version.as_deref().unwrap_or("unknown version"),
            p.path.display()
        ),
        Err(why) => println!("OpenVINO plugin: not loaded: {why}"),
    }
    println!("devices:");
    for d in plugin::devices()? {
        println!("  {:<32} {} {} (id {})", d.ep, d.vendor, d.kind, d.id);
    }
    println!("providers:");
    let mut listed = Provider::all();
    if let Some(path) = config {
        let cfg = NodeConfig::load(path)?;
        listed = cfg.provider_list()?;
        println!("  (preference list of {})", path.display());
    }
    for p in &listed {
        match p.availability() {
            Ok(()) => println!(
                "  {:<20} available, receipts name {}",
                p.label(),
                p.receipt_name()
            ),
            Err(why) => println!(
                "  {:<20} unavailable: {}",
                p.label(),
                why.replace('\n', "\n      ")
            ),
        }
    }
    if config.is_some() && !listed.contains(&Provider::Cpu) {
        println!(
            "  {:<20} available (always the last fallback)",
            Provider::Cpu.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `quorate node`.
pub fn run(args: &NodeArgs) -> anyhow::Result<ExitCode> {
    if args.list_providers {
        return list_providers(args.config.as_ref());
    }
    if let Some(path) = &args.check_config {
        return super::node_check::check_config(path);
    }
    let path = args.config.as_ref().context("--config is required")?;
    let cfg = NodeConfig::load(path)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(quorate_node::mesh::server::serve(cfg))?;
    Ok(ExitCode::SUCCESS)
}
