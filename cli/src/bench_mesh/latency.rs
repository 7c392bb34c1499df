//! Goal 1 and 2 of the hot path: one verified mesh job against its parts, and the jobs per
//! second one node serves to many concurrent clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::batch_receipt::AnyReceipt;
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;
use quorate_runtime::LoadedModel;
use quorate_transport::{TlsIdentity, TransportSettings, bind_client};

use super::echo::{self, EchoProcess};
use super::node_metrics;
use super::sample::interleaved;
use crate::local::LocalMesh;

/// Medians of one verified job and of its parts, in nanoseconds.
pub struct Latency {
    /// The model run in this process (ONNX Runtime, one thread).
    pub ort: f64,
    /// One QUIC request and response of the job's sizes on an open connection, to a server
    /// in a process of its own, as a job's go to the node's.
    pub round_trip: f64,
    /// The same to a server in this process, sharing the client's runtime (outside the
    /// ratio: printed beside, for comparison).
    pub round_trip_in_process: f64,
    /// One durable append of a receipt-sized record (`write` + `fdatasync`).
    pub append: f64,
    /// The verified job: request, the node's run, receipt, audit append, the client's checks.
    pub job: f64,
    /// Request and response sizes in bytes.
    pub sizes: (usize, usize),
    /// What the node's metrics (§12.7) say of the same jobs, means in nanoseconds: from a
    /// decoded request to its answer, and per group commit; `None` if it committed nothing.
    pub inside_node: Option<(f64, f64)>,
}

impl Latency {
    /// The job over the sum of its parts.
    pub fn ratio(&self) -> f64 {
        self.job / (self.ort + self.round_trip + self.append)
    }
}

/// What the latency and throughput runs share.
pub struct Target<'a> {
    /// The running mesh.
    pub mesh: &'a LocalMesh,
    /// The node the jobs go to.
    pub node: &'a Entry,
    /// The model's bytes and digest.
    pub model: (&'a [u8], [u8; 32]),
    /// One input set.
    pub inputs: &'a [Tensor],
}

/// Calls of each in a row per round.
const BLOCK: usize = 10;

/// Samples the verified job and its three parts in turn, about `rounds` calls each, in
/// rounds of [`BLOCK`] calls.
pub fn latency(
    rt: &tokio::runtime::Runtime,
    client: &MeshClient,
    t: &Target<'_>,
    rounds: usize,
    dir: &std::path::Path,
    exe: &std::path::Path,
    metrics: std::net::SocketAddr,
) -> anyhow::Result<Latency> {
    let request = || fresh_request(t.model.1, t.inputs.to_vec(), None);
    let (response, _) = rt.block_on(client.infer(t.node, &request()?))?;
    let sizes = (
        Request::Infer(request()?).encode()?.len(),
        Response::Infer(response).encode()?.len(),
    );

    let local = LoadedModel::from_bytes(t.model.0, 1)?;
    let (echo, echo_key) = echo::serve(rt, &t.mesh.client_key.public_key(), sizes.1)?;
    let echo_client = {
        let _entered = rt.enter();
        bind_client(
            "127.0.0.1:0".parse()?,
            Arc::new(TlsIdentity::from_secret_key(&t.mesh.client_key)?),
            TransportSettings::default(),
        )?
    };
    let conn = rt.block_on(echo_client.connect(echo, &echo_key))?;
    let apart = EchoProcess::start(exe, &t.mesh.client_key.public_key(), sizes.1)?;
    let apart_conn = rt.block_on(echo_client.connect(apart.addr, &apart.key))?;
    let payload = vec![7u8; sizes.0];
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("append.bin"))
        .context("cannot open a scratch file for the append baseline")?;
    // A record as long as an audit-log record of this job's receipt (§12.4).
    let record = vec![0u8; sizes.1.min(1024)];

    let before = node_metrics::read(metrics)?;
    let medians = interleaved(
        rounds.div_ceil(BLOCK),
        2,
        BLOCK,
        &mut [
            &mut || request().is_ok_and(|r| rt.block_on(client.infer(t.node, &r)).is_ok()),
            &mut || local.run(t.inputs).is_ok(),
            &mut || {
                rt.block_on(apart_conn.request(&payload, Duration::from_secs(10)))
                    .is_ok()
            },
            &mut || {
                use std::io::Write;
                log.write_all(&record)
                    .and_then(|()| log.sync_data())
                    .is_ok()
            },
            &mut || {
                rt.block_on(conn.request(&payload, Duration::from_secs(10)))
                    .is_ok()
            },
        ],
    )?;
    let (node, commit) = before.means_until(&node_metrics::read(metrics)?);
    let inside_node = node.zip(commit);
    Ok(Latency {
        inside_node,
        job: medians[0],
        ort: medians[1],
        round_trip: medians[2],
        append: medians[3],
        round_trip_in_process: medians[4],
        sizes,
    })
}

