//! `quorate infer --inputs DIR` (§12.6.1): one attested inference on the mesh per input file
//! (§11), many in flight at once on one connection to one node. Every reply is checked as a
//! single job's is (receipt signed by the node's pinned key, same job id, nonce and model,
//! commitments matching the tensors sent and received) before its files are written, so a
//! run cut short keeps every result it accepted.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_node::files::write_atomic;
use quorate_node::mesh::client::fresh_request;
use quorate_protocol::messages::{InferRequest, InferResponse};
use quorate_protocol::tensor_file::salted_tensors_json;

use super::folder_jobs::{Outcome, read_folder, report_failures, run_all, summary};
use super::infer::{InferArgs, pick_node};
use super::session::Session;

/// Runs `quorate infer --inputs DIR` for `model` on `session`.
pub fn run(
    args: &InferArgs,
    dir: &Path,
    session: &Session,
    model: [u8; 32],
) -> anyhow::Result<ExitCode> {
    let inputs = read_folder(dir, &args.input_name)?;
    for sub in ["receipts", "outputs", "inputs"] {
        let d = args.out.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let started = Instant::now();
    let (node, outcomes) = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let node = pick_node(&client, args.node.as_deref(), &model).await?;
        let outcomes = run_all(inputs, args.concurrency.into(), |name, tensors| {
            let (client, node) = (&client, &node);
            async move {
                let req = fresh_request(model, tensors, None)?;
                let (response, _) = client.infer_patiently(node, &req).await?;
                let promised = response.promise.is_some();
                let out = args.out.clone();
                // Each job's files are made durable as it comes: off the async threads.
                tokio::task::spawn_blocking(move || write_job(&out, &name, &req, &response))
                    .await
                    .context("the writing task failed")??;
                anyhow::Ok(promised)
            }
        })
        .await;
        client.close();
        anyhow::Ok((node.name, outcomes))
    })?;
    let took = started.elapsed();
    let out = args.out.display();
    println!("node      {node}");
    println!(
        "ran       {}; each receipt verified: signed by {node}'s pinned key, commitments match",
        summary(&outcomes, dir, took)
    );
    if outcomes.iter().any(|(_, o)| matches!(o, Outcome::Done(_))) {
        println!(
            "wrote     {out}/receipts/NAME.cose, outputs/NAME.json, inputs/NAME.json for each input NAME answered"
        );
    }
    if outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Done(true)))
    {
        println!(
            "log       {node} promised to log the receipts ({out}/promises/); after a promise's deadline (seconds), upgrade its receipt with\n          \
             quorate log prove --roster ... --node {node} --receipt {out}/receipts/NAME.cose --promise {out}/promises/NAME.promise --out {out}/receipts/NAME.cose"
        );
    }
    Ok(report_failures(
        &outcomes,
        &format!("run again with a folder of the inputs that have no receipt in {out}/receipts/"),
    ))
}

/// Writes one job's files under `out`: `receipts/NAME.cose`, `outputs/NAME.json`,
/// `inputs/NAME.json` (private: the inputs and their salts), and `promises/NAME.promise` when
/// the node promised to log the receipt (§18.6).
fn write_job(
    out: &Path,
    name: &str,
    req: &InferRequest,
    response: &InferResponse,
) -> anyhow::Result<()> {
    let outputs = salted_tensors_json(&response.outputs, response.output_salts.as_deref());
    let inputs = salted_tensors_json(&req.inputs, req.input_salts.as_deref());
    let file = |dir: &str, ext: &str| out.join(dir).join(format!("{name}.{ext}"));
    write_atomic(
        &file("outputs", "json"),
        serde_json::to_vec_pretty(&outputs)?.as_slice(),
        0o644,
    )?;
    write_atomic(
        &file("inputs", "json"),
        serde_json::to_vec_pretty(&inputs)?.as_slice(),
        0o600,
    )?;
    if let Some(promise) = &response.promise {
        std::fs::create_dir_all(out.join("promises"))?;
        write_atomic(&file("promises", "promise"), promise, 0o644)?;
    }
    // The receipt last: a receipt on disk means the job's files are all there.
    write_atomic(&file("receipts", "cose"), &response.receipt, 0o644)
}
