//! `quorate ensemble --inputs DIR` (§12.6.1, §15): one private ensemble per input file, a few
//! at a time, each job's files written to `OUT/NAME/` as it finishes, so a run cut short keeps
//! every result it completed.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_protocol::tensor::Tensor;

use super::ensemble::{EnsembleArgs, result_values, write_outcome};
use super::folder_jobs::{Outcome, read_folder, report_failures, run_all, summary};
use super::session::Session;

/// Runs `quorate ensemble --inputs DIR` on `session`, each job as `spec` makes it of its
/// input's tensors.
pub fn run(
    args: &EnsembleArgs,
    dir: &Path,
    session: &Session,
    spec: &dyn Fn(Vec<Tensor>) -> EnsembleSpec,
) -> anyhow::Result<ExitCode> {
    let inputs = read_folder(dir, &args.input_name)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let started = Instant::now();
    let outcomes = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let outcomes = run_all(inputs, args.concurrency.into(), |name, tensors| {
            let client = &client;
            async move {
                let spec = spec(tensors);
                // Rounds are not told one by one: many jobs' would interleave.
                let o = ensemble_client::run(client, &session.key, &spec, &|_| {}).await?;
                let line = format!(
                    "{} {}; {} of {} members contributed",
                    spec.mode.name(),
                    result_values(&o.result),
                    o.payload.contributors.len(),
                    spec.members.len()
                );
                let out = args.out.join(&name);
                tokio::task::spawn_blocking(move || write_outcome(&out, &o, spec.mode))
                    .await
                    .context("the writing task failed")??;
                anyhow::Ok(line)
            }
        })
        .await;
        client.close();
        anyhow::Ok(outcomes)
    })?;
    let took = started.elapsed();
    let mut done: Vec<(&String, &String)> = outcomes
        .iter()
        .filter_map(|(name, o)| match o {
            Outcome::Done(line) => Some((name, line)),
            _ => None,
        })
        .collect();
    done.sort();
    for (name, line) in &done {
        println!("{name:<9} {line}");
    }
    let out = args.out.display();
    println!(
        "ran       {}; every member receipt checked, each aggregate signed by this client",
        summary(&outcomes, dir, took)
    );
    if !done.is_empty() {
        println!(
            "wrote     {out}/NAME/aggregate.cose, transcript.cbor, members/, result.json for each input NAME answered"
        );
    }
    Ok(report_failures(
        &outcomes,
        &format!("run again with a folder of the inputs that have no folder in {out}"),
    ))
}
