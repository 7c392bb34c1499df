//! The demo's private ensemble (§15): the hospital nodes of the demo mesh answer one
//! diagnosis together through SecAgg. The job is prepared (§15.1): its key and share rounds
//! run before the input is given; the last member is killed (SIGKILL) as the input goes out
//! with the masked-input round, and the job completes from the survivors. The aggregate and
//! member receipts land under `receipts/ensemble/` and are verified offline here.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::roster::Role;

use crate::commands::ensemble::{member_names, resolve_members, write_outcome};
use crate::commands::session::read_input;
use crate::local::LocalMesh;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};

/// Runs the ensemble part of the demo; `receipts` is the demo's receipts folder.
pub async fn run(mesh: &LocalMesh, models: &Path, receipts: &Path) -> anyhow::Result<()> {
    println!(
        "\n== private ensemble: the hospital models diagnose together, no one sees a single hospital's answer"
    );
    // Members: the nodes that serve a model of their own (hospital-i on node-i).
    let names: Vec<String> = mesh
        .roster
        .entries
        .iter()
        .filter(|e| e.role == Role::Node)
        .filter(|e| {
            e.models.iter().any(|m| {
                mesh.roster
                    .entries
                    .iter()
                    .filter(|o| o.models.contains(m))
                    .count()
                    == 1
            })
        })
        .map(|e| e.name.clone())
        .collect();
    if names.len() < 3 {
        println!("   skipped: needs at least 3 hospital nodes (run with --nodes 3 or more)");
        return Ok(());
    }
    let (members, digests) = resolve_members(&mesh.roster, &names, models)?;
    let victim = members.last().context("no member")?.name.clone();
    let pid = mesh
        .nodes
        .iter()
        .find(|(n, _)| *n == victim)
        .map(|(_, c)| c.id())
        .context("victim process")?;
    let spec = EnsembleSpec {
        mode: Mode::Mean,
        members: members.clone(),
        models: digests,
        inputs: read_input(&models.join("samples/features.npy"), "features")?,
        classes: 2,
        threshold: members.len() as u32 / 2 + 1,
        dp: None,
    };
    println!(
        "   {} members ({}), threshold {}; {victim} will be killed as the input goes out with the masked-input round",
        members.len(),
        names.join(", "),
        spec.threshold
    );
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(3),
    )?;
    let killed = AtomicBool::new(false);
    let progress = |m: &str| {
        if m.starts_with("round 2") && !killed.swap(true, Ordering::SeqCst) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            println!("   {m} — {victim} killed (SIGKILL)");
        } else {
            println!("   {m}");
        }
    };
    let key = &mesh.client_key;
    let prepared = ensemble_client::prepare(&client, key, &spec, &progress).await?;
    println!(
        "   prepared: keys advertised and shares dealt before the input exists; the input goes out with round 2 (spec §15.1)"
    );
    let outcome = ensemble_client::run_prepared(&client, key, &spec, prepared, &progress).await?;
    client.close();
    if outcome.payload.dropped.is_empty() {
        bail!("the killed member was not reported as dropped");
    }
    let out = receipts.join("ensemble");
    write_outcome(&out, &outcome, Mode::Mean)?;
    for line in {
        let mut v = Vec::new();
        print_outcome_to(&outcome, &members, &mut v);
        v
    } {
        println!("   {line}");
    }
    // Offline check, as an auditor holding the roster would do it.
    let lookup = |k: &quorate_crypto::KeyId| {
        mesh.roster
            .entries
            .iter()
            .find(|e| e.key.key_id() == *k)
            .map(|e| (e.key, e.name.clone()))
    };
    let line = crate::verify_files::verify_aggregate_file(&out.join("aggregate.cose"), &lookup)
        .map_err(|e| anyhow::anyhow!("aggregate receipt fails offline verification: {e}"))?;
    println!("   verified offline: {line}");
    println!("   written to {}", out.display());
    Ok(())
}

fn print_outcome_to(
    o: &ensemble_client::EnsembleOutcome,
    members: &[quorate_protocol::roster::Entry],
    out: &mut Vec<String>,
) {
    let names = |v: &[u32]| member_names(members, v);
    for e in &o.events {
        out.push(format!("event: {e}"));
    }
    out.push(format!(
        "contributors [{}], dropped [{}]; ensemble P(malignant)={:.6} P(benign)={:.6}",
        names(&o.payload.contributors).join(", "),
        names(&o.payload.dropped).join(", "),
        o.result.first().copied().unwrap_or(f64::NAN),
        o.result.get(1).copied().unwrap_or(f64::NAN),
    ));
}
