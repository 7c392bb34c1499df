//! The file side of `quorate verify`: find artefacts under the paths given, read each with
//! its size bound, and hand the bytes to `quorate_verify`, which does every check (§6).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quorate_crypto::{KeyId, PublicKey};
use quorate_node::files::read_limited;
use quorate_protocol::audit_log::{MAGIC, RECORD_HEADER, RecordReader};
use quorate_protocol::chain::{MAX_CHAIN_LEN, Pipeline};
use quorate_protocol::ensemble::{MAX_AGGREGATE_LEN, MAX_TRANSCRIPT_LEN};
use quorate_protocol::evidence::MAX_BUNDLE_LEN;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::tensor_file::RevealedTensor;
use quorate_verify::TrustStore;
use quorate_verify::bundle::{BundleFileReport, looks_like_bundle, verify_bundle};
use quorate_verify::chain::{ChainReport, verify_chain};
use quorate_verify::receipts::{
    Failure, FileReport, RevealedBlob, Source, check_blobs, verification_failed,
    verify_receipts_here,
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
pub fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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

/// Reads and verifies receipt files and audit logs, returning every report (for callers
/// that need them all; `quorate verify` streams with [`verify_streaming`] instead).
pub fn verify_files(
    files: &[PathBuf],
    trust: &TrustStore,
    reveals: &[RevealedTensor],
) -> Vec<FileReport> {
    let mut reports = Vec::new();
    verify_streaming(files, trust, reveals, &[], &|r| r, &mut |r| reports.push(r));
    reports
}

/// How many receipts a streaming verification saw, and how many failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Receipts (audit-log records count one each; a torn tail counts as one failure).
    pub total: usize,
    /// Those that failed.
    pub failed: usize,
}