/// What the throughput run saw.
pub struct Throughput {
    /// Verified jobs completed.
    pub jobs: u64,
    /// Seconds the run took.
    pub elapsed: f64,
    /// CPU seconds per completed job of the node's process and of this process (the
    /// clients), where the operating system reports them (Linux).
    pub cpu_per_job: Option<(f64, f64)>,
    /// Jobs that failed (a node still busy after the client's patience counts).
    pub failed: u64,
    /// Why the first of them failed.
    pub first_error: Option<String>,
    /// Replies whose receipt was a batch receipt (§12.4.2), and signatures the node made for
    /// the replies (a single receipt counts one, a batch receipt one over its batch's size).
    pub batched: u64,
    /// See [`Self::batched`].
    pub signatures: f64,
}

impl Throughput {
    /// Verified jobs completed per second.
    pub fn jobs_per_s(&self) -> f64 {
        self.jobs as f64 / self.elapsed.max(f64::MIN_POSITIVE)
    }

    /// Receipts per signature the node made (§12.4.2); 1 when it signed each alone.
    pub fn receipts_per_signature(&self) -> f64 {
        self.jobs as f64 / self.signatures.max(f64::MIN_POSITIVE)
    }

    /// The share of replies that carried a batch receipt.
    pub fn batched_share(&self) -> f64 {
        self.batched as f64 / self.jobs.max(1) as f64
    }

    /// Two runs against the same node as one: their jobs over their time, CPU per job
    /// weighted by jobs.
    pub fn merge(self, other: Throughput) -> Throughput {
        let jobs = self.jobs + other.jobs;
        let elapsed = self.elapsed + other.elapsed;
        let n = jobs.max(1) as f64;
        let cpu_per_job = self.cpu_per_job.zip(other.cpu_per_job).map(|(a, b)| {
            let (ja, jb) = (self.jobs as f64, other.jobs as f64);
            ((a.0 * ja + b.0 * jb) / n, (a.1 * ja + b.1 * jb) / n)
        });
        Throughput {
            jobs,
            elapsed,
            cpu_per_job,
            failed: self.failed + other.failed,
            first_error: self.first_error.or(other.first_error),
            batched: self.batched + other.batched,
            signatures: self.signatures + other.signatures,
        }
    }
}

/// What one reply's receipt cost the node in signatures: one for a single receipt, one over
/// the batch's size for a batch receipt (§5.3), with whether it was a batch receipt.
fn signature_share(receipt: &[u8]) -> (bool, f64) {
    match quorate_protocol::batch_receipt::parse_any(receipt) {
        Ok(AnyReceipt::Batch(b)) => (true, 1.0 / b.root.size.max(1) as f64),
        _ => (false, 1.0),
    }
}

