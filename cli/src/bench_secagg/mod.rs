//! `quorate bench secagg` (§9.10): runs one complete secure-aggregation round in-process
//! (every client and the server, through the real wire encoding) and reports client and
//! server time against a bound measured in the same run.
//!
//! The bound is the cost of the unavoidable primitives, timed on the same machine in the
//! same process: raw AES-128-CTR keystream generation of exactly as many bytes, in the
//! same number of masks and the same chunk size, as the measured party generated, plus
//! exactly as many X25519 operations (ladder agreements and fixed-base key derivations),
//! spread over the same number of threads as the measured side used (1 for a client, the
//! server's thread count for the server).
//!
//! The ratios are taken from replays (`replay`): after the recorded run, sampled clients and
//! the server are run again alone on their recorded messages, each replay followed by a
//! repetition of its bound, and the medians are compared.

pub(crate) mod bound;
mod replay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::secagg::prg;
use quorate_crypto::secagg::rng::{DeterministicRng, SecretRng};
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::secagg::config::{GraphKind, RoundConfig, SparseParameters};
use quorate_protocol::secagg::messages::Round;
use quorate_protocol::secagg::server::{Outcome, Server};
use quorate_protocol::secagg::{Client, WorkCounters, sim};

use bound::{Spent, median};
use replay::{ClientLog, ServerCall};

