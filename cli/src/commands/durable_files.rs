//! Jobs' files made durable (§12.6.1), many jobs' together where they are known at once
//! (`quorate run --inputs`). File by file, each costs a flush of its own and one of its
//! folder, one after the other. Here a group of jobs is written in two passes: every job's
//! first files (outputs, inputs, promise) to temporary files, flushed together, renamed into
//! place, and each folder flushed once; then the receipts the same way. A crash leaves each
//! file whole or absent, and a receipt only beside its job's complete files, as file-by-file
//! writes did, while the file system's journal takes the flushes that arrive together in
//! few commits.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use quorate_node::files::{self, folder_of};

/// Jobs written together at most: a group holds a temporary file open per file.
pub const MAX_GROUP: usize = 256;

/// A file to write: where, what, and its permissions.
pub struct FileToWrite {
    /// Its final path.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its mode (0600 for a private file).
    pub mode: u32,
}

/// One job's files: `first` made durable before `last` (its receipt) is written.
pub struct JobFiles {
    /// The files a receipt vouches for.
    pub first: Vec<FileToWrite>,
    /// The receipt: on disk only once every file of `first` is.
    pub last: FileToWrite,
}

impl JobFiles {
    /// Writes this job's files alone (a group of one).
    pub fn write(self) -> anyhow::Result<()> {
        write_group(std::slice::from_ref(&self))
            .pop()
            .unwrap_or_else(|| Err(anyhow!("no result for the job's files")))
    }
}

/// Writes every job's files, each job's receipt after its other files are durable; returns
/// each job's outcome in order. A job whose file fails is failed alone (its receipt is not
/// written); the other jobs go on.
pub fn write_group(jobs: &[JobFiles]) -> Vec<anyhow::Result<()>> {
    let mut results: Vec<anyhow::Result<()>> = jobs.iter().map(|_| Ok(())).collect();
    let mut made = HashSet::new();
    pass(&mut results, &mut made, |i| jobs[i].first.iter().collect());
    pass(&mut results, &mut made, |i| vec![&jobs[i].last]);
    results
}

/// A temporary file written, not yet flushed: its job, its file, its path.
struct Pending<'a> {
    job: usize,
    file: &'a FileToWrite,
    temp: PathBuf,
    handle: File,
}

/// One pass over the jobs not failed yet: their `files_of` written to temporary files, every
/// one flushed, renamed into place, then each folder flushed once. A job whose step fails is
/// marked failed and its temporary files removed.
fn pass<'a>(
    results: &mut [anyhow::Result<()>],
    made: &mut HashSet<PathBuf>,
    files_of: impl Fn(usize) -> Vec<&'a FileToWrite>,
) {
    let mut pending: Vec<Pending<'a>> = Vec::new();
    for (job, result) in results.iter_mut().enumerate() {
        if result.is_err() {
            continue;
        }
        for file in files_of(job) {
            match write_temporary(file, made) {
                Ok((temp, handle)) => pending.push(Pending {
                    job,
                    file,
                    temp,
                    handle,
                }),
                Err(e) => {
                    *result = Err(e);
                    break;
                }
            }
        }
    }
    let live: Vec<&Pending<'a>> = pending.iter().filter(|p| results[p.job].is_ok()).collect();
    let flushed = sync_concurrently(&live.iter().map(|p| &p.handle).collect::<Vec<_>>());
    for (p, flushed) in live.iter().zip(flushed) {
        if let Err(e) = flushed {
            results[p.job] = Err(cannot_write(&p.file.path, e));
        }
    }
    let mut folders: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
    for p in pending {
        drop(p.handle);
        let file: &'a FileToWrite = p.file;
        if results[p.job].is_ok() {
            match std::fs::rename(&p.temp, &file.path) {
                Ok(()) => folders
                    .entry(folder_of(&file.path))
                    .or_default()
                    .push(p.job),
                Err(e) => results[p.job] = Err(cannot_write(&file.path, e)),
            }
        }
        if results[p.job].is_err() {
            let _ = std::fs::remove_file(&p.temp);
        }
    }
    for (folder, jobs) in folders {
        if let Err(e) = File::open(folder).and_then(|d| d.sync_all()) {
            for job in jobs {
                if results[job].is_ok() {
                    results[job] = Err(anyhow!(
                        "cannot make the files in {} durable: {e}",
                        folder.display()
                    ));
                }
            }
        }
    }
}

