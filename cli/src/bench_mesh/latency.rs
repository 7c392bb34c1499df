//! Goal 1 and 2 of the hot path: one verified mesh job against its parts, and the jobs per
//! second one node serves to many concurrent clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;
use quorate_runtime::LoadedModel;
use quorate_transport::{PinnedKeys, TlsIdentity, TransportSettings, bind_client, bind_server};

use super::sample::interleaved;
use crate::local::LocalMesh;

/// Medians of one verified job and of its parts, in nanoseconds.
pub struct Latency {
    /// The model run in this process (ONNX Runtime, one thread).
    pub ort: f64,
    /// One QUIC request and response of the job's sizes on an open connection.
    pub round_trip: f64,
    /// One durable append of a receipt-sized record (`write` + `fdatasync`).
    pub append: f64,
    /// The verified job: request, the node's run, receipt, audit append, the client's checks.
    pub job: f64,
    /// Request and response sizes in bytes.
    pub sizes: (usize, usize),
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
    /// The model's bytes (`mlp.onnx`) and digest.
    pub model: (&'a [u8], [u8; 32]),
    /// One input set.
    pub input: &'a Tensor,
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
) -> anyhow::Result<Latency> {
    let request = || fresh_request(t.model.1, vec![t.input.clone()], None);
    let (response, _) = rt.block_on(client.infer(t.node, &request()?))?;
    let sizes = (
        Request::Infer(request()?).encode()?.len(),
        Response::Infer(response).encode()?.len(),
    );

    let local = LoadedModel::from_bytes(t.model.0, 1)?;
    let (echo, echo_key) = echo_server(rt, t.mesh, sizes.1)?;
    let echo_client = {
        let _entered = rt.enter();
        bind_client(
            "127.0.0.1:0".parse()?,
            Arc::new(TlsIdentity::from_secret_key(&t.mesh.client_key)?),
            TransportSettings::default(),
        )?
    };
    let conn = rt.block_on(echo_client.connect(echo, &echo_key))?;
    let payload = vec![7u8; sizes.0];
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("append.bin"))
        .context("cannot open a scratch file for the append baseline")?;
    // A record as long as an audit-log record of this job's receipt (§12.4).
    let record = vec![0u8; sizes.1.min(1024)];

    let medians = interleaved(
        rounds.div_ceil(BLOCK),
        2,
        BLOCK,
        &mut [
            &mut || request().is_ok_and(|r| rt.block_on(client.infer(t.node, &r)).is_ok()),
            &mut || local.run(std::slice::from_ref(t.input)).is_ok(),
            &mut || {
                rt.block_on(conn.request(&payload, Duration::from_secs(10)))
                    .is_ok()
            },
            &mut || {
                use std::io::Write;
                log.write_all(&record)
                    .and_then(|()| log.sync_data())
                    .is_ok()
            },
        ],
    )?;
    Ok(Latency {
        job: medians[0],
        ort: medians[1],
        round_trip: medians[2],
        append: medians[3],
        sizes,
    })
}

/// A QUIC server on loopback that answers every request with `response_len` bytes, pinned to
/// the mesh's client key like a node; its address and key.
fn echo_server(
    rt: &tokio::runtime::Runtime,
    mesh: &LocalMesh,
    response_len: usize,
) -> anyhow::Result<(std::net::SocketAddr, quorate_crypto::PublicKey)> {
    let key = quorate_crypto::SecretKey::generate()?;
    let server = {
        let _entered = rt.enter();
        bind_server(
            "127.0.0.1:0".parse()?,
            Arc::new(TlsIdentity::from_secret_key(&key)?),
            PinnedKeys::from_keys([mesh.client_key.public_key()]),
            TransportSettings::default(),
        )?
    };
    let addr = server.local_addr()?;
    rt.spawn(async move {
        server
            .serve(move |_, _| async move { vec![0u8; response_len] })
            .await
    });
    Ok((addr, key.public_key()))
}

/// What the throughput run saw.
pub struct Throughput {
    /// Verified jobs completed per second.
    pub jobs_per_s: f64,
    /// Jobs that failed (a node still busy after the client's patience counts).
    pub failed: u64,
    /// Why the first of them failed.
    pub first_error: Option<String>,
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
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    rt.block_on(async {
        let tasks: Vec<_> = clients
            .iter()
            .map(|c| {
                let (c, node, done, failed) =
                    (c.clone(), t.node.clone(), done.clone(), failed.clone());
                let first_error = first_error.clone();
                let (model, input) = (t.model.1, t.input.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let outcome = match fresh_request(model, vec![input.clone()], None) {
                            Ok(r) => c.infer_patiently(&node, &r).await.map(drop),
                            Err(e) => Err(e),
                        };
                        match outcome {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                if let Ok(mut first) = first_error.lock() {
                                    first.get_or_insert_with(|| format!("{e:#}"));
                                }
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let first_error = first_error.lock().ok().and_then(|mut e| e.take());
    Ok(Throughput {
        jobs_per_s: done.load(Ordering::Relaxed) as f64 / elapsed,
        failed: failed.load(Ordering::Relaxed),
        first_error,
    })
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
