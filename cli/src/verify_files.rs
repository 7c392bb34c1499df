//! The file side of `quorate verify`: find artefacts under the paths given, read each with
//! its size bound, and hand the bytes to `quorate_verify`, which does every check (§6).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use quorate_crypto::{KeyId, PublicKey};
use quorate_node::files::read_limited;
use quorate_protocol::chain::{MAX_CHAIN_LEN, Pipeline};
use quorate_protocol::ensemble::{MAX_AGGREGATE_LEN, MAX_TRANSCRIPT_LEN};
use quorate_protocol::evidence::MAX_BUNDLE_LEN;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::tensor_file::RevealedTensor;
use quorate_verify::TrustStore;
use quorate_verify::bundle::{BundleFileReport, looks_like_bundle, verify_bundle};
use quorate_verify::chain::{ChainReport, verify_chain};
use quorate_verify::receipts::{
    Failure, FileReport, MAX_AUDIT_LOG_LEN, Source, expand, verify_receipts,
};

/// The file extension of a chain document.
pub const CHAIN_EXTENSION: &str = "qchain";

/// Expands directories into the receipt files (`*.cose`), audit logs (`*.qlog`) and chains
/// (`*.qchain`) below them, sorted.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &["cose", "qlog", CHAIN_EXTENSION], &mut found)?;
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Every file below `dir` whose extension is one of `extensions`, sorted.
fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, extensions, out)?;
        } else if path
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn label(path: &Path) -> String {
    path.display().to_string()
}

/// Reads `path` if it is at most `limit` bytes, with the reason in words otherwise.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    read_limited(path, limit).map_err(|e| format!("{e:#}"))
}

/// Reads and verifies receipt files and audit logs; the signatures of all of them are
/// checked in one batch. Audit logs (§12.4) count as one receipt per record, `FILE#N`.
pub fn verify_files(
    files: &[PathBuf],
    trust: &TrustStore,
    reveals: &[RevealedTensor],
) -> Vec<FileReport> {
    let sources = files
        .iter()
        .flat_map(|path| {
            let limit = if path.extension().is_some_and(|e| e == "qlog") {
                MAX_AUDIT_LOG_LEN
            } else {
                MAX_RECEIPT_LEN as u64
            };
            match read_limited(path, limit) {
                Ok(bytes) => expand(&label(path), bytes),
                Err(e) => vec![Source {
                    label: label(path),
                    bytes: Err(Failure::Io(format!("{e:#}"))),
                }],
            }
        })
        .collect::<Vec<Source>>();
    let total = sources.len();
    // Progress on a terminal for long audits (§6.4): the receipts go through in rounds, each
    // split across the cores, and a line on stderr says how far it got.
    let show = total >= PROGRESS_FROM && std::io::stderr().is_terminal();
    if !show {
        return verify_receipts(sources, trust, reveals);
    }
    let started = std::time::Instant::now();
    let mut reports = Vec::with_capacity(total);
    let mut rest = sources.into_iter().peekable();
    while rest.peek().is_some() {
        let round: Vec<Source> = rest.by_ref().take(PROGRESS_ROUND).collect();
        reports.extend(verify_receipts(round, trust, reveals));
        let rate = reports.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\rverified {} of {total} receipts ({}%, {rate:.0}/s)   ",
            reports.len(),
            reports.len() * 100 / total
        );
    }
    eprintln!();
    reports
}

/// Receipts below which no progress is shown.
const PROGRESS_FROM: usize = 20_000;
/// Receipts per progress step.
const PROGRESS_ROUND: usize = 8192;

fn is_bundle_file(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "bundle") {
        return true;
    }
    use std::io::Read;
    let mut head = [0u8; 64];
    std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .is_ok_and(|n| looks_like_bundle(&head[..n]))
}

/// Splits the paths given to `quorate verify` into bundle files (given, or `*.bundle` under a
/// directory) and the rest (receipts, audit logs, directories).
pub fn split_paths(paths: &[PathBuf]) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut bundles = Vec::new();
    let mut rest = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &["bundle"], &mut bundles)?;
            rest.push(p.clone());
        } else if p.is_file() && is_bundle_file(p) {
            bundles.push(p.clone());
        } else {
            rest.push(p.clone());
        }
    }
    Ok((bundles, rest))
}

/// Reads and checks every bundle against the trusted node keys.
pub fn verify_bundles(files: &[PathBuf], trust: &TrustStore) -> Vec<BundleFileReport> {
    files
        .iter()
        .map(|path| {
            verify_bundle(
                &label(path),
                read_capped(path, MAX_BUNDLE_LEN as u64),
                trust,
            )
        })
        .collect()
}

/// Whether `path` names a chain document.
pub fn is_chain_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == CHAIN_EXTENSION)
}

/// Reads and checks a chain (§13.3).
pub fn verify_chain_file(
    path: &Path,
    trust: &TrustStore,
    pipeline: Option<&Pipeline>,
    reveals: &[RevealedTensor],
) -> ChainReport {
    verify_chain(
        &label(path),
        read_capped(path, MAX_CHAIN_LEN as u64),
        trust,
        pipeline,
        reveals,
    )
}

/// Splits receipt files into aggregate receipts and the rest.
pub fn split_aggregates(files: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    files.into_iter().partition(|p| {
        read_limited(p, MAX_AGGREGATE_LEN as u64)
            .is_ok_and(|b| quorate_verify::aggregate::is_aggregate(&b))
    })
}

/// Verifies one aggregate receipt file with the `transcript.cbor` and `members/*.cose`
/// kept beside it (§15.5).
pub fn verify_aggregate_file(
    path: &Path,
    lookup: &dyn Fn(&KeyId) -> Option<(PublicKey, String)>,
) -> Result<String, String> {
    let aggregate = read_capped(path, MAX_AGGREGATE_LEN as u64)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let transcript = read_capped(&dir.join("transcript.cbor"), MAX_TRANSCRIPT_LEN as u64)?;
    let mut member_files = Vec::new();
    if dir.join("members").is_dir() {
        walk(&dir.join("members"), &["cose"], &mut member_files).map_err(|e| e.to_string())?;
    }
    let members = member_files
        .iter()
        .map(|p| read_capped(p, MAX_RECEIPT_LEN as u64))
        .collect::<Result<Vec<_>, _>>()?;
    quorate_verify::aggregate::verify_aggregate(&aggregate, &transcript, &members, lookup)
}