/// Threads flushing a group's files at once.
const FLUSHERS: usize = 16;

/// Files below which one thread flushes them in turn: starting threads costs a single
/// job's few files more than it saves.
const CONCURRENT_MIN: usize = 8;

/// `fsync`s every file, from up to [`FLUSHERS`] threads at once, and returns each outcome in
/// order. A file system's journal takes flushes that arrive together in one commit, where
/// one thread's flushes, each waiting for the last, pay a commit each: a file's blocks are
/// only allocated when it is flushed, so the commit of one file's flush does not carry the
/// next file's data.
fn sync_concurrently(files: &[&File]) -> Vec<std::io::Result<()>> {
    let flush = |chunk: &[&File]| chunk.iter().map(|f| f.sync_all()).collect::<Vec<_>>();
    if files.len() < CONCURRENT_MIN {
        return flush(files);
    }
    std::thread::scope(|s| {
        let threads: Vec<_> = files
            .chunks(files.len().div_ceil(FLUSHERS))
            .map(|chunk| (chunk.len(), s.spawn(move || flush(chunk))))
            .collect();
        threads
            .into_iter()
            .flat_map(|(n, thread)| {
                thread.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Err(std::io::Error::other("the flushing thread panicked")))
                        .collect()
                })
            })
            .collect()
    })
}

fn cannot_write(path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow!("cannot write {}: {e}", path.display())
}

/// Writes `file`'s bytes to a temporary file beside its path (its folder made first if need
/// be), not yet flushed.
fn write_temporary(
    file: &FileToWrite,
    made: &mut HashSet<PathBuf>,
) -> anyhow::Result<(PathBuf, File)> {
    let folder = folder_of(&file.path);
    if !made.contains(folder) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        made.insert(folder.to_path_buf());
    }
    files::write_temporary(&file.path, &file.bytes, file.mode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(path: PathBuf, text: &str, mode: u32) -> FileToWrite {
        FileToWrite {
            path,
            bytes: text.as_bytes().to_vec(),
            mode,
        }
    }

    fn job(out: &Path, name: &str) -> JobFiles {
        JobFiles {
            first: vec![
                file(
                    out.join("outputs").join(format!("{name}.json")),
                    name,
                    0o644,
                ),
                file(out.join("inputs").join(format!("{name}.json")), name, 0o600),
            ],
            last: file(
                out.join("receipts").join(format!("{name}.cose")),
                name,
                0o644,
            ),
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for sub in ["outputs", "inputs", "receipts"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                for e in entries {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    if name.contains(".tmp-") {
                        found.push(format!("{sub}/{name}"));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn a_group_writes_every_file_with_its_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Vec<JobFiles> = (0..40).map(|i| job(dir.path(), &format!("j{i}"))).collect();
        assert!(write_group(&jobs).iter().all(Result::is_ok));
        for i in 0..40 {
            for (sub, ext, mode) in [
                ("outputs", "json", 0o644),
                ("inputs", "json", 0o600),
                ("receipts", "cose", 0o644),
            ] {
                let path = dir.path().join(sub).join(format!("j{i}.{ext}"));
                assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("j{i}"));
                let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(got & !mode, 0, "{} has mode {got:o}", path.display());
            }
        }
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_job_whose_file_cannot_be_written_fails_alone_without_its_receipt() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the second job's outputs must go is a file: its write fails.
        std::fs::create_dir_all(dir.path().join("outputs")).unwrap();
        std::fs::create_dir_all(dir.path().join("outputs").join("blocked.json")).unwrap();
        let jobs = vec![
            job(dir.path(), "a"),
            job(dir.path(), "blocked"),
            job(dir.path(), "c"),
        ];
        let results = write_group(&jobs);
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let e = results[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("blocked.json"), "{e}");
        assert!(dir.path().join("receipts/a.cose").is_file());
        assert!(dir.path().join("receipts/c.cose").is_file());
        assert!(!dir.path().join("receipts/blocked.cose").exists());
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}
