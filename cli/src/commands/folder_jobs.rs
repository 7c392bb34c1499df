//! A mesh job per input file of a folder (`quorate infer --inputs`, `quorate ensemble
//! --inputs`, §12.6.1): the files read first, the jobs run a few at a time, each outcome kept
//! by its input's name, progress on a terminal, and one report at the end.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quorate_protocol::tensor::Tensor;

use super::run_batch::{input_files, job_names};
use super::session::read_input;

/// Failed jobs after which no new job is started: a mesh that fails this many is unlikely to
/// answer the rest, and each would wait out its timeout.
pub const MAX_FAILURES: usize = 10;

/// Failures quoted word for word at the end.
const FAILURES_SHOWN: usize = 10;

/// What became of one input file's job.
pub enum Outcome<T> {
    /// Answered, checked and written.
    Done(T),
    /// Started and failed, or answered and refused (the error says which).
    Failed(anyhow::Error),
    /// Not started: too many jobs had failed by its turn.
    NotSent,
}

/// The input files of `dir` (`.npy`, `.npz`, `.json`) in name order, each with its job name
/// and its tensors (a `.npy` file feeds `npy_name`). Every file is read before any job runs:
/// one that does not parse stops the command, by name, with nothing sent.
pub fn read_folder(dir: &Path, npy_name: &str) -> anyhow::Result<Vec<(String, Vec<Tensor>)>> {
    let files = input_files(dir)?;
    let names = job_names(&files, dir)?;
    files
        .iter()
        .zip(names)
        .map(|(f, name)| Ok((name, read_input(f, npy_name)?)))
        .collect()
}

/// Runs `job` on every input, `concurrency` at a time, and returns each outcome with its
/// input's name, in the order they finished. Once [`MAX_FAILURES`] have failed, the jobs not
/// yet started are not.
pub async fn run_all<T, F, Fut>(
    inputs: Vec<(String, Vec<Tensor>)>,
    concurrency: usize,
    job: F,
) -> Vec<(String, Outcome<T>)>
where
    F: Fn(String, Vec<Tensor>) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let failed = AtomicUsize::new(0);
    let mut progress = Progress::new(inputs.len());
    let (job, failed_ref) = (&job, &failed);
    let jobs = inputs.into_iter().map(|(name, tensors)| async move {
        if failed_ref.load(Ordering::Relaxed) >= MAX_FAILURES {
            return (name, Outcome::NotSent);
        }
        match job(name.clone(), tensors).await {
            Ok(t) => (name, Outcome::Done(t)),
            Err(e) => {
                failed_ref.fetch_add(1, Ordering::Relaxed);
                (name, Outcome::Failed(e))
            }
        }
    });
    let mut stream = futures_util::stream::iter(jobs).buffer_unordered(concurrency.max(1));
    let mut outcomes = Vec::new();
    while let Some(done) = stream.next().await {
        outcomes.push(done);
        progress.tick();
    }
    progress.finish();
    outcomes
}

/// Prints the failures (the first [`FAILURES_SHOWN`], by name) and the jobs not started;
/// exit code 1 when there were any, with `retry` saying how to send the rest.
pub fn report_failures<T>(outcomes: &[(String, Outcome<T>)], retry: &str) -> ExitCode {
    let mut failures: Vec<(&String, &anyhow::Error)> = outcomes
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Failed(e) => Some((n, e)),
            _ => None,
        })
        .collect();
    failures.sort_by_key(|(n, _)| *n);
    let not_sent = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::NotSent))
        .count();
    for (name, e) in failures.iter().take(FAILURES_SHOWN) {
        eprintln!("failed    {name}: {e:#}");
    }
    if failures.len() > FAILURES_SHOWN {
        eprintln!("failed    … and {} more", failures.len() - FAILURES_SHOWN);
    }
    if not_sent > 0 {
        eprintln!("not sent  {not_sent} jobs: {MAX_FAILURES} had failed by their turn; {retry}");
    }
    if failures.is_empty() && not_sent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The jobs done, and `done` as a rate over `took`: `"N of M jobs from DIR in S s (R jobs/s)"`.
pub fn summary<T>(outcomes: &[(String, Outcome<T>)], dir: &Path, took: Duration) -> String {
    let done = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Done(_)))
        .count();
    format!(
        "{done} of {} jobs from {} in {:.2} s ({:.0} jobs/s)",
        outcomes.len(),
        dir.display(),
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64().max(1e-9)
    )
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
