//! Verified-job latency (§14): the same job on R = 3 replicas (three `quorate node` processes
//! over QUIC, receipts checked, outputs compared, quorum decided) against a single-node job,
//! both measured in the same run on the same mesh.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{median_ns, mesh_criterion, root, runtime_and_client, sample_features};

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::verified;
use quorate_protocol::messages::InferRequest;
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::JobKind;

fn main() {
    let mut c = mesh_criterion(50, 4);
    let models = root().join("models");
    let sample = sample_features();
    let digest = sha256(&std::fs::read(models.join("mlp.onnx")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        dir.path(),
        3,
        &models,
        std::path::Path::new(env!("CARGO_BIN_EXE_quorate")),
    )
    .unwrap();
    let nodes: Vec<_> = (1..=3)
        .map(|i| mesh.roster.by_name(&format!("node-{i}")).unwrap().clone())
        .collect();
    let (rt, client) = runtime_and_client(&mesh);
    let _entered = rt.enter();
    let policy = Policy::Default;
    let req = |i: u64| InferRequest {
        job_id: [(i % 251) as u8; 16],
        nonce: i.to_le_bytes().repeat(4),
        kind: JobKind::Infer,
        model: digest,
        inputs: vec![sample.clone()],
        input_salts: Some(vec![[1; 32]]),
        policy: Some(policy.digest().unwrap()),
        previous: None,
    };

    let mut g = c.benchmark_group("verified_job");
    let mut i = 0u64;
    g.bench_function("single_node", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(client.infer(&nodes[0], &req(i))).unwrap()
        })
    });
    g.bench_function("replicas_3", |b| {
        b.iter(|| {
            i += 1;
            let o = rt
                .block_on(verified::run(
                    &client,
                    req(i),
                    policy,
                    3,
                    2,
                    nodes.clone(),
                    &|_| {},
                ))
                .unwrap();
            assert_eq!(o.verdict.agreeing.len(), 3);
        })
    });
    g.finish();
    c.final_summary();
    // Load on a shared machine drifts between criterion's two groups: also alternate the two
    // jobs one by one and compare the medians of these paired samples.
    let (mut singles, mut triples) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        i += 1;
        let t = std::time::Instant::now();
        rt.block_on(client.infer(&nodes[0], &req(i))).unwrap();
        singles.push(t.elapsed().as_secs_f64());
        i += 1;
        let t = std::time::Instant::now();
        rt.block_on(verified::run(
            &client,
            req(i),
            policy,
            3,
            2,
            nodes.clone(),
            &|_| {},
        ))
        .unwrap();
        triples.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, three) = (median(&mut singles), median(&mut triples));
    println!(
        "alternating, 400 pairs: single-node job {:.1} µs, 3 replicas {:.1} µs; ratio {:.2}",
        one * 1e6,
        three * 1e6,
        three / one
    );
    if let (Some(one), Some(three)) = (
        median_ns("verified_job", "single_node"),
        median_ns("verified_job", "replicas_3"),
    ) {
        println!(
            "\nmedians: single-node job {:.1} µs, verified job with 3 replicas {:.1} µs; ratio {:.2}",
            one / 1e3,
            three / 1e3,
            three / one
        );
    }
}
