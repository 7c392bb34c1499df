//! `quorate infer --inputs DIR` (§12.6.1): one attested inference on the mesh per input file
//! (§11), many in flight at once on one connection to one node. Every reply is checked as a single
//! job's is (receipt signed by the node's pinned key, same job id, nonce and model,
//! commitments matching the tensors sent and received) before its files are written, so a
//! run cut short keeps every result it accepted.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use quorate_node::files::write_atomic;
use quorate_node::mesh::client::fresh_request;
use quorate_protocol::messages::{InferRequest, InferResponse};
use quorate_protocol::tensor_file::salted_tensors_json;

use super::infer::{InferArgs, pick_node};
use super::run_batch::{input_files, job_names};
use super::session::{Session, read_input};

/// Failed jobs after which no new job is sent: a node that fails this many is unlikely to
/// answer the rest, and each would wait out its timeout.
const MAX_FAILURES: usize = 10;

/// Failures quoted word for word at the end.
const FAILURES_SHOWN: usize = 10;

/// What became of one input file's job.
enum Outcome {
    /// Answered, checked and written.
    Done { promised: bool },
    /// Sent and failed, or answered and refused (the error says which).
    Failed(anyhow::Error),
    /// Not sent: too many jobs had failed by its turn.
    NotSent,
}

/// Runs `quorate infer --inputs DIR` for `model` on `session`.
pub fn run(
    args: &InferArgs,
    dir: &Path,
    session: &Session,
    model: [u8; 32],
) -> anyhow::Result<ExitCode> {
    let files = input_files(dir)?;
    let names = job_names(&files, dir)?;
    // Every input is read before anything is sent: a bad file stops the run with its name.
    let inputs = files
        .iter()
        .map(|f| read_input(f, &args.input_name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for sub in ["receipts", "outputs", "inputs"] {
        let d = args.out.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let total = inputs.len();
    let failed = AtomicUsize::new(0);
    let mut progress = Progress::new(total);
    let started = Instant::now();
    let (node, outcomes) = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let node = pick_node(&client, args.node.as_deref(), &model).await?;
        let (client, node_ref, failed) = (&client, &node, &failed);
        let jobs = names.iter().zip(inputs).map(|(name, tensors)| async move {
            if failed.load(Ordering::Relaxed) >= MAX_FAILURES {
                return (name, Outcome::NotSent);
            }
            let outcome = async {
                let req = fresh_request(model, tensors, None)?;
                let (response, _) = client.infer_patiently(node_ref, &req).await?;
                let promised = response.promise.is_some();
                let out = args.out.clone();
                let name = name.clone();
                // Each file is made durable before the next job's: off the async threads.
                tokio::task::spawn_blocking(move || write_job(&out, &name, &req, &response))
                    .await
                    .context("the writing task failed")??;
                anyhow::Ok(promised)
            }
            .await;
            match outcome {
                Ok(promised) => (name, Outcome::Done { promised }),
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    (name, Outcome::Failed(e))
                }
            }
        });
        let mut stream = futures_util::stream::iter(jobs).buffer_unordered(args.concurrency.into());
        let mut outcomes = Vec::with_capacity(total);
        while let Some(done) = stream.next().await {
            outcomes.push(done);
            progress.tick();
        }
        drop(stream);
        client.close();
        anyhow::Ok((node, outcomes))
    })?;
    progress.finish();
    report(args, dir, &node.name, started.elapsed(), &outcomes)
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

/// Prints what the run did; exit code 1 when any job failed or was not sent.
fn report(
    args: &InferArgs,
    dir: &Path,
    node: &str,
    took: Duration,
    outcomes: &[(&String, Outcome)],
) -> anyhow::Result<ExitCode> {
    let done = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Done { .. }))
        .count();
    let promised = outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Done { promised: true }));
    let mut failures: Vec<(&String, &anyhow::Error)> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Failed(e) => Some((*n, e)),
            _ => None,
        })
        .collect();
    failures.sort_by_key(|(n, _)| *n);
    let not_sent = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::NotSent))
        .count();
    let out = args.out.display();
    println!("node      {node}");
    println!(
        "ran       {done} of {} jobs from {} in {:.2} s ({:.0} jobs/s); each receipt verified: signed by {node}'s pinned key, commitments match",
        outcomes.len(),
        dir.display(),
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64().max(1e-9)
    );
    if done > 0 {
        println!(
            "wrote     {out}/receipts/NAME.cose, outputs/NAME.json, inputs/NAME.json for each input NAME answered"
        );
    }
    if promised {
        println!(
            "log       {node} promised to log the receipts ({out}/promises/); after a promise's deadline (seconds), upgrade its receipt with\n          \
             quorate log prove --roster ... --node {node} --receipt {out}/receipts/NAME.cose --promise {out}/promises/NAME.promise --out {out}/receipts/NAME.cose"
        );
    }
    for (name, e) in failures.iter().take(FAILURES_SHOWN) {
        eprintln!("failed    {name}: {e:#}");
    }
    if failures.len() > FAILURES_SHOWN {
        eprintln!("failed    … and {} more", failures.len() - FAILURES_SHOWN);
    }
    if not_sent > 0 {
        eprintln!(
            "not sent  {not_sent} jobs: {MAX_FAILURES} had failed by their turn; run again with a folder of the inputs that have no receipt in {out}/receipts/"
        );
    }
    Ok(if failures.is_empty() && not_sent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `N of M jobs` on standard error, on a terminal only, at most five times a second.
struct Progress {
    total: usize,
    done: usize,
    shown: Option<Instant>,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            shown: None,
            on: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        let due = self
            .shown
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
        if self.on && due {
            eprint!("\r{} of {} jobs", self.done, self.total);
            self.shown = Some(Instant::now());
        }
    }

    fn finish(&self) {
        if self.on && self.shown.is_some() {
            eprintln!("\r{} of {} jobs", self.done, self.total);
        }
    }
}
