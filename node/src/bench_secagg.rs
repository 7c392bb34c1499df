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

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::secagg::ka::{raw_x25519, raw_x25519_base};
use quorate_crypto::secagg::kdf::PrgSeed;
use quorate_crypto::secagg::prg;
use quorate_crypto::secagg::rng::{DeterministicRng, SecretRng};
use quorate_protocol::secagg::config::{GraphKind, RoundConfig, SparseParameters};
use quorate_protocol::secagg::messages::Round;
use quorate_protocol::secagg::server::{Outcome, Server};
use quorate_protocol::secagg::{Client, WorkCounters, sim};

/// Arguments of `quorate bench secagg`.
#[derive(clap::Args, Debug, Clone)]
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

/// Times the bound: `masks` raw keystreams of `mask_bytes / masks` bytes each, plus
/// `agreements` X25519 ladders and `keygens` fixed-base derivations, over `threads`
/// threads (work split round-robin as the server splits it).
fn measure_bound(c: &WorkCounters, bits: u32, threads: usize) -> Duration {
    let threads = threads.max(1);
    let per_mask = c.mask_bytes.checked_div(c.masks).unwrap_or(0) as usize;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                let share =
                    |total: u64| total / threads as u64 + u64::from(t < total % threads as u64);
                let mut buf = vec![0u8; prg::chunk_bytes(bits)];
                let mut x = 0u8;
                let mut k = [t as u8 + 1; 32];
                let mut u = [9u8; 32];
                for _ in 0..share(c.x25519_agreements) {
                    u = raw_x25519(k, u);
                    k[0] ^= u[0];
                }
                for _ in 0..share(c.x25519_keygens) {
                    k = raw_x25519_base(k);
                }
                for i in 0..share(c.masks) {
                    let seed = PrgSeed::from_bytes([(i as u8) ^ x; 16]);
                    x ^= prg::raw_keystream(&seed, per_mask, &mut buf);
                }
                std::hint::black_box((x, k, u));
            });
        }
    });
    start.elapsed()
}

/// The median of `v` (the mean of the two middle values for an even count; 0 when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
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
    let mut now = 0u64;
    let mut server_time = Duration::ZERO;
    let mut unmask_time = Duration::ZERO;
    let t0 = Instant::now();
    let mut server = Server::new(cfg.clone(), now, timeout, args.threads)?;
    server_time += t0.elapsed();
    let mut clients = Vec::with_capacity(n);
    let mut client_time = vec![Duration::ZERO; n];
    for i in 0..n as u32 {
        let rng = Box::new(DeterministicRng::from_seed(&sim::rng_seed(&seed, i)));
        clients.push(Client::new(
            cfg.clone(),
            i,
            sim::identity(&seed, i),
            inputs[i as usize].clone(),
            rng,
            100 * timeout,
        )?);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let t0 = Instant::now();
        let m = c.start(now)?;
        client_time[i] += t0.elapsed();
        let t0 = Instant::now();
        let _ = server.handle_message(&m, now);
        server_time += t0.elapsed();
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
        if out.is_empty() {
            now = server.poll_timeout().unwrap_or(now);
            let t0 = Instant::now();
            let closing_unmask = server.round() == Round::Unmasking;
            server.handle_timeout(now);
            let e = t0.elapsed();
            server_time += e;
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
            let t0 = Instant::now();
            let reply = clients[i].handle_message(&o.bytes, now);
            client_time[i] += t0.elapsed();
            if let Some(reply) = reply.with_context(|| format!("client {i}"))? {
                let closing_unmask = server.round() == Round::Unmasking;
                let t0 = Instant::now();
                let _ = server.handle_message(&reply, now);
                let e = t0.elapsed();
                server_time += e;
                if closing_unmask && server.outcome().is_some() {
                    unmask_time += e;
                }
            }
        }
    }
    let outcome = server.outcome().cloned().context("no outcome")?;
    let Outcome::Sum(agg) = outcome else {
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
    // client's turn (or one repetition of the bound) should not move the ratio (§9.10).
    let client_times: Vec<f64> = finished.iter().map(|&i| secs(client_time[i])).collect();
    let mean_client = client_times.iter().sum::<f64>() / client_times.len().max(1) as f64;
    let median_client = median(client_times);
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
    // Client bound: the mean client's work, timed on one thread; repeated to reduce noise.
    let reps = finished.len().clamp(1, 21);
    let client_bound = median(
        (0..reps)
            .map(|_| secs(measure_bound(&mean_counters, args.bits, 1)))
            .collect(),
    );
    let sc = server.counters();
    let threads = server.threads();
    let server_bound = secs(measure_bound(&sc, args.bits, threads));
    let server_total = secs(server_time);

    let graph_desc = match cfg.graph {
        GraphKind::Full => "full (SecAgg)".to_string(),
        GraphKind::Sparse { degree } => format!("SecAgg+ k={degree}"),
    };
    println!(
        "quorate bench secagg: n={n} m={} b={} dropout={:.2} ({n_drop} clients drop after ShareKeys) graph={graph_desc} t={t} server threads={threads}",
        args.length, args.bits, args.dropout
    );
    println!(
        "client: {median_client:.4} s median (mean {mean_client:.4} s) over {} clients ({} X25519 agreements, {} keygens, {} masks, {} keystream each)",
        finished.len(),
        mean_counters.x25519_agreements,
        mean_counters.x25519_keygens,
        mean_counters.masks,
        human_bytes(mean_counters.mask_bytes)
    );
    println!(
        "client bound: {client_bound:.4} s (median of {reps}) = raw AES-128-CTR {} in {} masks + {} X25519 ladders + {} fixed-base X25519, 1 thread, same process",
        human_bytes(mean_counters.mask_bytes),
        mean_counters.masks,
        mean_counters.x25519_agreements,
        mean_counters.x25519_keygens
    );
    println!(
        "server: {server_total:.4} s total (final unmasking {:.4} s; {} X25519 agreements, {} keygens, {} masks, {} keystream)",
        secs(unmask_time),
        sc.x25519_agreements,
        sc.x25519_keygens,
        sc.masks,
        human_bytes(sc.mask_bytes)
    );
    println!(
        "server bound: {server_bound:.4} s = raw AES-128-CTR {} in {} masks + {} X25519 ladders + {} fixed-base X25519, {threads} threads, same process",
        human_bytes(sc.mask_bytes),
        sc.masks,
        sc.x25519_agreements,
        sc.x25519_keygens
    );
    println!(
        "sum: exact ({} contributors, {} dropped; checked against the plaintext sum)",
        agg.contributors.len(),
        agg.dropped.len()
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    println!(
        "client/bound={:.2} server/bound={:.2}",
        ratio(median_client, client_bound),
        ratio(server_total, server_bound)
    );
    Ok(std::process::ExitCode::SUCCESS)
}
