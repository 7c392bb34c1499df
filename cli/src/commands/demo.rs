//! `quorate demo`: the main job, end to end: a local mesh of node processes on loopback.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::roster::Role;
use quorate_protocol::tensor_file::{parse_npy, salted_tensors_json};

use crate::local::LocalMesh;
use crate::verify_files::{collect_files, verify_files};
use quorate_node::files::write_atomic;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::client::fresh_request;
use quorate_verify::TrustStore;
use quorate_verify::receipts::human_line;

/// Arguments of `quorate demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Starts N `quorate node` processes on 127.0.0.1 with fresh Ed25519 keys and a fresh roster\n\
signed by a fresh roster authority, each serving bundled breast-cancer models (models/README.md)\n\
with the real ONNX Runtime. A client runs jobs over QUIC (mutual TLS 1.3, keys pinned from the\n\
roster), checks every receipt, shows that a stranger is refused, stops the nodes gracefully and\n\
verifies every receipt and every node's audit log offline, as an auditor would. With --fhe it\n\
also runs an encrypted (TFHE) ensemble of up to three members and decrypts only their sum; that\n\
part takes about a minute, so it is off by default.\n\n\
Example:\n  quorate demo --nodes 3 --keep demo-out\n  quorate demo --nodes 3 --fhe\n  quorate verify demo-out/receipts --roster demo-out/roster.cose --admin demo-out/admin.pub"
)]
pub struct DemoArgs {
    /// Number of node processes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: u16,
    /// Keep the roster, keys, receipts and logs in DIR (otherwise a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
    /// Also run an encrypted (TFHE) ensemble; adds about a minute (keys are large, evaluation slow).
    #[arg(long)]
    pub fhe: bool,
}

