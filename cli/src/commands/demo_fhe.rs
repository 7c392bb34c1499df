//! The demo's encrypted-ensemble part (§16): fresh TFHE keys, up to three members scoring one
//! ciphertext with their qlinear models, an aggregator adding the encrypted scores, and the
//! client decrypting only the sum, which must equal the plaintext quantized computation.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use quorate_protocol::roster::Role;

use crate::local::LocalMesh;
use quorate_fhe::engine;
use quorate_node::fhe::client::ClientKeys;
use quorate_node::fhe::job;
use quorate_node::mesh::client::MeshClient;

/// Runs the encrypted ensemble on `mesh`; receipts go to `receipts`.
pub async fn run(mesh: &LocalMesh, models: &Path, receipts: &Path) -> anyhow::Result<()> {
    println!(
        "\n== encrypted ensemble (TFHE, {}): nodes never see the features or the scores",
        engine::PARAMETERS
    );
    println!("   (this part takes tens of seconds: TFHE keys are large and evaluation is slow)");
    let start = Instant::now();
    let set = engine::keygen(&mut |_| {});
    let server_bytes = engine::to_bytes(&set.server, quorate_protocol::fhe::MAX_SERVER_KEY_LEN)?;
    let keys = ClientKeys::from_parts(set.client, set.public, server_bytes);
    println!(
        "   client generated its keys in {:.1} s (compressed server key {:.1} MiB)",
        start.elapsed().as_secs_f64(),
        keys.server_bytes.len() as f64 / (1 << 20) as f64
    );
    let known = job::known_models(models)?;
    let members: Vec<_> = mesh
        .roster
        .entries
        .iter()
        .filter(|e| e.role == Role::Node && known.iter().any(|k| e.models.contains(&k.digest)))
        .take(3)
        .cloned()
        .collect();
    ensure!(!members.is_empty(), "no node serves a qlinear model");
    let raw: Vec<f64> = serde_json::from_value(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(
            models.join("samples/qlinear-features.json"),
        )?)?["features"]
            .clone(),
    )
    .context("samples/qlinear-features.json")?;
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(180),
    )?;
    let aggregator = members[0].clone();
    let result = job::run(
        &client,
        &keys,
        &members,
        &aggregator,
        &known,
        &raw,
        &mut |line| println!("   {line}"),
    )
    .await;
    client.close();
    let result = result?;
    let evidence = receipts.join("fhe");
    job::write(&evidence, &result)?;
    let expected = result.expected.context("no plaintext reference")?;
    ensure!(
        result.sum == expected,
        "decrypted sum {} differs from the plaintext quantized computation {expected}",
        result.sum
    );
    println!(
        "   decrypted sum {} ({}) = plaintext quantized computation {expected}; total {:.1} s",
        result.sum,
        if result.sum > 0 {
            "benign"
        } else {
            "malignant"
        },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
