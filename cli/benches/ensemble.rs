//! Private ensemble latency (§15.8): one SecAgg ensemble job over five `quorate node`
//! processes (hospital-1..5, mean mode, no dropout) against the baseline measured in the
//! same run: the same five inferences as plain verified `infer` requests sent concurrently.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{median_ns, mesh_criterion, root, runtime_and_client, sample_features};

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::messages::InferRequest;
use quorate_protocol::receipt::JobKind;

fn main() {
    let mut c = mesh_criterion(20, 5);
    let models = root().join("models");
    let sample = sample_features();
    let digests: Vec<[u8; 32]> = (1..=5)
        .map(|i| sha256(&std::fs::read(models.join(format!("hospital-{i}.onnx"))).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        dir.path(),
        5,
        &models,
        std::path::Path::new(env!("CARGO_BIN_EXE_quorate")),
    )
    .unwrap();
    let members: Vec<_> = (1..=5)
        .map(|i| mesh.roster.by_name(&format!("node-{i}")).unwrap().clone())
        .collect();
    let (rt, client) = runtime_and_client(&mesh);
    let _entered = rt.enter();
    let spec = EnsembleSpec {
        mode: Mode::Mean,
        members: members.clone(),
        models: digests.clone(),
        inputs: vec![sample.clone()],
        classes: 2,
        threshold: 3,
        dp: None,
    };
    let mut i = 0u64;
    let mut g = c.benchmark_group("ensemble");
    g.bench_function("plain_5_inferences", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(futures_util::future::join_all(
                members.iter().zip(&digests).map(|(m, d)| {
                    let req = InferRequest {
                        job_id: [(i % 251) as u8; 16],
                        nonce: i.to_le_bytes().repeat(4),
                        kind: JobKind::Infer,
                        model: *d,
                        inputs: vec![sample.clone()],
                        input_salts: Some(vec![[1; 32]]),
                        policy: None,
                        previous: None,
                    };
                    let client = &client;
                    async move { client.infer(m, &req).await.unwrap() }
                }),
            ))
        })
    });
    g.bench_function("secagg_ensemble_5", |b| {
        b.iter(|| {
            rt.block_on(ensemble_client::run(
                &client,
                &mesh.client_key,
                &spec,
                &|_| {},
            ))
            .unwrap()
        })
    });
    g.finish();
    c.final_summary();
    if let (Some(plain), Some(ens)) = (
        median_ns("ensemble", "plain_5_inferences"),
        median_ns("ensemble", "secagg_ensemble_5"),
    ) {
        println!(
            "\nmedians: 5 plain verified inferences (concurrent) {:.2} ms, SecAgg ensemble of 5 {:.2} ms",
            plain / 1e6,
            ens / 1e6
        );
        println!("ensemble / plain = {:.2}", ens / plain);
    }
}
