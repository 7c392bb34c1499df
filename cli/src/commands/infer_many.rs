//! `quorate infer --inputs DIR` (§12.6.1): one attested inference on the mesh per input file
//! (§11), many in flight at once on one connection to one node. Every reply is checked as a
//! single job's is (receipt signed by the node's pinned key, same job id, nonce and model,
//! commitments matching the tensors sent and received) before its files are written, so a
//! run cut short keeps every result it accepted.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_node::mesh::client::fresh_request;
use quorate_protocol::tensor_file::salted_tensors_json;

use super::folder_jobs::{Outcome, read_folder, report_failures, run_all, summary};
use super::infer::{InferArgs, pick_node};
use super::run::job_files;
use super::session::Session;

/// Runs `quorate infer --inputs DIR` for `model` on `session`.
pub fn run(
    args: &InferArgs,
    dir: &Path,
    session: &Session,
    model: [u8; 32],
) -> anyhow::Result<ExitCode> {
    let inputs = read_folder(dir, &args.input_name)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
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
                let inputs = salted_tensors_json(&req.inputs, req.input_salts.as_deref());
                let outputs =
                    salted_tensors_json(&response.outputs, response.output_salts.as_deref());
                let files = job_files(
                    &args.out,
                    &name,
                    (&inputs, &outputs),
                    &response.receipt,
                    response.promise.as_deref(),
                )?;
                // Made durable as each job comes, off the async threads (§12.6.1): the
                // writes of the jobs in flight overlap, and the file system's journal takes
                // their flushes together.
                tokio::task::spawn_blocking(move || files.write())
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
