//! Many jobs' files made durable together (`quorate run --inputs`, `quorate infer --inputs`,
//! §12.6.1). One job at a time, each file costs a flush of its own and one of its folder, and
//! a job's receipt waits for both. Here a group of jobs is written in two passes: every job's
//! first files (outputs, inputs, promise) to temporary files, all flushed, renamed into place,
//! and each folder flushed once; then the receipts the same way. A crash leaves each file
//! whole or absent, and a receipt only beside its job's complete files, as the one-at-a-time
//! writes did, while the file system can take a group's flushes in a few journal commits.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, anyhow};

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
    for p in &pending {
        if results[p.job].is_ok()
            && let Err(e) = p.handle.sync_all()
        {
            results[p.job] = Err(cannot_write(&p.file.path, e));
        }
    }
    let mut folders: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for p in pending {
        drop(p.handle);
        if results[p.job].is_ok() {
            match std::fs::rename(&p.temp, &p.file.path) {
                Ok(()) => folders
                    .entry(folder_of(&p.file.path))
                    .or_default()
                    .push(p.job),
                Err(e) => results[p.job] = Err(cannot_write(&p.file.path, e)),
            }
        }
        if results[p.job].is_err() {
            let _ = std::fs::remove_file(&p.temp);
        }
    }
    for (folder, jobs) in folders {
        if let Err(e) = File::open(&folder).and_then(|d| d.sync_all()) {
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

fn cannot_write(path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow!("cannot write {}: {e}", path.display())
}

fn folder_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Writes `file`'s bytes to a temporary file beside its path (its folder made first if need
/// be), not yet flushed; removes the temporary file if the write fails.
fn write_temporary(
    file: &FileToWrite,
    made: &mut HashSet<PathBuf>,
) -> anyhow::Result<(PathBuf, File)> {
    let folder = folder_of(&file.path);
    if !made.contains(&folder) {
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        made.insert(folder.clone());
    }
    let name = file
        .path
        .file_name()
        .with_context(|| format!("{} has no file name", file.path.display()))?;
    let temp = folder.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(file.mode)
        .open(&temp)
        .and_then(|mut f| f.write_all(&file.bytes).map(|()| f));
    match written {
        Ok(handle) => Ok((temp, handle)),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(cannot_write(&file.path, e))
        }
    }
}

type Request = (JobFiles, tokio::sync::oneshot::Sender<anyhow::Result<()>>);

/// A thread writing the files of jobs that finish concurrently: the jobs queued while it
/// writes one group make up the next (at most [`MAX_GROUP`]).
pub struct GroupWriter {
    queue: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupWriter {
    /// Starts the writing thread.
    pub fn start() -> anyhow::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("quorate-writer".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let (files, replies): (Vec<JobFiles>, Vec<_>) = group.into_iter().unzip();
                    for (result, reply) in write_group(&files).into_iter().zip(replies) {
                        // A job that stopped waiting has nobody to tell.
                        let _ = reply.send(result);
                    }
                }
            })
            .context("cannot start the thread that writes the jobs' files")?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues a job's files and waits until they are durable (or have failed).
    pub async fn write(&self, job: JobFiles) -> anyhow::Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue
            .as_ref()
            .context("the writer is stopped")?
            .send((job, reply))
            .map_err(|_| anyhow!("the thread that writes the jobs' files has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the thread that writes the jobs' files has stopped"))?
    }
}

impl Drop for GroupWriter {
    /// Lets the thread finish the jobs queued, then waits for it.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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

    #[test]
    fn the_writer_thread_answers_every_job_of_concurrent_callers() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let writer = GroupWriter::start().unwrap();
        let results = rt.block_on(async {
            let writes = (0..100).map(|i| writer.write(job(dir.path(), &format!("j{i}"))));
            futures_util::future::join_all(writes).await
        });
        drop(writer);
        assert!(results.iter().all(Result::is_ok));
        let receipts = std::fs::read_dir(dir.path().join("receipts"))
            .unwrap()
            .count();
        assert_eq!(receipts, 100);
    }
}