/// Reads and verifies receipt files and audit logs (§6.4) and hands every report, as
/// `render` makes it on the worker that verified it (a report line, say), to `on_report` in
/// order, keeping none: an audit log of any length is read record by record
/// and checked in bounded memory. One worker per core takes the next [`CHUNK`] receipts
/// from the shared reader whenever it is free, so no core waits for another until the last
/// chunk; at most [`IN_FLIGHT`] chunks are read and not yet reported. Audit-log records are
/// labelled `FILE#N`, a torn tail `FILE#tail`. Revealed blobs (§16.6) are checked against
/// every receipt that verified. On a terminal, long audits show their progress on stderr.
pub fn verify_streaming<T: Send>(
    files: &[PathBuf],
    trust: &TrustStore,
    reveals: &[RevealedTensor],
    blobs: &[RevealedBlob],
    render: &(dyn Fn(FileReport) -> T + Sync),
    on_report: &mut dyn FnMut(T),
) -> Tally {
    let total_bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let show = total_bytes >= PROGRESS_FROM_BYTES && std::io::stderr().is_terminal();
    let started = Instant::now();
    let bytes_read = AtomicU64::new(0);
    let shared = Shared {
        state: Mutex::new(Reading {
            sources: Sources::new(files),
            taken: 0,
            reported: 0,
            closed: false,
        }),
        room: Condvar::new(),
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        // Each report is rendered, and freed, on its worker: the reporting thread only
        // passes on what the workers made, which on a loaded machine keeps it from being
        // the audit's bottleneck.
        let (done, finished) = std::sync::mpsc::channel::<(usize, Vec<(bool, T)>)>();
        for _ in 0..workers {
            let done = done.clone();
            let (shared, bytes_read) = (&shared, &bytes_read);
            scope.spawn(move || {
                while let Some((n, mut chunk)) = shared.take(bytes_read) {
                    // The labels are kept aside (moved, not copied) so that a panic while
                    // checking fails the chunk's receipts, named, instead of leaving a hole
                    // in the log's order that the reporter would wait on.
                    let labels: Vec<String> = chunk
                        .iter_mut()
                        .map(|s| std::mem::take(&mut s.label))
                        .collect();
                    let verified = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let mut reports = verify_receipts_here(chunk, trust, reveals);
                        check_blobs(&mut reports, blobs);
                        reports
                    }));
                    let reports = match verified {
                        // One report per source, in order (verify_receipts_here).
                        Ok(mut reports) if reports.len() == labels.len() => {
                            for (r, label) in reports.iter_mut().zip(labels) {
                                r.label = label;
                            }
                            reports
                        }
                        _ => verification_failed(labels),
                    };
                    let rendered = reports
                        .into_iter()
                        .map(|r| (r.failure.is_some(), render(r)))
                        .collect();
                    if done.send((n, rendered)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        // Stops the workers however this thread leaves the scope (a panicking `on_report`
        // included), so that none waits for room that would never come.
        let _close = Close(&shared);
        // Chunks verified ahead of an earlier one still being verified wait here, at most
        // IN_FLIGHT of them, and are reported in log order (§6.4).
        let mut ahead: BTreeMap<usize, Vec<(bool, T)>> = BTreeMap::new();
        let mut next = 0usize;
        let mut shown = started;
        for (n, reports) in finished {
            ahead.insert(n, reports);
            while let Some(reports) = ahead.remove(&next) {
                for (failed, r) in reports {
                    tally.total += 1;
                    tally.failed += usize::from(failed);
                    on_report(r);
                }
                next += 1;
                shared.reported(next);
            }
            if show && shown.elapsed() >= PROGRESS_EVERY {
                shown = Instant::now();
                progress(
                    &tally,
                    bytes_read.load(Ordering::Relaxed),
                    total_bytes,
                    started,
                );
            }
        }
    });
    if show {
        progress(
            &tally,
            bytes_read.load(Ordering::Relaxed),
            total_bytes,
            started,
        );
        eprintln!();
    }
    tally
}

/// Redraws the progress line on stderr.
fn progress(tally: &Tally, read: u64, total_bytes: u64, started: Instant) {
    let rate = tally.total as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprint!(
        "\rverified {} receipts ({}% of {} MB read, {rate:.0}/s)   ",
        tally.total,
        read * 100 / total_bytes.max(1),
        total_bytes >> 20
    );
}

/// Bytes of input below which no progress is shown (about 20,000 receipts).
const PROGRESS_FROM_BYTES: u64 = 10 << 20;
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Receipts a worker takes at a time: few enough that the cores finish the log together
/// (the last chunk is the only time one waits for another, about 128 × 40 µs = 5 ms),
/// enough that taking them from the shared reader and handing the reports back cost nothing
/// next to their signatures.
pub const CHUNK: usize = 128;
/// Chunks read and not yet reported, at most (8,192 receipts): memory stays bounded whatever
/// the log's length (§6.4), with room for every core to run ahead of a slower one.
pub const IN_FLIGHT: usize = 64;

/// The reader the workers share, and how far reporting has got.
struct Shared<'a> {
    state: Mutex<Reading<'a>>,
    /// Signalled when a chunk is reported (room to read another) or reporting stops.
    room: Condvar,
}

struct Reading<'a> {
    sources: Sources<'a>,
    /// Chunks taken so far; the next one taken is numbered `taken`.
    taken: usize,
    /// Chunks reported so far.
    reported: usize,
    /// Set when reporting stops: workers take nothing more.
    closed: bool,
}

impl<'a> Shared<'a> {
    fn lock(&self) -> MutexGuard<'_, Reading<'a>> {
        // A worker that panicked while reading left the reader where it stopped; the scope
        // re-raises that panic once the others are done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk of receipts and its number, once fewer than IN_FLIGHT chunks wait to
    /// be reported; `None` when the input is done or reporting stopped.
    fn take(&self, bytes_read: &AtomicU64) -> Option<(usize, Vec<Source>)> {
        let mut s = self.lock();
        while !s.closed && s.taken - s.reported >= IN_FLIGHT {
            s = self.room.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.closed {
            return None;
        }
        let chunk: Vec<Source> = s.sources.by_ref().take(CHUNK).collect();
        bytes_read.store(s.sources.bytes_read, Ordering::Relaxed);
        if chunk.is_empty() {
            return None;
        }
        s.taken += 1;
        Some((s.taken - 1, chunk))
    }

    /// Records that the first `n` chunks are reported.
    fn reported(&self, n: usize) {
        self.lock().reported = n;
        self.room.notify_all();
    }
}

/// Stops the workers when dropped.
struct Close<'a, 'b>(&'a Shared<'b>);

impl Drop for Close<'_, '_> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.room.notify_all();
    }
}

