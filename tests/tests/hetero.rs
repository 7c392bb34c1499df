//! `quorate bench hetero` (§14.10), short: a mixed mesh of real node processes (CPU f32 with
//! 1, 2 and 4 threads, the OpenVINO plugin at f32 and bf16) serving all-MiniLM-L6-v2 under its
//! calibrated policy. Honest jobs must all be accepted with no node accused; poisoning at 10×
//! the honest envelope must be convicted every time; poisoning far below it must not convict
//! an honest node. The full campaign (1,000 honest jobs, 100 trials per row) is the same
//! command with its default counts. Where the OpenVINO plugin offers no CPU device (see
//! `quorate_tests::openvino`), the bench refuses to run, saying why, and the pipeline test's
//! OpenVINO nodes fall back to the CPU provider, so that mesh is not mixed there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_tests::{openvino, quorate, repo_root, text};

#[test]
fn a_mixed_mesh_accepts_honest_minilm_jobs_and_convicts_poisoning_at_ten_times_the_envelope() {
    let model = repo_root().join("third_party/models/all-MiniLM-L6-v2-int8.onnx");
    assert!(
        model.is_file(),
        "{} is missing: run ./scripts/fetch-models.sh (./scripts/test does)",
        model.display()
    );
    let o = quorate([
        "bench",
        "hetero",
        "--jobs",
        "9",
        "--trials",
        "6",
        "--multiples",
        "0.01,10",
        "--activation-multiples",
        "10",
        "--json",
    ]);
    if openvino::cpu_missing().is_some() {
        // No mixed mesh can be built here: the bench says so rather than measure CPU nodes
        // under the plugin's name.
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("offers no CPU device"), "{out}");
        assert!(out.contains("cannot run on this machine"), "{out}");
        return;
    }
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["honest_jobs"], 9);
    assert_eq!(doc["honest_all_agreed"], 9, "{doc}");
    assert_eq!(doc["honest_disagreements"], 0, "{doc}");
    assert_eq!(doc["honest_accused"], 0, "{doc}");
    // Different providers and precisions never give bit-identical outputs here, so the jobs
    // really crossed providers (the CPU alone is bit-identical across thread counts).
    assert_eq!(doc["honest_bit_identical"], 0, "{doc}");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let (tiny, ten, activation) = (&rows[0], &rows[1], &rows[2]);
    // Poisoning the activation after layer 3 at 10× is convicted like the output.
    assert_eq!(activation["poisoned"], "layer_norm_6");
    assert_eq!(activation["convicted"], 6, "{doc}");
    assert_eq!(ten["multiple"], 10.0);
    assert_eq!(ten["convicted"], 6, "{doc}");
    assert_eq!(ten["accepted_with_poisoner"], 0, "{doc}");
    // One hundredth of the honest drift is honest-looking: accepted, nobody convicted.
    assert_eq!(tiny["convicted"], 0, "{doc}");
    assert_eq!(tiny["accepted_with_poisoner"], 6, "{doc}");
    for r in rows {
        assert_eq!(r["honest_accused"], 0, "{doc}");
    }
    assert!(doc["policy"].as_str().unwrap().starts_with("cosine:min="));
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// MiniLM as six stages, one per transformer layer (each layer ends at its second
/// LayerNormalization), on a mixed mesh: node-1 CPU, node-2 OpenVINO f32, node-3 OpenVINO
/// bf16, node-4 CPU poisoning the activation of layer 3 by ten times the calibrated honest
/// envelope. Every stage runs on three nodes under the calibrated cosine policy.
#[test]
fn a_minilm_pipeline_split_at_layer_boundaries_on_a_mixed_mesh_convicts_the_poisoned_layer() {
    use quorate_cli::commands::pipeline::write_split;
    use quorate_cli::local::{Custom, LocalMesh};
    use quorate_crypto::tensor_digest::sha256;
    use quorate_protocol::governance::{Governance, Grant, Scope, VerificationRule};
    use quorate_protocol::policy::Policy;
    use quorate_protocol::tensor::Tensor;
    use quorate_protocol::tensor_file::salted_tensors_json;
    use quorate_tests::{quorate_bin, read_json};

    let root = repo_root();
    let minilm = root.join("third_party/models/all-MiniLM-L6-v2-int8.onnx");
    assert!(minilm.is_file(), "run ./scripts/fetch-models.sh");
    let calibration = read_json(&root.join("models/calibration/minilm.json"));
    let pair = &calibration["policies"]["bf16~f32"]["last_hidden_state"];
    let policy = Policy::parse(pair["cosine"].as_str().unwrap()).unwrap();
    let envelope = pair["observed"]["max_abs"].as_f64().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let stages = dir.path().join("stages");
    let cuts = "layer_norm_2,layer_norm_4,layer_norm_6,layer_norm_8,layer_norm_10";
    let files = write_split(&minilm, cuts, &stages).unwrap();
    assert_eq!(files.len(), 6);
    let mut governance = Governance::default();
    for f in &files {
        governance.verification.insert(
            0,
            VerificationRule {
                model: Some(sha256(&std::fs::read(f).unwrap())),
                grants: vec![Grant {
                    policy,
                    scope: Scope::AnyProvider,
                }],
                min_quorum: 2,
            },
        );
    }
    let providers = ["cpu", "openvino:CPU:f32", "openvino:CPU:bf16", "cpu"];
    let poison = format!(
        "test_misbehave = \"noise:{:e}\"\ntest_misbehave_model = \"stage-3.onnx\"\n",
        10.0 * envelope
    );
    let mesh = LocalMesh::start_custom(
        &dir.path().join("mesh"),
        4,
        &root.join("models"),
        &quorate_bin(),
        &Custom {
            extra_config: &|i| {
                if i == 3 {
                    poison.clone()
                } else {
                    String::new()
                }
            },
            extra_models: &|_| files.clone(),
            providers: &|i| vec![providers[i].to_string()],
            governance,
            ..Custom::default()
        },
    )
    .unwrap();

    // One sentence of 24 tokens.
    let seq = 24u64;
    let i64s = |name: &str, v: Vec<i64>| {
        Tensor::new(
            name,
            quorate_protocol::tensor::DType::I64,
            vec![1, seq],
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
        .unwrap()
    };
    let ids: Vec<i64> = (0..seq as i64).map(|i| 101 + (i * 7919) % 29000).collect();
    let inputs = [
        i64s("input_ids", ids),
        i64s("attention_mask", vec![1; seq as usize]),
        i64s("token_type_ids", vec![0; seq as usize]),
    ];
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&salted_tensors_json(&inputs, None)).unwrap(),
    )
    .unwrap();

    let out = dir.path().join("run");
    let o = quorate([
        "pipeline",
        "--roster",
        s(&mesh.dir.join("roster.cose")),
        "--admin",
        s(&mesh.dir.join("admin.pub")),
        "--key",
        s(&mesh.client_key_path),
        "--stages",
        s(&stages),
        "--replicas",
        "3",
        "--policy",
        &policy.describe(),
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--timeout",
        "120",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary = read_json(&out.join("pipeline.json"));
    let caught = summary["caught"].as_array().unwrap();
    assert_eq!(caught.len(), 1, "{summary}");
    assert_eq!(
        (caught[0]["stage"].as_u64(), caught[0]["node"].as_str()),
        (Some(3), Some("node-4")),
        "{summary}"
    );

    // Stage 1 ran on the CPU, OpenVINO f32 and OpenVINO bf16 nodes, and all three agreed.
    let stage1: Vec<&str> = summary["stages"][0]["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(stage1, ["node-1", "node-2", "node-3"], "{summary}");

    // Offline, the stage-3 bundle convicts node-4 and nobody else; honest drift between
    // the CPU, OpenVINO f32 and bf16 nodes convicted no one at any layer.
    let o = quorate([
        "verify",
        s(&out.join(caught[0]["evidence"].as_str().unwrap())),
        "--roster",
        s(&mesh.dir.join("roster.cose")),
        "--admin",
        s(&mesh.dir.join("admin.pub")),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("verify printed no JSON: {}", text(&o)));
    assert!(o.status.success(), "{v}");
    let convicted: Vec<&str> = v["bundles"][0]["convicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["signer"].as_str().unwrap())
        .collect();
    assert_eq!(convicted, ["node-4"], "{v}");
}
