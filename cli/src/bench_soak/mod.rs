//! `quorate bench soak` (§12.9): a live local mesh under valid and hostile traffic for a
//! while. Every valid job must be answered with a receipt that verifies, every receipt a node
//! returned must be in its audit log, every hostile message must be refused as the spec says,
//! and the nodes' memory and open file descriptors must stay bounded (printed over time, the
//! largest at the end).

mod traffic;
mod watch;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::MeshClient;

use crate::local::{LocalMesh, mlp_sample};
use traffic::{Traffic, hostile_worker, valid_worker};
use watch::{Peaks, look_all};

/// The request limit of the local mesh's nodes (the §12.1 default).
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Arguments of `quorate bench soak`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "The long run:\n  quorate bench soak --minutes 30 --nodes 3\n\
A short look (what CI runs):\n  quorate bench soak --minutes 1 --nodes 3\n\n\
It fails (exit 1) if a valid job goes unanswered, a receipt is missing from its node's audit \
log, hostile traffic is accepted, a node exits, or a node's memory or descriptors grow past \
the bounds below."
)]
pub struct BenchSoakArgs {
    /// How long to run, in minutes (fractions allowed).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Nodes in the local mesh (three or more also run verified jobs across them).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Concurrent clients sending valid jobs.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Concurrent senders of hostile traffic (garbage, truncated and oversized frames, rounds
    /// of jobs never started, replays, handshake floods from strangers).
    #[arg(long, default_value_t = 2)]
    pub hostile: usize,
    /// Seconds between two looks at the nodes' memory and descriptors.
    #[arg(long, default_value_t = 10)]
    pub every: u64,
    /// Largest growth of a node's resident memory over its first look, in MiB: the §7.6
    /// budget of requests in flight (64 MiB) and the connections' receive windows, with room.
    #[arg(long, default_value_t = 256)]
    pub max_rss_growth_mib: u64,
    /// Largest growth of a node's open file descriptors over its first look.
    #[arg(long, default_value_t = 32)]
    pub max_fd_growth: u64,
    /// The folder holding the bundled models.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))]
    pub models: PathBuf,
}

