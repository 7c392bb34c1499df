//! `quorate run --inputs DIR`: one attested job per input file, all signed under one batch
//! root (§5), each result with a receipt that verifies alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_crypto::SecretKey;
use quorate_node::clock::unix_now;
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::attested_batch;

use super::durable_files::{MAX_GROUP, write_group};
use super::run::{RunArgs, load_inputs, parse_nonce, result_files};

/// Most input files in one batch (§5.1: a batch holds at most 2^20 leaves).
const MAX_BATCH: usize = 1 << 20;

/// The input files in `dir` (`.npy`, `.npz`, `.json`), in name order.
pub(super) fn input_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    files.retain(|p| {
        p.is_file()
            && p.extension()
                .is_some_and(|e| e == "npy" || e == "npz" || e == "json")
    });
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no input files (.npy, .npz or .json, one job each)",
            dir.display()
        );
    }
    if files.len() > MAX_BATCH {
        bail!(
            "{} holds {} input files; a batch takes at most {MAX_BATCH} (§5.1): split the folder",
            dir.display(),
            files.len()
        );
    }
    Ok(files)
}

/// Each input file's job name, its file name without the extension; two files of one name
/// (say `a.npy` and `a.json`) are refused, since their results would overwrite each other.
pub(super) fn job_names(files: &[PathBuf], dir: &Path) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        bail!(
            "two input files in {} are named {dup:?} (say {dup}.npy and {dup}.json): their results would overwrite each other",
            dir.display()
        );
    }
    Ok(names)
}

/// Runs the batch and writes each job's files under `--out`, named after its input file.
pub fn run(
    args: &RunArgs,
    dir: &Path,
    model: &LoadedModel,
    key: &SecretKey,
) -> anyhow::Result<ExitCode> {
    let files = input_files(dir)?;
    let names = job_names(&files, dir)?;
    // Every input is read and checked before anything runs: a bad file stops the batch
    // with its name, and nothing is signed.
    let inputs = files
        .iter()
        .map(|f| load_inputs(model, f, args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nonce = match &args.nonce {
        Some(n) => parse_nonce(n)?,
        None => quorate_crypto::random::bytes::<32>()?.to_vec(),
    };
    let (results, receipts) = attested_batch(model, inputs, !args.no_salt, nonce, key, unix_now())?;
    let total = results.len();
    let show = total >= 1000 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // §12.6.1: the results are written a group at a time, each job's receipt after its other
    // files; a failure stops the command at its group, whose other jobs are all written.
    let jobs: Vec<_> = results.iter().zip(receipts.iter()).zip(&names).collect();
    let mut written = 0;
    for group in jobs.chunks(MAX_GROUP) {
        let files = group
            .iter()
            .map(|((job, receipt), name)| {
                result_files(&args.out, name, (&job.inputs, &job.outputs), receipt)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (result, ((_, _), name)) in write_group(&files).into_iter().zip(group) {
            result.with_context(|| format!("the results of {name}"))?;
        }
        written += group.len();
        if show {
            eprint!("\rwrote {written} of {total} results");
        }
    }
    if show {
        eprintln!();
    }
    println!("model     sha256:{}", hex::encode(model.digest));
    println!(
        "ran       {total} jobs from {} on {}, signed under one batch root by {}",
        dir.display(),
        model.provider,
        key.public_key().key_id()
    );
    println!(
        "wrote     {}/receipts/NAME.cose, outputs/NAME.json, inputs/NAME.json for each input NAME",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
