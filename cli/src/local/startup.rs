//! Waiting for a node process to listen, and saying why it did not.
//!
//! A node that fails to start writes its reason to its `node.log`, which for `quorate bench`
//! lives in a folder removed when the command ends: pointing the user at the file is not
//! enough, so its last lines travel with the error.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Bytes of a node's log quoted in an error, at most: its end, where the reason is.
const LOG_TAIL: u64 = 4096;

/// Waits up to `timeout` for `child` (node `name`, its standard error going to `log`) to
/// print its listening line.
pub fn wait_ready(
    name: &str,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let stdout = child.stdout.take().context("node stdout not captured")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the node never blocks on a full pipe.
        for _ in lines {}
    });
    let start = Instant::now();
    match rx.recv_timeout(timeout) {
        Ok(line) if line.contains("listening on") => Ok(()),
        Ok(line) => bail!(
            "{name} printed {line:?} instead of its listening line{}",
            log_tail(log)
        ),
        Err(_) => {
            // The node may be writing its last words as its output closes.
            let status = child
                .try_wait()?
                .or_else(|| exited_within(child, Duration::from_millis(500)));
            let how = match status {
                Some(s) => format!("exited ({})", describe(s)),
                None => format!(
                    "did not listen within {:.1} s",
                    start.elapsed().as_secs_f64()
                ),
            };
            bail!("{name} {how}{}", log_tail(log))
        }
    }
}

/// The child's status if it exits within `patience`.
fn exited_within(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("code {code}"),
        None => status.to_string(),
    }
}

/// `"; its log (PATH) ends:\n…"` with the last lines of `log`, or a note that it is empty or
/// unreadable.
fn log_tail(log: &Path) -> String {
    let tail = (|| -> std::io::Result<String> {
        let mut f = std::fs::File::open(log)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)))?;
        let mut bytes = Vec::new();
        f.take(LOG_TAIL).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
    })();
    match tail {
        Ok(t) if t.is_empty() => format!("; its log ({}) is empty", log.display()),
        Ok(t) => format!("; its log ({}) ends:\n{t}", log.display()),
        Err(e) => format!("; its log ({}) cannot be read: {e}", log.display()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn child(script: &str, log: &Path) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    /// A node that fails at start-up is reported with its exit code and the end of its log,
    /// which may be gone by the time the user reads the error.
    #[test]
    fn a_node_that_fails_to_start_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let mut c = child(
            "echo 'error: ONNX Runtime library not found' >&2; exit 2",
            &log,
        );
        let e = wait_ready("node-1", &mut c, &log, Duration::from_secs(30)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("node-1 exited (code 2)"), "{text}");
        assert!(
            text.ends_with("ends:\nerror: ONNX Runtime library not found"),
            "{text}"
        );
    }

    /// A long log is quoted from its end, at most [`LOG_TAIL`] bytes of it.
    #[test]
    fn only_the_end_of_a_long_log_is_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let mut c = child(
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; echo 'the reason' >&2; exit 3",
            &log,
        );
        let text = wait_ready("node-2", &mut c, &log, Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("node-2 exited (code 3)"), "{text}");
        assert!(text.ends_with("line 1999\nthe reason"), "{text}");
        assert!(!text.contains("line 0\n"), "{text}");
        assert!(text.len() < LOG_TAIL as usize + 200, "{}", text.len());
    }

    /// A node that listens is ready; one that prints something else is not, and says what.
    #[test]
    fn the_listening_line_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let mut c = child("echo 'node-1 listening on 127.0.0.1:9'; sleep 1", &log);
        wait_ready("node-1", &mut c, &log, Duration::from_secs(30)).unwrap();
        let mut c = child("echo 'something else'", &log);
        let text = wait_ready("node-1", &mut c, &log, Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(text.contains("printed \"something else\""), "{text}");
        assert!(text.ends_with("is empty"), "{text}");
    }

    /// A node still starting when the wait ends is reported as such.
    #[test]
    fn a_node_that_never_listens_is_reported_as_late() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let mut c = child("echo 'loading models' >&2; sleep 30", &log);
        let text = wait_ready("node-3", &mut c, &log, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        let _ = c.kill();
        let _ = c.wait();
        assert!(text.starts_with("node-3 did not listen within"), "{text}");
        assert!(text.ends_with("ends:\nloading models"), "{text}");
    }
}