/// Verified jobs per second from `clients` concurrent clients, each with its own connection,
/// over `seconds`.
pub fn throughput(
    rt: &tokio::runtime::Runtime,
    t: &Target<'_>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Throughput> {
    let clients: Vec<Arc<MeshClient>> = {
        let _entered = rt.enter();
        (0..clients)
            .map(|_| {
                MeshClient::new(
                    &t.mesh.client_key,
                    t.mesh.roster.clone(),
                    Duration::from_secs(30),
                )
                .map(Arc::new)
            })
            .collect::<anyhow::Result<_>>()?
    };
    // Connect every client first: the handshakes are not part of the steady state.
    for c in &clients {
        rt.block_on(c.health(t.node))?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let node_pid = t
        .mesh
        .nodes
        .iter()
        .find(|(name, _)| *name == t.node.name)
        .map(|(_, child)| child.id());
    let cpu_before = node_pid.and_then(|pid| Some((cpu_seconds(pid)?, own_cpu_seconds()?)));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let (batched, signatures) = rt.block_on(async {
        let tasks: Vec<_> = clients
            .iter()
            .map(|c| {
                let (c, node, done, failed) =
                    (c.clone(), t.node.clone(), done.clone(), failed.clone());
                let first_error = first_error.clone();
                let (model, inputs) = (t.model.1, t.inputs.to_vec());
                tokio::spawn(async move {
                    let (mut batched, mut signatures) = (0u64, 0.0f64);
                    while Instant::now() < deadline {
                        let outcome = match fresh_request(model, inputs.clone(), None) {
                            Ok(r) => c.infer_patiently(&node, &r).await,
                            Err(e) => Err(e),
                        };
                        match outcome {
                            Ok((response, _)) => {
                                let (batch, share) = signature_share(&response.receipt);
                                batched += u64::from(batch);
                                signatures += share;
                                done.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => {
                                if let Ok(mut first) = first_error.lock() {
                                    first.get_or_insert_with(|| format!("{e:#}"));
                                }
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    (batched, signatures)
                })
            })
            .collect();
        let mut totals = (0, 0.0);
        for task in tasks {
            if let Ok((b, s)) = task.await {
                totals = (totals.0 + b, totals.1 + s);
            }
        }
        totals
    });
    let elapsed = start.elapsed().as_secs_f64();
    let first_error = first_error.lock().ok().and_then(|mut e| e.take());
    let jobs = done.load(Ordering::Relaxed);
    let cpu_per_job = cpu_before.zip(node_pid).and_then(|((node, own), pid)| {
        let n = jobs.max(1) as f64;
        Some((
            (cpu_seconds(pid)? - node) / n,
            (own_cpu_seconds()? - own) / n,
        ))
    });
    Ok(Throughput {
        cpu_per_job,
        jobs,
        elapsed,
        failed: failed.load(Ordering::Relaxed),
        first_error,
        batched,
        signatures,
    })
}

/// User and system CPU seconds a process has used so far: fields 14 and 15 of
/// `/proc/PID/stat`, in the kernel's fixed 100 ticks per second (`USER_HZ`); `None` where
/// there is no such file.
fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// [`cpu_seconds`] of this process (the bench's clients).
fn own_cpu_seconds() -> Option<f64> {
    proc_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn proc_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Raw ONNX Runtime runs per second of the same model in this process with one session per
/// core, each on its own thread: what the machine can compute without any of the mesh.
pub fn raw_throughput(model: &[u8], input: &Tensor, seconds: f64) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sessions = (0..cores)
        .map(|_| LoadedModel::from_bytes(model, 1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let runs: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter()
            .map(|m| {
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if m.run(std::slice::from_ref(input)).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Ok(runs as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces() {
        // Fields 3.. of a real line; the name holds a space and a parenthesis.
        let stat = "4242 (tokio rt) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0";
        assert_eq!(proc_stat_cpu(stat), Some(2.87));
        assert_eq!(proc_stat_cpu("4242 (short"), None);
        assert_eq!(proc_stat_cpu("4242 (x) S 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        let own = own_cpu_seconds().unwrap_or_default();
        assert!(own > 0.0, "{own}");
        assert_eq!(
            cpu_seconds(std::process::id()).map(|c| c >= own),
            Some(true)
        );
    }
}
