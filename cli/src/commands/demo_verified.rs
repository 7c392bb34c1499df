//! `quorate demo`, verified-job part (§14): three replicas, one deliberately poisoned node
//! caught, its evidence bundle written and confirmed offline.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::policy::Policy;
use quorate_protocol::tensor_file::parse_npy;

use crate::commands::infer_verified::write_outcome;
use crate::local::LocalMesh;
use crate::verify_files::verify_bundles;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::client::fresh_request;
use quorate_node::mesh::verified;
use quorate_verify::TrustStore;
use quorate_verify::bundle::human_lines;

/// The model the poisoned demo node lies about (only that one, so other demo steps are
/// unaffected) and how.
pub const POISONED_MODEL: &str = "logistic.onnx";
/// The poisoned node's misbehaviour.
pub const POISON: &str = "noise:0.05";

/// Extra node.toml lines for node `i` of `n` in the demo: the last node is poisoned. Its
/// test-only keys make the local mesh run it as `quorate-adversary` (the `quorate` binary
/// refuses them), found beside the running `quorate`.
pub fn node_config(i: usize, n: usize) -> String {
    if n >= 3 && i == n - 1 {
        format!("test_misbehave = \"{POISON}\"\ntest_misbehave_model = \"{POISONED_MODEL}\"\n")
    } else {
        String::new()
    }
}

/// Runs a verified job on the last three nodes (the last one poisoned), writes the outcome
/// under `dir/verified/` and the bundle under `dir/evidence/`, and checks the bundle offline.
pub async fn run(mesh: &LocalMesh, models: &Path, dir: &Path) -> anyhow::Result<()> {
    let nodes: Vec<_> = mesh.roster.nodes().cloned().collect();
    println!(
        "\n== verified job: 3 replicas compare outputs; one node is poisoned ({POISON} on {POISONED_MODEL})"
    );
    if nodes.len() < 3 {
        println!("   skipped: needs at least 3 nodes");
        return Ok(());
    }
    let candidates = nodes[nodes.len() - 3..].to_vec();
    let poisoned = candidates[2].clone();
    let policy = Policy::Default;
    let sample = parse_npy(
        &std::fs::read(models.join("samples/features.npy"))?,
        "features",
    )?;
    let request = fresh_request(
        sha256(&std::fs::read(models.join(POISONED_MODEL))?),
        vec![sample],
        Some(&policy),
    )?;
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )?;
    let progress = |_: &str| {};
    let outcome = verified::run(&client, request, policy, 3, 2, candidates, &progress).await;
    client.close();
    let outcome = outcome.context("verified job")?;
    let written = write_outcome(&outcome, &dir.join("verified"), &dir.join("evidence"))?;
    let v = &outcome.verdict;
    let names: Vec<&str> = v.agreeing.iter().map(|&i| outcome.name(i)).collect();
    println!(
        "   accepted: {} agree under policy {} (quorum 2)",
        names.join(" and "),
        policy.describe()
    );
    let caught: Vec<&str> = v.proven_wrong.iter().map(|&i| outcome.name(i)).collect();
    if caught != [poisoned.name.as_str()] {
        bail!("expected {} to be caught, caught {caught:?}", poisoned.name);
    }
    let kept = written.bundle.context("no evidence bundle written")?;
    println!(
        "   CAUGHT {}: its signed outputs disagree with both others; evidence {}",
        poisoned.name,
        kept.display()
    );
    // Offline, as `quorate verify` does for an auditor holding only the roster.
    let mut trust = TrustStore::default();
    for e in &nodes {
        trust.add(e.key, e.name.clone());
    }
    let reports = verify_bundles(std::slice::from_ref(&kept), &trust);
    let proven = reports
        .first()
        .and_then(|r| r.result.as_ref().ok())
        .map(|b| b.convicted.clone());
    if proven != Some(vec![poisoned.key.key_id()]) || !reports.iter().all(|r| r.ok()) {
        bail!("the bundle does not prove exactly {} wrong", poisoned.name);
    }
    for r in &reports {
        for line in human_lines(r, &trust) {
            println!("   {line}");
        }
    }
    Ok(())
}