/// The receipts of a list of files, read lazily: a receipt file whole (within its size
/// bound), an audit log record by record.
struct Sources<'a> {
    files: std::slice::Iter<'a, PathBuf>,
    log: Option<(
        String,
        usize,
        RecordReader<std::io::BufReader<std::fs::File>>,
    )>,
    bytes_read: u64,
}

impl<'a> Sources<'a> {
    fn new(files: &'a [PathBuf]) -> Self {
        Self {
            files: files.iter(),
            log: None,
            bytes_read: 0,
        }
    }

    /// The next record of the open audit log, its torn tail, or `None` when it is done.
    fn next_record(&mut self) -> Option<Source> {
        let (label, index, reader) = self.log.as_mut()?;
        let at = format!("{label}#{index}");
        match reader.next_record() {
            Ok(Some(bytes)) => {
                *index += 1;
                self.bytes_read += (RECORD_HEADER + bytes.len()) as u64;
                Some(Source {
                    label: at,
                    bytes: Ok(bytes),
                })
            }
            Ok(None) => {
                let torn = reader.torn_bytes;
                let tail = format!("{label}#tail");
                self.bytes_read += torn;
                self.log = None;
                (torn > 0).then(|| Source {
                    label: tail,
                    bytes: Err(Failure::Malformed(format!("torn tail of {torn} bytes"))),
                })
            }
            Err(e) => {
                self.log = None;
                Some(Source {
                    label: at,
                    bytes: Err(Failure::Io(format!("reading stopped: {e}"))),
                })
            }
        }
    }

    /// Opens `path`: an audit log becomes the open log, anything else one receipt.
    fn open(&mut self, path: &Path) -> Option<Source> {
        let fail = |e: String| {
            Some(Source {
                label: label(path),
                bytes: Err(Failure::Io(e)),
            })
        };
        // One open: the magic is sniffed from the file the log is then read from. A file
        // that cannot be opened is read as a receipt, whose reader says why not.
        let mut head = [0u8; MAGIC.len()];
        let log = std::fs::File::open(path).ok().filter(|mut f| {
            std::io::Read::read(&mut f, &mut head).is_ok_and(|n| n == head.len() && &head == MAGIC)
                && std::io::Seek::rewind(&mut f).is_ok()
        });
        let Some(file) = log else {
            return match read_limited(path, MAX_RECEIPT_LEN as u64) {
                Ok(bytes) => {
                    self.bytes_read += bytes.len() as u64;
                    Some(Source {
                        label: label(path),
                        bytes: Ok(bytes),
                    })
                }
                Err(e) => fail(format!("{e:#}")),
            };
        };
        match RecordReader::new(std::io::BufReader::with_capacity(1 << 20, file)) {
            Ok(Ok(reader)) => {
                self.bytes_read += MAGIC.len() as u64;
                self.log = Some((label(path), 0, reader));
                self.next()
            }
            Ok(Err(e)) => Some(Source {
                label: label(path),
                bytes: Err(Failure::Malformed(e.to_string())),
            }),
            Err(e) => fail(format!("cannot read {}: {e}", path.display())),
        }
    }
}

impl Iterator for Sources<'_> {
    type Item = Source;

    fn next(&mut self) -> Option<Source> {
        loop {
            if self.log.is_some() {
                if let Some(s) = self.next_record() {
                    return Some(s);
                }
                continue;
            }
            let path = self.files.next()?;
            if let Some(s) = self.open(path) {
                return Some(s);
            }
        }
    }
}

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