/// Runs `quorate demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir: &Path = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path()
        }
    };
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    println!(
        "quorate demo: a mesh of {} node processes on loopback\n",
        args.nodes
    );
    let n = usize::from(args.nodes);
    // Nodes fetch each other's heads every 2 s, so the monitor has witnessed heads to compare.
    let mut mesh = LocalMesh::start_with_each(dir, n, &args.models, &exe, &|i| {
        format!(
            "gossip_secs = 2\n{}",
            super::demo_verified::node_config(i, n)
        )
    })?;
    println!(
        "1. roster signed by a fresh roster authority ({}), listing:",
        dir.join("admin.pub").display()
    );
    for e in &mesh.roster.entries {
        let addr = e
            .addresses
            .first()
            .map_or(String::new(), |a| format!(" at {a}"));
        println!(
            "   {:<8} {:<6} key {}{addr}, {} models",
            e.name,
            e.role.name(),
            e.key.key_id(),
            e.models.len()
        );
    }

    let receipts = dir.join("receipts");
    std::fs::create_dir_all(&receipts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let monitor_state = dir.join("monitor");
    let outcome = rt.block_on(run_jobs(
        &mesh,
        &args.models,
        &receipts,
        &monitor_state,
        args.fhe,
    ));
    if let Err(e) = outcome {
        for (name, _) in &mesh.nodes {
            eprintln!("  (log of {name}: {})", mesh.log_of(name).display());
        }
        return Err(e);
    }

    mesh.stop_all()?;
    println!("5. every node stopped on SIGTERM after finishing its in-flight requests");

    let mut trust = TrustStore::default();
    for e in mesh.roster.entries.iter().filter(|e| e.role == Role::Node) {
        trust.add(e.key, e.name.clone());
    }
    let (_, mut files) =
        crate::verify_files::split_aggregates(collect_files(std::slice::from_ref(&receipts))?);
    let n_receipts = files.len();
    files.extend(mesh.nodes.iter().map(|(name, _)| mesh.audit_of(name)));
    let reports = verify_files(&files, &trust, &[]);
    let failed: Vec<_> = reports.iter().filter(|r| r.failure.is_some()).collect();
    println!(
        "6. an auditor holding only the roster verifies offline: {} receipts and {} audit-log records, {} failures",
        n_receipts,
        reports.len() - n_receipts,
        failed.len()
    );
    if let Some(r) = reports.first() {
        println!("   {}", human_line(r));
    }
    for r in &failed {
        println!("   {}", human_line(r));
    }
    if !failed.is_empty() {
        bail!("{} receipts failed verification", failed.len());
    }
    // §18: each node signed a tree head over its audit log; the auditor checks that the log
    // reproduces it, so a log rewritten or cut after the fact would be caught.
    let logs: Vec<PathBuf> = mesh
        .nodes
        .iter()
        .map(|(name, _)| mesh.audit_of(name))
        .collect();
    // The heads each node left beside its log, and those the monitor kept: both are
    // signed by the node and both must match its log (§18.8.6).
    let heads: Vec<PathBuf> = logs
        .iter()
        .map(|l| quorate_node::audit::head_path_of(l))
        .chain(
            mesh.nodes
                .iter()
                .map(|(name, _)| monitor_state.join(format!("{name}.head"))),
        )
        .collect();
    let lines = crate::commands::verify_tlog::check_heads(&heads, &logs, &trust);
    println!(
        "7. each node's signed tree head (its transparency log, §18) matches its audit log: {} of {}",
        lines.iter().filter(|l| l.outcome.is_ok()).count(),
        lines.len()
    );
    for line in crate::commands::verify_tlog::human(&lines) {
        println!("   {line}");
    }
    if lines.is_empty() || lines.iter().any(|l| l.outcome.is_err()) {
        bail!("a node's audit log does not match its signed tree head");
    }
    println!("\nWhy this can be trusted:");
    println!(
        "  - only roster members could connect: TLS 1.3 with Ed25519 keys pinned from the signed roster, both ways;"
    );
    println!(
        "  - every result came with a receipt signed by the node that computed it, committing (salted) to the"
    );
    println!("    exact model, input and output; the client checked it before accepting anything;");
    println!(
        "  - each node appended every receipt to its audit log and fsynced it before replying."
    );
    if let Some(d) = &args.keep {
        println!(
            "\nKept in {}. Check again with:\n  quorate verify {} --roster {} --admin {}",
            d.display(),
            receipts.display(),
            d.join("roster.cose").display(),
            d.join("admin.pub").display()
        );
        if let (Some(log), Some(head)) = (logs.first(), heads.first()) {
            println!(
                "  quorate verify {} --head {} --roster {} --admin {}",
                log.display(),
                head.display(),
                d.join("roster.cose").display(),
                d.join("admin.pub").display()
            );
        }
        if let (Some(log), Some((name, _))) = (logs.first(), mesh.nodes.first()) {
            println!(
                "  quorate verify {} --head {} --roster {} --admin {}",
                log.display(),
                monitor_state.join(format!("{name}.head")).display(),
                d.join("roster.cose").display(),
                d.join("admin.pub").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Upgrades the promises of step 3 (§18.6) once their deadlines have passed and stores each
/// receipt with its inclusion receipt in place of the bare one.
async fn upgrade(
    client: &MeshClient,
    promised: &[(quorate_protocol::roster::Entry, Vec<u8>, Vec<u8>)],
    receipts: &Path,
) -> anyhow::Result<()> {
    if promised.is_empty() {
        return Ok(());
    }
    println!(
        "\n== the promises of step 3 upgraded: each node proves its receipt is in a tree it signed by the deadline"
    );
    let upgrades = promised
        .iter()
        .map(|(e, receipt, promise)| client.upgrade_promise(e, receipt, promise));
    for ((e, _, _), upgraded) in promised
        .iter()
        .zip(futures_util::future::join_all(upgrades).await)
    {
        let upgraded = upgraded?;
        write_atomic(
            &receipts.join(format!("mlp-{}.cose", e.name)),
            &upgraded,
            0o644,
        )?;
        let inc = quorate_verify::tlog::verify_receipt_inclusions(&upgraded, &e.key)?;
        if let Some(i) = inc.first() {
            println!(
                "   {:<8} promise kept: receipt is leaf {} of {}; stored with its inclusion receipt (header 394)",
                e.name, i.leaf_index, i.tree_size
            );
        }
    }
    Ok(())
}

/// One monitor sweep over every node; any problem or evidence fails the demo.
async fn monitor(client: &MeshClient, state: &Path, title: &str) -> anyhow::Result<()> {
    println!("{title}");
    let found = crate::commands::log::monitor::sweep(client, state).await?;
    for line in &found.lines {
        println!("   {line}");
    }
    if !found.problems.is_empty() || !found.evidence.is_empty() {
        bail!("the log monitor found problems: {:?}", found.problems);
    }
    Ok(())
}

async fn run_jobs(
    mesh: &LocalMesh,
    models: &Path,
    receipts: &Path,
    monitor_state: &Path,
    fhe: bool,
) -> anyhow::Result<()> {
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )?;
    println!("2. health of every node (over QUIC):");
    for e in mesh.roster.entries.iter().filter(|e| e.role == Role::Node) {
        let h = client.health(e).await?;
        let providers: std::collections::BTreeSet<&str> =
            h.providers.iter().map(String::as_str).collect();
        println!(
            "   {:<8} {} models on {:?}, {}/{} busy",
            e.name,
            h.models.len(),
            providers,
            h.in_flight,
            h.capacity
        );
    }

    let sample = parse_npy(
        &std::fs::read(models.join("samples/features.npy"))?,
        "features",
    )?;
    let mlp = sha256(&std::fs::read(models.join("mlp.onnx"))?);
    println!(
        "3. one patient's features through mlp.onnx on every node, each result checked on arrival:"
    );
    let mut promised = Vec::new();
    for e in mesh.roster.entries.iter().filter(|e| e.role == Role::Node) {
        let req = fresh_request(mlp, vec![sample.clone()], None)?;
        let (resp, payload) = client.infer(e, &req).await?;
        if let Some(p) = &resp.promise {
            promised.push((e.clone(), resp.receipt.clone(), p.clone()));
        }
        write_atomic(
            &receipts.join(format!("mlp-{}.cose", e.name)),
            &resp.receipt,
            0o644,
        )?;
        let doc = salted_tensors_json(&resp.outputs, resp.output_salts.as_deref());
        write_atomic(
            &receipts.join(format!("mlp-{}.outputs.json", e.name)),
            serde_json::to_vec_pretty(&doc)?.as_slice(),
            0o644,
        )?;
        let p = resp.outputs[0].to_f64_vec();
        println!(
            "   {:<8} P(malignant)={:.6} P(benign)={:.6}  receipt ok ({} on {})",
            e.name, p[0], p[1], payload.runtime, payload.provider
        );
    }
    println!(
        "   each node promised to log its receipt within seconds (one signed promise per 5 s window, §18.6)"
    );
    monitor(
        &client,
        monitor_state,
        "3a. a log monitor keeps every node's signed tree head (§18.13):",
    )
    .await?;
    client.close();
    super::demo_verified::run(mesh, models, receipts.parent().unwrap_or(receipts)).await?;
    super::demo_pipeline::run(models, receipts.parent().unwrap_or(receipts)).await?;
    // Give every node a gossip round after the last jobs, so the heads peers witnessed are
    // the latest.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )?;
    monitor(
        &client,
        monitor_state,
        "\n== the log monitor again (§18.13): every log only grew, and peers saw the same heads",
    )
    .await?;
    upgrade(&client, &promised, receipts).await?;
    client.close();
    if fhe {
        #[cfg(feature = "fhe")]
        crate::commands::demo_fhe::run(mesh, models, receipts).await?;
    } else {
        println!("\n== encrypted ensemble (TFHE) skipped: add --fhe to run it (about a minute)");
    }
    // Last: it kills a member node mid-round.
    super::demo_ensemble::run(mesh, models, receipts).await?;

    println!("4. a stranger with a key not on the roster tries to connect:");
    let stranger_key = SecretKey::generate()?;
    let mut roster_with_stranger = mesh.roster.clone();
    roster_with_stranger
        .entries
        .push(quorate_protocol::roster::Entry {
            name: "stranger".into(),
            key: stranger_key.public_key(),
            role: Role::Client,
            addresses: vec![],
            models: vec![],
            providers: vec![],
        });
    let stranger = MeshClient::new(&stranger_key, roster_with_stranger, Duration::from_secs(10))?;
    let node = mesh
        .roster
        .entries
        .iter()
        .find(|e| e.role == Role::Node)
        .context("no node")?;
    match stranger.health(node).await {
        Ok(_) => bail!("a key outside the roster was served"),
        Err(e) => println!("   refused: {e:#}"),
    }
    stranger.close();
    Ok(())
}
