//! The node's audit trail (§12.4): every receipt the node signs is appended to a local log
//! and made durable (fsync) before the reply leaves the node.
//!
//! The format is `quorate_protocol::audit_log`; opening the log truncates an incomplete or
//! mismatching tail record left by a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use quorate_protocol::audit_log::{MAGIC, record, scan};
use quorate_protocol::receipt::MAX_RECEIPT_LEN;

/// An open audit log.
pub struct AuditLog {
    file: Mutex<File>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens or creates the log; a torn tail from a crash is cut off. Returns the log and the
    /// number of complete records already in it.
    pub fn open(path: &Path) -> anyhow::Result<(Self, usize)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open audit log {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let count = if bytes.is_empty() {
            file.write_all(MAGIC)?;
            file.sync_all()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            0
        } else {
            let s = scan(&bytes).with_context(|| format!("audit log {}", path.display()))?;
            if s.torn_bytes > 0 {
                eprintln!(
                    "quorate: audit log {}: dropping a torn tail of {} bytes after {} complete records",
                    path.display(),
                    s.torn_bytes,
                    s.records.len()
                );
                file.set_len(s.good_len)?;
                file.sync_all()?;
            }
            s.records.len()
        };
        file.seek(SeekFrom::End(0))?;
        Ok((
            Self {
                file: Mutex::new(file),
                path: path.to_path_buf(),
            },
            count,
        ))
    }

    /// Appends a receipt and fsyncs it; only then may the reply carrying it leave the node.
    pub fn append(&self, receipt: &[u8]) -> anyhow::Result<()> {
        if receipt.len() > MAX_RECEIPT_LEN {
            bail!("receipt of {} bytes exceeds the limit", receipt.len());
        }
        let record = record(receipt);
        let mut file = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("audit log lock poisoned"))?;
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot append to audit log {}", self.path.display()))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_crypto::tensor_digest::sha256;

    #[test]
    fn a_torn_tail_is_cut_and_complete_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.qlog");
        let (log, n) = AuditLog::open(&path).unwrap();
        assert_eq!(n, 0);
        log.append(b"first receipt").unwrap();
        log.append(b"second receipt").unwrap();
        drop(log);
        let complete = std::fs::read(&path).unwrap();
        // Simulate a crash at every point of writing a third record.
        let mut third = Vec::new();
        third.extend_from_slice(&(14u32).to_be_bytes());
        third.extend_from_slice(&sha256(b"third receipt!"));
        third.extend_from_slice(b"third receipt!");
        for cut in 0..third.len() {
            std::fs::write(&path, [&complete[..], &third[..cut]].concat()).unwrap();
            let (log, n) = AuditLog::open(&path).unwrap();
            assert_eq!(n, 2, "cut at {cut}");
            assert_eq!(std::fs::read(&path).unwrap(), complete, "cut at {cut}");
            log.append(b"after recovery").unwrap();
            drop(log);
            let s = scan(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(s.records.len(), 3);
            assert_eq!(s.records[2], b"after recovery");
            assert_eq!(s.torn_bytes, 0);
        }
        // A flipped byte in the last record is a torn record too.
        let mut bad = complete.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(AuditLog::open(&path).unwrap().1, 1);
        assert!(scan(b"not a log").is_err());
    }
}
