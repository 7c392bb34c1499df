//! `quorate-adversary node --config FILE`: runs a node as `quorate node` does, built with the
//! `test-util` feature of quorate-node, so it honours the `test_*` keys of its configuration
//! (`test_misbehave`, `test_misbehave_model`, `test_delay_ms`, `test_exit_at_round`,
//! `test_tamper_masked`; see `quorate_node::mesh::misbehave`). The demo's poisoning step, the
//! poisoning bench (§14.8) and the end-to-end tests launch it for the nodes meant to misbehave;
//! it is never shipped as a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use quorate_node::mesh::config::NodeConfig;

const USAGE: &str = "usage: quorate-adversary node --config FILE\n\n\
A test-only quorate node that obeys the test_* keys of its node.toml (it lies, stalls, crashes\n\
or tampers on request). Never run it as a real node.";

fn config_path(args: &[String]) -> anyhow::Result<PathBuf> {
    match args {
        [node, flag, path] if node == "node" && flag == "--config" => Ok(PathBuf::from(path)),
        _ => anyhow::bail!("{USAGE}"),
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = NodeConfig::load(&config_path(&args)?)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(quorate_node::mesh::server::serve(cfg))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
