//! `quorate node`: serve models to the mesh (§12).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use quorate_node::mesh::config::NodeConfig;
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
  providers = [\"openvino:NPU\", \"xnnpack\", \"cpu\"]   # preference order; cpu is the fallback\n\
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
    #[arg(long, value_name = "FILE", required_unless_present = "list_providers")]
    pub config: Option<PathBuf>,
    /// Print the execution providers this machine's ONNX Runtime offers, and exit.
    #[arg(long)]
    pub list_providers: bool,
}

/// Runs `quorate node`.
pub fn run(args: &NodeArgs) -> anyhow::Result<ExitCode> {
    if args.list_providers {
        quorate_runtime::environment()?;
        println!("ONNX Runtime: {}", quorate_runtime::runtime_version());
        for p in Provider::all() {
            match p.availability() {
                Ok(()) => println!("  {:<14} available ({})", p.label(), p.ort_name()),
                Err(why) => println!("  {:<14} unavailable: {why}", p.label()),
            }
        }
        return Ok(ExitCode::SUCCESS);
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
