//! `quorate log`: ask nodes about their transparency logs (§18.12) and monitor them (§18.13).

pub mod monitor;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_node::files::{read_limited, write_atomic};
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::roster::Entry;
use quorate_protocol::time::utc;
use quorate_protocol::tlog;
use quorate_verify::tlog::{
    verify_consistency_receipt, verify_inclusion, verify_promise, verify_tree_head,
};

use super::session::{MeshArgs, Session};

/// `quorate log` subcommands.
#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Fetch a node's latest signed tree head (§18.3), verify it and write it.
    Head(HeadArgs),
    /// Fetch the inclusion receipt of a receipt (§18.4), verify it and write the receipt
    /// carrying it.
    Prove(ProveArgs),
    /// Fetch the consistency receipt between two sizes of a node's log (§18.5) and verify it.
    Consistency(ConsistencyArgs),
    /// Check every node's log for truncation, rewrites and split views (§18.13).
    Monitor(monitor::MonitorArgs),
}

/// The node a request goes to.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// Roster, roster authority and this client's key.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The node's name in the roster.
    #[arg(long, value_name = "NAME")]
    pub node: String,
}

/// Arguments of `quorate log head`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  quorate log head --roster roster.cose --admin admin.pub --key client.key \\\n      --node node1 --out node1.head\n\n\
Check an audit log against the head with `quorate verify LOG --head node1.head`."
)]
pub struct HeadArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Write the verified head here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `quorate log prove`.
#[derive(clap::Args)]
#[command(
    after_help = "The leaf is the receipt as the node signed it (§18.1), so a receipt that already\n\
carries inclusion receipts is proved again against the node's heads.\n\n\
Example:\n  quorate log prove --roster roster.cose --admin admin.pub --key client.key \\\n      --node node1 --receipt out/receipt.cose --out out/receipt.proved.cose"
)]
pub struct ProveArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The receipt to prove.
    #[arg(long, value_name = "FILE")]
    receipt: PathBuf,
    /// Prove against the head of this many leaves (default: the first head containing it).
    #[arg(long, value_name = "N")]
    size: Option<u64>,
    /// The node's promise for this receipt (`receipt.promise` from `quorate infer`): also
    /// check that the proof keeps it (§18.8.4).
    #[arg(long, value_name = "FILE")]
    promise: Option<PathBuf>,
    /// Write the receipt carrying the inclusion receipt in header 394 here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `quorate log consistency`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  quorate log consistency --roster roster.cose --admin admin.pub --key client.key \\\n      --node node1 --old 10 --new 42 --out node1-10-42.consistency"
)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The older tree size (at least 1).
    #[arg(long, value_name = "N")]
    old: u64,
    /// The newer tree size.
    #[arg(long, value_name = "N")]
    new: u64,
    /// Write the verified consistency receipt here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn node_of(session: &Session, name: &str) -> anyhow::Result<Entry> {
    session
        .roster
        .by_name(name)
        .cloned()
        .with_context(|| format!("no node {name:?} in the roster"))
}

/// Runs `quorate log`.
pub fn run(cmd: &LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Head(a) => head(a),
        LogCommand::Prove(a) => prove(a),
        LogCommand::Consistency(a) => consistency(a),
        LogCommand::Monitor(a) => monitor::run(a),
    }
}

fn head(args: &HeadArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.node.mesh)?;
    let node = node_of(&session, &args.node.node)?;
    let (head, witnessed) = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(10))?;
        let r = client.log_head(&node).await;
        client.close();
        r
    })?;
    let h = verify_tree_head(&head, &node.key)
        .with_context(|| format!("node {:?} sent a head that does not verify", node.name))?;
    println!(
        "head      {}: {} leaves, root {}, signed {}",
        node.name,
        h.size,
        hex::encode(h.root),
        utc(h.issued_at)
    );
    println!("witnessed {} peer heads", witnessed.len());
    if let Some(out) = &args.out {
        write_atomic(out, &head, 0o644)?;
        println!("wrote     {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn prove(args: &ProveArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.node.mesh)?;
    let node = node_of(&session, &args.node.node)?;
    let receipt = read_limited(&args.receipt, MAX_RECEIPT_LEN as u64)?;
    let leaf = tlog::receipt_leaf_hash(&receipt)
        .with_context(|| format!("{} is not a receipt", args.receipt.display()))?;
    let inclusion = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(10))?;
        let r = client.log_prove(&node, leaf, args.size).await;
        client.close();
        r
    })?;
    let v = verify_inclusion(&inclusion, &leaf, &node.key).with_context(|| {
        format!(
            "node {:?} sent an inclusion receipt that does not verify",
            node.name
        )
    })?;
    println!(
        "included  leaf {} of {} in {}'s log, signed {}",
        v.leaf_index,
        v.tree_size,
        node.name,
        utc(v.issued_at)
    );
    if let Some(path) = &args.promise {
        let promise = read_limited(path, tlog::MAX_SIGNED_DOC_LEN as u64)?;
        let kept =
            verify_promise(&promise, &receipt, &inclusion, &node.key).with_context(|| {
                format!(
                    "node {:?} did not keep its promise {}",
                    node.name,
                    path.display()
                )
            })?;
        println!(
            "kept      the promise for [{}, {}) by {}",
            kept.promise.from,
            kept.promise.until,
            utc(kept.promise.deadline)
        );
    }
    if let Some(out) = &args.out {
        let mut list = tlog::inclusion_receipts_of(&receipt).unwrap_or_default();
        if list.len() >= tlog::MAX_ATTACHED_RECEIPTS {
            list.remove(0);
        }
        list.push(inclusion);
        write_atomic(
            out,
            &tlog::attach_inclusion_receipts(&receipt, &list)?,
            0o644,
        )?;
        println!("wrote     {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn consistency(args: &ConsistencyArgs) -> anyhow::Result<ExitCode> {
    if args.old == 0 || args.old > args.new {
        bail!("--old must be at least 1 and at most --new");
    }
    let session = Session::open(&args.node.mesh)?;
    let node = node_of(&session, &args.node.node)?;
    let receipt = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(10))?;
        let r = client.log_consistency(&node, args.old, args.new).await;
        client.close();
        r
    })?;
    let v = verify_consistency_receipt(&receipt, &node.key).with_context(|| {
        format!(
            "node {:?} sent a consistency receipt that does not verify",
            node.name
        )
    })?;
    if (v.old_size, v.new_size) != (args.old, args.new) {
        bail!(
            "node {:?} proved sizes {} → {}, not the {} → {} asked",
            node.name,
            v.old_size,
            v.new_size,
            args.old,
            args.new
        );
    }
    println!(
        "consistent {}: {} leaves (root {}) are a prefix of {} (root {})",
        node.name,
        v.old_size,
        hex::encode(v.old_root),
        v.new_size,
        hex::encode(v.new_root)
    );
    if let Some(out) = &args.out {
        write_atomic(out, &receipt, 0o644)?;
        println!("wrote      {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
