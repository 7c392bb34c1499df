//! `quorate demo`, pipeline part (§13): mlp.onnx split at h1,h2, the stages run across nodes
//! with every stage on two of them, one node poisoning its stage-2 activation caught and
//! named, and the receipt chain verified offline. Files go under `DIR/pipeline/`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_protocol::chain::ReceiptChain;
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::Role;
use quorate_protocol::tensor_file::parse_npy;

use crate::commands::pipeline::{declared_pipeline, write_run, write_split};
use crate::local::LocalMesh;
use crate::verify_files::verify_bundles;
use crate::verify_files::verify_chain_file;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::pipeline::{CrossCheck, Plan};
use quorate_verify::TrustStore;
use quorate_verify::chain::human_line;

/// Where the model is cut.
pub const CUTS: &str = "h1,h2";

/// Runs the pipeline part on a mesh of its own (three nodes serving the stage models, the
/// third poisoning stage 2), under `dir/pipeline/`.
pub async fn run(models: &Path, dir: &Path) -> anyhow::Result<()> {
    println!("\n== a split pipeline across nodes, with a receipt chain");
    let dir = dir.join("pipeline");
    let stages_dir = dir.join("stages");
    let files = write_split(&models.join("mlp.onnx"), CUTS, &stages_dir)?;
    println!(
        "   mlp.onnx cut at {CUTS} into {} stage models ({})",
        files.len(),
        stages_dir.display()
    );
    let exe = std::env::current_exe().context("cannot find the quorate binary")?;
    // node-3's test-only keys make the local mesh run it as `quorate-adversary`, found beside
    // this binary.
    let mesh = tokio::task::block_in_place(|| {
        LocalMesh::start_with_models(
            &dir.join("mesh"),
            3,
            models,
            &exe,
            &|i| {
                if i == 2 {
                    "test_misbehave = \"noise:1e-3\"\ntest_misbehave_model = \"stage-2.onnx\"\n"
                        .into()
                } else {
                    String::new()
                }
            },
            &|_| files.clone(),
        )
    })?;
    println!(
        "   a second mesh of 3 node processes (own roster, {}) serves every stage; its node-3 adds\n   \
         noise of 1e-3 to h2, the stage-2 activation",
        dir.join("mesh").display()
    );
    let text = std::fs::read(stages_dir.join("stages.json"))?;
    let plan = Plan::from_stages_json(&text)?;
    let sample = parse_npy(
        &std::fs::read(models.join("samples/features.npy"))?,
        "features",
    )?;
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )?;
    let run = quorate_node::mesh::pipeline::run(
        &client,
        &plan,
        &[sample],
        CrossCheck::Replicas(2),
        Policy::Exact,
        &|l| println!("   {l}"),
    )
    .await;
    client.close();
    let run = run?;
    let out = dir.join("run");
    write_run(&out, &run)?;
    if let Some((t, _)) = run.outputs().first() {
        let p = t.to_f64_vec();
        println!(
            "   output {} = [{}]",
            t.name(),
            p.iter()
                .map(|x| format!("{x:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Offline, as an auditor holding the roster: the chain against the split's stages.json,
    // and the evidence bundle of the stage that was caught.
    let mut trust = TrustStore::default();
    for e in mesh.roster.entries.iter().filter(|e| e.role == Role::Node) {
        trust.add(e.key, e.name.clone());
    }
    let pipeline = declared_pipeline(&stages_dir.join("stages.json"))?;
    let report = verify_chain_file(&out.join("chain.qchain"), &trust, Some(&pipeline), &[]);
    println!("   {}", human_line(&report));
    if report.failure.is_some() {
        bail!("the demo's receipt chain does not verify");
    }
    let chain = ReceiptChain::from_cbor(&std::fs::read(out.join("chain.qchain"))?)?;
    println!(
        "   the chain binds {} stage receipts: each names the previous stage's receipt digest, and\n   \
         each stage's input commitment equals the previous stage's output commitment",
        chain.stages.iter().map(|s| s.receipts.len()).sum::<usize>()
    );
    if run.dissents.is_empty() {
        bail!("the poisoned stage was not caught");
    }
    for d in &run.dissents {
        let bundle = out
            .join("evidence")
            .join(format!("stage-{}.bundle", d.stage));
        let reports = verify_bundles(std::slice::from_ref(&bundle), &trust);
        let convicted: Vec<String> = reports
            .iter()
            .filter_map(|r| r.result.as_ref().ok())
            .flat_map(|b| b.convicted.iter())
            .filter_map(|k| trust.get(k).map(|(_, n)| n.clone()))
            .collect();
        if convicted != [d.answer.node.clone()] {
            bail!(
                "the stage-{} evidence bundle does not convict exactly {}",
                d.stage,
                d.answer.node
            );
        }
        println!(
            "   stage {} localised: {} disagreed with {} on the same input digest; {} convicts it offline",
            d.stage,
            d.answer.node,
            d.majority.join(" and "),
            bundle.display()
        );
    }
    println!(
        "   check again: quorate verify {} --roster {} --admin {} --pipeline {}",
        out.display(),
        mesh.dir.join("roster.cose").display(),
        mesh.dir.join("admin.pub").display(),
        stages_dir.join("stages.json").display()
    );
    drop(mesh);
    Ok(())
}
