//! Pipeline job latency against the whole model on one node, measured in the same run (README
//! "Pipeline jobs"): mlp.onnx cut at h1,h2 into 3 stages on 3 `quorate node` processes over
//! QUIC, with and without a cross-check per stage, against one mesh job of the whole model.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{median_ns, mesh_criterion, root, runtime_and_client, sample_features};

use quorate_cli::commands::pipeline::write_split;
use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::pipeline::{CrossCheck, Plan, run};
use quorate_protocol::messages::InferRequest;
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::JobKind;

fn main() {
    let mut c = mesh_criterion(30, 4);
    let models = root().join("models");
    let sample = sample_features();
    let digest = sha256(&std::fs::read(models.join("mlp.onnx")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let stages = dir.path().join("stages");
    let files = write_split(&models.join("mlp.onnx"), "h1,h2", &stages).unwrap();
    let plan = Plan::from_stages_json(&std::fs::read(stages.join("stages.json")).unwrap()).unwrap();
    let mesh = LocalMesh::start_with_models(
        &dir.path().join("mesh"),
        3,
        &models,
        std::path::Path::new(env!("CARGO_BIN_EXE_quorate")),
        &|_| String::new(),
        &|_| files.clone(),
    )
    .unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let (rt, client) = runtime_and_client(&mesh);
    let _entered = rt.enter();
    let mut i = 0u64;
    let inputs = [sample.clone()];

    let mut g = c.benchmark_group("pipeline_job");
    g.bench_function("whole_model_one_node", |b| {
        b.iter(|| {
            i += 1;
            let req = InferRequest {
                job_id: [(i % 251) as u8; 16],
                nonce: i.to_le_bytes().repeat(4),
                kind: JobKind::Infer,
                model: digest,
                inputs: vec![sample.clone()],
                input_salts: Some(vec![[1; 32]]),
                policy: None,
                previous: None,
            };
            rt.block_on(client.infer(&node, &req)).unwrap()
        })
    });
    for (id, check) in [
        ("three_stages", CrossCheck::Replicas(1)),
        ("three_stages_two_replicas", CrossCheck::Replicas(2)),
    ] {
        g.bench_function(id, |b| {
            b.iter(|| {
                rt.block_on(run(&client, &plan, &inputs, check, Policy::Exact, &|_| {}))
                    .unwrap()
            })
        });
    }
    g.finish();
    c.final_summary();
    client.close();

    let m = |id| median_ns("pipeline_job", id);
    if let (Some(whole), Some(p1), Some(p2)) = (
        m("whole_model_one_node"),
        m("three_stages"),
        m("three_stages_two_replicas"),
    ) {
        println!(
            "\nmedians: whole model on one node {:.1} µs, 3-stage pipeline {:.1} µs, 3-stage pipeline with 2 replicas per stage {:.1} µs",
            whole / 1e3,
            p1 / 1e3,
            p2 / 1e3
        );
        println!(
            "3-stage pipeline / whole model             = {:.2}",
            p1 / whole
        );
        println!(
            "3-stage pipeline, 2 replicas / whole model = {:.2}",
            p2 / whole
        );
    }
}