/// Runs the soak.
pub fn run(args: &BenchSoakArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.minutes <= 7.0 * 24.0 * 60.0,
        "--minutes must be above 0 and at most a week"
    );
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.every >= 1, "--every must be at least 1 second");
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    eprintln!("starting {} node processes…", args.nodes);
    let mut mesh = LocalMesh::start(dir.path(), args.nodes, &args.models, &exe)?;
    let (input, model) = mlp_sample(&args.models)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let traffic = Arc::new(Traffic {
        client: MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(30),
        )?,
        client_key: quorate_node::files::load_secret_key(&mesh.client_key_path)?,
        nodes: mesh.node_entries()?,
        model,
        input,
        max_request_bytes: MAX_REQUEST_BYTES,
        tally: Default::default(),
        stop: Default::default(),
    });
    // Warm up: every node has answered once before its first look.
    for node in &traffic.nodes {
        rt.block_on(traffic.client.health(node))
            .with_context(|| format!("{} does not answer", node.name))?;
    }
    let mut peaks = Peaks::default();
    peaks.record(&look_all(&mut mesh.nodes)?);
    let workers: Vec<_> = (0..args.clients)
        .map(|w| rt.spawn(valid_worker(traffic.clone(), w)))
        .chain((0..args.hostile).map(|w| rt.spawn(hostile_worker(traffic.clone(), w))))
        .collect();

    let start = Instant::now();
    let length = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "| seconds | valid | answered | busy | hostile | handled | failures | largest RSS MiB | most fds |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut exited = None;
    while start.elapsed() < length {
        std::thread::sleep(Duration::from_secs(args.every).min(length - start.elapsed()));
        match look_all(&mut mesh.nodes) {
            Ok(looks) => {
                peaks.record(&looks);
                let now_rss = looks.iter().map(|l| l.rss).max().unwrap_or(0);
                let now_fds = looks.iter().map(|l| l.fds).max().unwrap_or(0);
                row(&traffic, start.elapsed(), now_rss, now_fds);
            }
            Err(e) => {
                exited = Some(format!("{e:#}"));
                break;
            }
        }
    }
    traffic.stop.store(true, Ordering::Relaxed);
    for w in workers {
        rt.block_on(w).context("a traffic worker panicked")?;
    }
    traffic.client.close();

    let mut problems: Vec<String> = traffic.tally.kept_failures();
    let failures = traffic.tally.failures.load(Ordering::Relaxed);
    if failures as usize > problems.len() {
        problems.push(format!(
            "… {} more failures",
            failures as usize - problems.len()
        ));
    }
    problems.extend(exited);
    let (logged, returned) = receipts_in_logs(&mesh, &traffic.tally, &mut problems)?;
    let (rss_growth, fd_growth) = peaks.max_growth();
    if rss_growth > args.max_rss_growth_mib << 20 {
        problems.push(format!(
            "a node's resident memory grew by {} MiB (bound {} MiB)",
            rss_growth >> 20,
            args.max_rss_growth_mib
        ));
    }
    if fd_growth > args.max_fd_growth {
        problems.push(format!(
            "a node's open descriptors grew by {fd_growth} (bound {})",
            args.max_fd_growth
        ));
    }
    mesh.stop_all()?;
    let t = &traffic.tally;
    let (valid, answered) = (
        t.valid.load(Ordering::Relaxed),
        t.answered.load(Ordering::Relaxed),
    );
    let (hostile, handled) = (
        t.hostile.load(Ordering::Relaxed),
        t.handled.load(Ordering::Relaxed),
    );
    for p in &problems {
        eprintln!("problem: {p}");
    }
    let kinds: Vec<String> = traffic::KIND_NAMES
        .iter()
        .zip(&t.by_kind)
        .map(|(name, n)| format!("{name}={}", n.load(Ordering::Relaxed)))
        .collect();
    println!("hostile traffic sent: {}", kinds.join(" "));
    println!(
        "soak: minutes={:.2} nodes={} valid={valid} answered={answered} busy={} hostile={hostile} \
         handled={handled} receipts_logged={logged}/{returned} rss_max_mib={} rss_growth_mib={} \
         fds_max={} fds_growth={fd_growth} fresh_port_handshakes={} verdict={}",
        start.elapsed().as_secs_f64() / 60.0,
        args.nodes,
        t.busy.load(Ordering::Relaxed),
        peaks.max_rss() >> 20,
        rss_growth >> 20,
        peaks.max_fds(),
        t.fresh_port_handshakes.load(Ordering::Relaxed),
        if problems.is_empty() { "ok" } else { "FAILED" },
    );
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn row(traffic: &Traffic, elapsed: Duration, rss: u64, fds: u64) {
    let t = &traffic.tally;
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        elapsed.as_secs(),
        t.valid.load(Ordering::Relaxed),
        t.answered.load(Ordering::Relaxed),
        t.busy.load(Ordering::Relaxed),
        t.hostile.load(Ordering::Relaxed),
        t.handled.load(Ordering::Relaxed),
        t.failures.load(Ordering::Relaxed),
        rss >> 20,
        fds,
    );
}

/// Checks that every receipt a node returned is in its audit log (§12.4): (found, returned).
fn receipts_in_logs(
    mesh: &LocalMesh,
    tally: &traffic::Tally,
    problems: &mut Vec<String>,
) -> anyhow::Result<(usize, usize)> {
    let (mut found, mut returned) = (0, 0);
    for (name, digests) in tally.receipts() {
        let path = mesh.audit_of(&name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let scan = quorate_protocol::audit_log::scan(&bytes)
            .with_context(|| format!("{}", path.display()))?;
        let logged: HashSet<[u8; 32]> = scan.records.iter().map(|r| sha256(r)).collect();
        let missing = digests.iter().filter(|d| !logged.contains(*d)).count();
        returned += digests.len();
        found += digests.len() - missing;
        if missing > 0 {
            problems.push(format!(
                "{missing} receipts {name} returned are not in its audit log"
            ));
        }
    }
    Ok((found, returned))
}