/// Arguments of `quorate bench secagg`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Runs one whole round in this process (every client and the server, through the wire \
encoding), checks the sum against the plaintext, then replays up to 21 clients and the server \
alone on their recorded messages, each replay next to a repetition of its bound (raw AES-128-CTR \
of the same keystream bytes + the same X25519 operations). The last line is \
`client/bound=X server/bound=Y`: medians of the replays over medians of the bounds, in thread \
CPU time for a client (one thread) and wall clock for the server (every core), spec §9.10.\n\n\
The target configuration (about 1.5 minutes on two cores):\n  \
quorate bench secagg --clients 500 --length 100000 --dropout 0.3\n\
SecAgg+ with k and t derived for 5% corrupt clients:\n  \
quorate bench secagg --clients 1000 --length 100000 --dropout 0.1 --neighbours auto --corrupt 0.05\n\
The whole grid, into bench/secagg/: scripts/bench-secagg-grid.sh"
)]
pub struct BenchSecaggArgs {
    /// Number of clients `n`.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Vector length `m`.
    #[arg(long, default_value_t = 1000)]
    pub length: usize,
    /// Fraction of clients that drop out after ShareKeys, before sending their masked
    /// input (the costly case for the server).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// SecAgg+ neighbour degree `k` (even), or `auto` to derive k and t from n, --corrupt
    /// and --dropout (§9.6.2). Without it the full graph (SecAgg) is used.
    #[arg(long)]
    pub neighbours: Option<String>,
    /// Corrupt-client fraction γ for `--neighbours auto`.
    #[arg(long, default_value_t = 0.0)]
    pub corrupt: f64,
    /// Modulus bits `b`.
    #[arg(long, default_value_t = 32)]
    pub bits: u32,
    /// Threshold `t` (default: ⌊n/2⌋+1 for the full graph, ⌊k/2⌋+1 for a given k, derived for auto).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Server threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the simulated identities, inputs and dropouts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

fn add(a: &mut WorkCounters, b: WorkCounters) {
    a.x25519_agreements += b.x25519_agreements;
    a.x25519_keygens += b.x25519_keygens;
    a.masks += b.masks;
    a.mask_bytes += b.mask_bytes;
}

/// Runs the benchmark.
pub fn run(args: &BenchSecaggArgs) -> anyhow::Result<std::process::ExitCode> {
    let n = args.clients;
    if !(3..=quorate_protocol::secagg::config::MAX_CLIENTS).contains(&n) {
        bail!("--clients must be between 3 and 10000");
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1)");
    }
    let (graph, default_t) = match args.neighbours.as_deref() {
        None => (GraphKind::Full, n / 2 + 1),
        Some("auto") => {
            let d = SparseParameters::new(n, args.corrupt, args.dropout.max(0.01))
                .derive()
                .context("deriving the SecAgg+ degree")?;
            (d.graph, d.threshold)
        }
        Some(k) => {
            let k: usize = k
                .parse()
                .context("--neighbours takes an even number or `auto`")?;
            (GraphKind::Sparse { degree: k }, k / 2 + 1)
        }
    };
    let t = args.threshold.unwrap_or(default_t);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&args.seed.to_be_bytes());
    let cfg = Arc::new(RoundConfig {
        session_id: seed,
        roster: (0..n as u32)
            .map(|i| sim::identity(&seed, i).public_key())
            .collect(),
        vector_len: args.length,
        modulus_bits: args.bits,
        threshold: t,
        min_survivors: t,
        graph,
        max_input: (((1u128 << args.bits) - 1) / n as u128) as u64,
    });
    cfg.validate().context("round configuration")?;

    // Inputs and the dropout set, from the seed.
    let mut rng = DeterministicRng::from_seed(&sim::rng_seed(&seed, u32::MAX));
    let mut draw = |bound: u64| -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        rng.fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b) % bound)
    };
    let mut inputs = Vec::with_capacity(n);
    for _ in 0..n {
        let v: anyhow::Result<Vec<u64>> =
            (0..args.length).map(|_| draw(cfg.max_input + 1)).collect();
        inputs.push(v?);
    }
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = draw(i as u64 + 1)? as usize;
        order.swap(i, j);
    }
    let n_drop = (args.dropout * n as f64).round() as usize;
    let mut dropped = vec![false; n];
    for &i in &order[..n_drop] {
        dropped[i] = true;
    }

    let timeout = 1_000u64;
    let make_client = |i: u32| {
        Client::new(
            cfg.clone(),
            i,
            sim::identity(&seed, i),
            inputs[i as usize].clone(),
            Box::new(DeterministicRng::from_seed(&sim::rng_seed(&seed, i))),
            100 * timeout,
        )
    };
    let make_server = || Ok(Server::new(cfg.clone(), 0, timeout, args.threads)?);
    // The clients replayed after the run: up to 21, evenly spread over those that stay.
    let live: Vec<usize> = (0..n).filter(|&i| !dropped[i]).collect();
    let reps = live.len().min(21);
    let sampled: Vec<usize> = (0..reps).map(|k| live[k * live.len() / reps]).collect();
    let mut logs: Vec<Option<ClientLog>> = (0..n).map(|_| None).collect();
    for &i in &sampled {
        logs[i] = Some(ClientLog::default());
    }
    let mut calls: Vec<ServerCall> = Vec::new();

    // The recorded run.
    let mut now = 0u64;
    let mut server_time = Duration::ZERO;
    let mut unmask_time = Duration::ZERO;
    let t0 = Instant::now();
    let mut server = make_server()?;
    server_time += t0.elapsed();
    let mut clients = Vec::with_capacity(n);
    let mut client_time = vec![Duration::ZERO; n];
    // Per client, the time spent producing each of its five messages (index: the round of
    // the message produced; a message of round r answers the server's message in round r−1).
    let mut client_round_time = vec![[Duration::ZERO; 5]; n];
    for i in 0..n as u32 {
        clients.push(make_client(i)?);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let t0 = Instant::now();
        let m = c.start(now)?;
        let e = t0.elapsed();
        client_time[i] += e;
        client_round_time[i][0] += e;
        if let Some(log) = &mut logs[i] {
            log.start = now;
            log.sent.push(sha256(&m));
        }
        let t0 = Instant::now();
        let _ = server.handle_message(&m, now);
        server_time += t0.elapsed();
        calls.push(ServerCall::Message(m, now));
    }
    let mut rounds = 0;
    while server.outcome().is_none() {
        rounds += 1;
        if rounds > 32 {
            bail!("the round did not terminate");
        }
        let t0 = Instant::now();
        let out = server.poll_transmit();
        server_time += t0.elapsed();
        calls.push(ServerCall::Poll);
        if out.is_empty() {
            now = server.poll_timeout().unwrap_or(now);
            let t0 = Instant::now();
            let closing_unmask = server.round() == Round::Unmasking;
            server.handle_timeout(now);
            let e = t0.elapsed();
            server_time += e;
            calls.push(ServerCall::Timeout(now));
            if closing_unmask {
                unmask_time += e;
            }
            continue;
        }
        for o in out {
            let i = o.to as usize;
            if dropped[i] && clients[i].round() >= Round::ShareKeys {
                continue; // dropped after ShareKeys: never sends its masked input
            }
            // The round of the message this call produces; a sparse round's graph
            // contribution (§9.5.7) counts with ShareKeys.
            let phase = clients[i].round().next(false) as usize;
            let t0 = Instant::now();
            let reply = clients[i].handle_message(&o.bytes, now);
            let e = t0.elapsed();
            client_time[i] += e;
            client_round_time[i][phase.min(4)] += e;
            let reply = reply.with_context(|| format!("client {i}"))?;
            if let Some(log) = &mut logs[i] {
                log.inbox.push((o.bytes, now));
                if let Some(r) = &reply {
                    log.sent.push(sha256(r));
                }
            }
            if let Some(reply) = reply {
                let closing_unmask = server.round() == Round::Unmasking;
                let t0 = Instant::now();
                let _ = server.handle_message(&reply, now);
                let e = t0.elapsed();
                server_time += e;
                if closing_unmask && server.outcome().is_some() {
                    unmask_time += e;
                }
                calls.push(ServerCall::Message(reply, now));
            }
        }
    }
    let outcome = server.outcome().cloned().context("no outcome")?;
    let Outcome::Sum(agg) = &outcome else {
        bail!("the round aborted: {outcome:?}");
    };
    // Exactness check against the plaintext sum.
    let mask = prg::modulus_mask(args.bits);
    #[allow(clippy::needless_range_loop)]
    for j in 0..args.length {
        let s = agg
            .contributors
            .iter()
            .fold(0u64, |a, &i| a.wrapping_add(inputs[i as usize][j]))
            & mask;
        if s != agg.sum[j] {
            bail!("WRONG SUM at element {j}: this is a bug");
        }
    }

    let finished: Vec<usize> = (0..n).filter(|&i| clients[i].is_done()).collect();
    // Medians, not means: the machines are shared, and a burst of foreign load during one
    // client's turn should not move the figure (§9.10).
    let in_run_client = median(finished.iter().map(|&i| secs(client_time[i])).collect());
    let per_round: Vec<f64> = (0..5)
        .map(|r| {
            median(
                finished
                    .iter()
                    .map(|&i| secs(client_round_time[i][r]))
                    .collect(),
            )
        })
        .collect();
    let counters: Vec<WorkCounters> = clients.iter().map(Client::counters).collect();
    let mut cc = WorkCounters::default();
    for &i in &finished {
        add(&mut cc, clients[i].counters());
    }
    let k = finished.len().max(1) as u64;
    let mean_counters = WorkCounters {
        x25519_agreements: cc.x25519_agreements / k,
        x25519_keygens: cc.x25519_keygens / k,
        masks: cc.masks / k,
        mask_bytes: cc.mask_bytes / k,
    };
    let sc = server.counters();
    let threads = server.threads();
    drop(clients);
    drop(server);

    // Paired replays (§9.10): each sampled client alone on its recorded messages, then its
    // bound (alternating which goes first, so that drift favours neither side).
    let mut client_reps: Vec<Spent> = Vec::with_capacity(reps);
    let mut client_bounds: Vec<Spent> = Vec::with_capacity(reps);
    for (k, &i) in sampled.iter().enumerate() {
        let log = logs[i].take().context("sampled client without a log")?;
        if !finished.contains(&i) {
            continue;
        }
        let c = make_client(i as u32)?;
        let recorded = counters[i];
        let (t, b) = if k % 2 == 0 {
            let (t, work) = replay::client(c, &log)?;
            if work != recorded {
                bail!("a replayed client did other work than in the recorded run: this is a bug");
            }
            (t, bound::measure(&recorded, args.bits, 1))
        } else {
            let b = bound::measure(&recorded, args.bits, 1);
            let (t, work) = replay::client(c, &log)?;
            if work != recorded {
                bail!("a replayed client did other work than in the recorded run: this is a bug");
            }
            (t, b)
        };
        client_reps.push(t);
        client_bounds.push(b);
    }
    let replayed = client_reps.len();
    let wall = |v: &[Spent]| median(v.iter().map(|s| secs(s.wall)).collect());
    // A client is one thread: its ratio is taken in thread CPU time (time on a core), so
    // that another process sharing the core during a replay or a bound does not count.
    // Where the platform gives no thread CPU time, wall-clock time is used.
    let cpu = |v: &[Spent]| -> Option<f64> {
        let t: Option<Vec<f64>> = v.iter().map(|s| s.cpu.map(secs)).collect();
        t.map(median)
    };
    let client_wall = wall(&client_reps);
    let client_bound_wall = wall(&client_bounds);
    let (client, client_bound, clock) = match (cpu(&client_reps), cpu(&client_bounds)) {
        (Some(c), Some(b)) => (c, b, "thread CPU time"),
        _ => (client_wall, client_bound_wall, "wall clock"),
    };

    // The server: replayed whole as many times as fit in about 20 s (3 to 11, odd).
    let in_run_server = secs(server_time);
    let server_reps = ((20.0 / in_run_server.max(1e-3)) as usize).clamp(3, 11) | 1;
    let mut server_runs = Vec::with_capacity(server_reps);
    let mut server_unmask = Vec::with_capacity(server_reps);
    let mut server_bounds = Vec::with_capacity(server_reps);
    for _ in 0..server_reps {
        let timed = replay::server(make_server, &calls, &outcome)?;
        server_runs.push(secs(timed.total));
        server_unmask.push(secs(timed.unmasking));
        server_bounds.push(secs(bound::measure(&sc, args.bits, threads).wall));
    }
    let server_total = median(server_runs);
    let server_bound = median(server_bounds);
    let graph_desc = match cfg.graph {
        GraphKind::Full => "full (SecAgg)".to_string(),
        GraphKind::Sparse { degree } => format!("SecAgg+ k={degree}"),
    };
    println!(
        "quorate bench secagg: n={n} m={} b={} dropout={:.2} ({n_drop} clients drop after ShareKeys) graph={graph_desc} t={t} server threads={threads}",
        args.length, args.bits, args.dropout
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    println!(
        "sum: exact ({} contributors, {} dropped; checked against the plaintext sum)",
        agg.contributors.len(),
        agg.dropped.len()
    );
    println!(
        "in the run: client {in_run_client:.4} s median over {} finished clients, interleaved with the others and the server (by round: keys {:.4} s, shares {:.4} s, masked input {:.4} s, consistency {:.4} s, unmasking {:.4} s); server {in_run_server:.4} s (final unmasking {:.4} s)",
        finished.len(),
        per_round[0],
        per_round[1],
        per_round[2],
        per_round[3],
        per_round[4],
        secs(unmask_time)
    );
    println!(
        "client: {client:.4} s ({clock}) median of {replayed} clients replayed alone on their recorded messages, wall clock {client_wall:.4} s (answers byte-identical; {} X25519 agreements, {} keygens, {} masks, {} keystream each on average)",
        mean_counters.x25519_agreements,
        mean_counters.x25519_keygens,
        mean_counters.masks,
        human_bytes(mean_counters.mask_bytes)
    );
    println!(
        "client bound: {client_bound:.4} s ({clock}) median of {replayed}, each right next to its replay, wall clock {client_bound_wall:.4} s = raw AES-128-CTR of the replayed client's keystream bytes in as many masks + as many X25519 ladders and fixed-base derivations, 1 thread"
    );
    println!(
        "server: {server_total:.4} s median of {server_reps} replays (final unmasking {:.4} s; {} X25519 agreements, {} keygens, {} masks, {} keystream)",
        median(server_unmask),
        sc.x25519_agreements,
        sc.x25519_keygens,
        sc.masks,
        human_bytes(sc.mask_bytes)
    );
    println!(
        "server bound: {server_bound:.4} s median of {server_reps}, each right after a replay = raw AES-128-CTR {} in {} masks + {} X25519 ladders + {} fixed-base X25519, {threads} threads",
        human_bytes(sc.mask_bytes),
        sc.masks,
        sc.x25519_agreements,
        sc.x25519_keygens
    );
    println!(
        "informative ratios: client wall clock {:.2} (replays), {:.2} (in the run, against the replays' bound); server in the run {:.2}",
        ratio(client_wall, client_bound_wall),
        ratio(in_run_client, client_bound_wall),
        ratio(in_run_server, server_bound)
    );
    println!(
        "client/bound={:.2} server/bound={:.2}",
        ratio(client, client_bound),
        ratio(server_total, server_bound)
    );
    Ok(std::process::ExitCode::SUCCESS)
}
