//! Mesh job latency against its parts measured in the same run (README "Benchmarks"):
//! a verified `infer` on a `quorate node` process over QUIC, against a local ONNX Runtime run
//! plus one QUIC round trip of the same size, plus the fsync the audit log needs; then
//! requests per second with several concurrent clients.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{median_ns, mesh_criterion, root, runtime_and_client, sample_features};

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::MeshClient;
use quorate_protocol::messages::{InferRequest, Request};
use quorate_protocol::receipt::JobKind;
use quorate_runtime::LoadedModel;
use quorate_transport::{PinnedKeys, TlsIdentity, TransportSettings, bind_client, bind_server};

fn main() {
    let mut c = mesh_criterion(50, 4);
    let models = root().join("models");
    let sample = sample_features();
    let mlp_bytes = std::fs::read(models.join("mlp.onnx")).unwrap();
    let digest = sha256(&mlp_bytes);
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        dir.path(),
        1,
        &models,
        std::path::Path::new(env!("CARGO_BIN_EXE_quorate")),
    )
    .unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let (rt, client) = runtime_and_client(&mesh);
    let _entered = rt.enter();
    let req = |i: u64| InferRequest {
        job_id: [(i % 251) as u8; 16],
        nonce: i.to_le_bytes().repeat(4),
        kind: JobKind::Infer,
        model: digest,
        inputs: vec![sample.clone()],
        input_salts: Some(vec![[1; 32]]),
        policy: None,
        previous: None,
    };
    let request_size = Request::Infer(req(0)).encode().unwrap().len();

    // Baseline parts.
    let local = LoadedModel::from_bytes(&mlp_bytes, 1).unwrap();
    let echo_key = quorate_crypto::SecretKey::generate().unwrap();
    let pinned = PinnedKeys::from_keys([mesh.client_key.public_key()]);
    let echo = bind_server(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(TlsIdentity::from_secret_key(&echo_key).unwrap()),
        pinned,
        TransportSettings::default(),
    )
    .unwrap();
    let echo_addr = echo.local_addr().unwrap();
    {
        let echo = echo.clone();
        rt.spawn(async move { echo.serve(|_, bytes| async move { bytes }).await });
    }
    let echo_client = bind_client(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(TlsIdentity::from_secret_key(&mesh.client_key).unwrap()),
        TransportSettings::default(),
    )
    .unwrap();
    let echo_conn = rt
        .block_on(echo_client.connect(echo_addr, &echo_key.public_key()))
        .unwrap();
    let payload = vec![7u8; request_size];
    let log_path = dir.path().join("fsync.bin");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();

    let mut g = c.benchmark_group("mesh_job");
    g.bench_function("local_ort", |b| {
        b.iter(|| local.run(std::slice::from_ref(&sample)).unwrap())
    });
    g.bench_function("quic_round_trip", |b| {
        b.iter(|| {
            rt.block_on(echo_conn.request(&payload, Duration::from_secs(10)))
                .unwrap()
        })
    });
    g.bench_function("audit_fsync", |b| {
        b.iter(|| {
            log.write_all(&[0u8; 450]).unwrap();
            log.sync_data().unwrap();
        })
    });
    let mut i = 0u64;
    g.bench_function("verified_mesh_job", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(client.infer(&node, &req(i))).unwrap()
        })
    });
    g.finish();
    c.final_summary();

    // Requests per second with several concurrent clients, each with its own connection.
    let clients: Vec<Arc<MeshClient>> = (0..4)
        .map(|_| {
            Arc::new(
                MeshClient::new(
                    &mesh.client_key,
                    mesh.roster.clone(),
                    Duration::from_secs(30),
                )
                .unwrap(),
            )
        })
        .collect();
    let per_client = 300u64;
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(k, cl)| {
                let cl = cl.clone();
                let node = node.clone();
                let reqs: Vec<InferRequest> = (0..per_client)
                    .map(|j| req(10_000 * (k as u64 + 1) + j))
                    .collect();
                tokio::spawn(async move {
                    for r in reqs {
                        cl.infer(&node, &r).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let rps = (clients.len() as u64 * per_client) as f64 / start.elapsed().as_secs_f64();

    let m = |id| median_ns("mesh_job", id);
    if let (Some(ort), Some(rtt), Some(fsync), Some(job)) = (
        m("local_ort"),
        m("quic_round_trip"),
        m("audit_fsync"),
        m("verified_mesh_job"),
    ) {
        println!(
            "\nmedians: local ORT {:.1} µs, QUIC round trip ({request_size} B) {:.1} µs, audit fsync {:.1} µs, verified mesh job {:.1} µs",
            ort / 1e3,
            rtt / 1e3,
            fsync / 1e3,
            job / 1e3
        );
        println!(
            "mesh job / (local ORT + one QUIC round trip)         = {:.2}",
            job / (ort + rtt)
        );
        println!(
            "mesh job / (local ORT + one QUIC round trip + fsync) = {:.2}",
            job / (ort + rtt + fsync)
        );
    }
    println!(
        "throughput: {rps:.0} verified jobs/s with {} concurrent clients on one node",
        clients.len()
    );
}
