//! The node's side of the transparency log (§18.11): the heads it signed, an index of its
//! leaves, one signed statement per group commit for the inclusion receipts of replies, and
//! the answers to log requests (§18.12).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_crypto::merkle::LogFull;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_protocol::tlog::{TreeHead, TreeStatement, sign_consistency_receipt};

use super::{AuditLog, Outcome, Tree, lock};

/// Why a log request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum LogServiceError {
    /// The leaf, size or pair of sizes is not one the node has a signed statement for.
    #[error("{0}")]
    NotInLog(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Internal(String),
}

impl From<LogServiceError> for ErrorFrame {
    fn from(e: LogServiceError) -> Self {
        match e {
            LogServiceError::NotInLog(m) => ErrorFrame::new(ErrorCode::NotInLog, m),
            LogServiceError::Internal(m) => ErrorFrame::new(ErrorCode::Internal, m),
        }
    }
}

/// Every head the node signed, as (size, time) in signing order, and the index of each
/// leaf hash (its first occurrence). A few bytes per head and about 40 per leaf (§18.11.2).
#[derive(Default)]
pub(super) struct HeadHistory {
    heads: Vec<(u64, u64)>,
    index: HashMap<Digest32, u64>,
    /// The statement over each head's tree (§18.4), signed with the head, so that proofs
    /// against a head cost no signature (§18.12): about 150 bytes per head.
    statements: HashMap<u64, TreeStatement>,
}

impl HeadHistory {
    /// Records a head of `size` signed at `time`; a head re-signed at the same size keeps
    /// the first time, the one promises are judged by (§18.6). Returns whether it is new.
    pub(super) fn signed(&mut self, size: u64, time: u64) -> bool {
        let new = self.heads.last().is_none_or(|(s, _)| *s < size);
        if new {
            self.heads.push((size, time));
        }
        new
    }

    /// Keeps the statement signed with the head of its size.
    pub(super) fn keep_statement(&mut self, statement: TreeStatement) {
        self.statements.insert(statement.tree_size, statement);
    }

    /// The first head whose tree contains leaf `index`.
    fn first_containing(&self, index: u64) -> Option<(u64, u64)> {
        let at = self.heads.partition_point(|(s, _)| *s <= index);
        self.heads.get(at).copied()
    }

    /// The head of exactly `size` leaves.
    fn of_size(&self, size: u64) -> Option<(u64, u64)> {
        let at = self.heads.partition_point(|(s, _)| *s < size);
        self.heads.get(at).copied().filter(|(s, _)| *s == size)
    }
}

impl Tree {
    /// Appends a leaf to the tree and the index.
    pub(super) fn push(&mut self, leaf: Digest32) -> Result<u64, LogFull> {
        let i = self.leaves.push(leaf)?;
        self.history.index.entry(leaf).or_insert(i);
        Ok(i)
    }

    /// Signs one statement over the tree that now holds a whole group and hands each
    /// record that asked for one its inclusion receipt under it (§18.11.3): one signature
    /// per commit, however many receipts it carried.
    pub(super) fn prove_group(
        &self,
        group: &[(Vec<u8>, Arc<Outcome>)],
        indices: &[Result<u64, LogFull>],
        path: &Path,
    ) {
        let Some(key) = &self.inline else { return };
        if !group.iter().any(|(_, o)| o.wants_proof) {
            return;
        }
        let size = self.leaves.len();
        let statement = match TreeStatement::sign(&self.leaves, size, crate::clock::unix_now(), key)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "audit log {}: cannot sign the group's statement: {e}",
                    path.display()
                );
                return;
            }
        };
        for ((_, outcome), index) in group.iter().zip(indices) {
            let Ok(index) = index else { continue };
            if !outcome.wants_proof {
                continue;
            }
            let proof = self
                .leaves
                .inclusion_proof(*index, size)
                .map(|p| statement.inclusion_receipt(*index, p));
            if let Some(Ok(receipt)) = proof {
                let _ = outcome.inclusion.set(receipt);
            }
        }
    }
}

/// Where a node keeps the size and time of every head it signed: `LOG.heads` beside the log
/// `LOG`, 16 bytes per head (size, then time, both big-endian u64), appended as they are
/// signed (§18.11.2).
pub fn heads_path_of(log: &Path) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".heads");
    std::path::PathBuf::from(name)
}

/// Largest `LOG.heads` read back: a head every 5 s for about 25 years.
const MAX_HEADS_FILE: u64 = 16 << 24;

impl AuditLog {
    /// Appends a new head's size and time to `LOG.heads`; a failure is logged, the head
    /// stays in memory.
    pub(super) fn keep_head_record(&self, size: u64, time: u64) {
        use std::io::Write;
        let path = heads_path_of(&self.path);
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&size.to_be_bytes());
        record[8..].copy_from_slice(&time.to_be_bytes());
        let kept = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&record).and_then(|()| f.sync_data()));
        if let Err(e) = kept {
            tracing::warn!(
                "cannot keep the head of {size} leaves in {}: {e}",
                path.display()
            );
        }
    }

    /// Reads back `LOG.heads` after a restart, so that leaves are proved against the first
    /// head that contained them, with its time (§18.6). Records beyond the log's size or out
    /// of order, and a torn last record, are ignored. Returns the heads adopted.
    pub fn adopt_head_history(&self) -> usize {
        let path = heads_path_of(&self.path);
        let Ok(bytes) = crate::files::read_limited(&path, MAX_HEADS_FILE) else {
            return 0;
        };
        let mut tree = lock(&self.tree);
        let len = tree.leaves.len();
        let mut adopted = 0;
        for r in bytes.chunks_exact(16) {
            let size = u64::from_be_bytes(r[..8].try_into().unwrap_or_default());
            let time = u64::from_be_bytes(r[8..].try_into().unwrap_or_default());
            if size <= len && tree.history.signed(size, time) {
                adopted += 1;
            }
        }
        adopted
    }

    /// Replies carry inclusion receipts (§18.11.3): every group commit that holds a receipt
    /// appended with [`AuditLog::append_proved`] signs one statement with `key`.
    pub fn prove_in_replies(&self, key: Arc<SecretKey>) {
        lock(&self.tree).inline = Some(key);
    }

    /// The latest signed head, signing a new one first if the log grew since (§18.11.2:
    /// "on request").
    pub fn latest_head(&self, key: &SecretKey, now: u64) -> Result<Vec<u8>, LogServiceError> {
        self.sign_head(key, now)
            .map_err(|e| LogServiceError::Internal(format!("{e:#}")))?;
        lock(&self.tree)
            .latest
            .clone()
            .ok_or_else(|| LogServiceError::Internal("no head is signed".into()))
    }

    /// Adopts a head the node signed before it restarted (its `LOG.head`), so that leaves
    /// it covers are proved against it; ignored unless it is this log's and matches the
    /// tree (§18.11.2).
    pub fn adopt_kept_head(&self, key: &SecretKey, bytes: &[u8]) -> bool {
        let Ok(head) = TreeHead::parse(bytes) else {
            return false;
        };
        let mut tree = lock(&self.tree);
        let ok = head.sign1.verify(&key.public_key()).is_ok()
            && head.body.log_id == key.public_key().key_id()
            && tree.leaves.root(head.body.size) == Some(head.body.root);
        if ok {
            tree.history.signed(head.body.size, head.body.issued_at);
        }
        ok
    }

    /// The inclusion receipt of `leaf` (§18.12): against the head of `tree_size` leaves, or
    /// by default the first head containing it, signed with that head's time so that it
    /// keeps a promise made before the head (§18.6).
    pub fn prove(
        &self,
        key: &SecretKey,
        leaf: &Digest32,
        tree_size: Option<u64>,
    ) -> Result<Vec<u8>, LogServiceError> {
        let mut tree = lock(&self.tree);
        let index = *tree.history.index.get(leaf).ok_or_else(|| {
            LogServiceError::NotInLog("no receipt with this leaf hash is in the log".into())
        })?;
        let head = match tree_size {
            None => tree.history.first_containing(index).ok_or_else(|| {
                LogServiceError::NotInLog(format!(
                    "leaf {index} is not covered by a signed head yet; ask again after the next head"
                ))
            })?,
            Some(size) => tree
                .history
                .of_size(size)
                .filter(|(s, _)| *s > index)
                .ok_or_else(|| {
                    LogServiceError::NotInLog(format!(
                        "no signed head of {size} leaves contains leaf {index}"
                    ))
                })?,
        };
        let internal =
            |e: quorate_protocol::tlog::TlogError| LogServiceError::Internal(e.to_string());
        let path = tree.leaves.inclusion_proof(index, head.0).ok_or_else(|| {
            LogServiceError::Internal(format!("no path for leaf {index} at size {}", head.0))
        })?;
        match tree.history.statements.get(&head.0) {
            Some(s) if s.issued_at == head.1 => s.inclusion_receipt(index, path).map_err(internal),
            // A head adopted after a restart: its statement is signed once, on first use.
            _ => {
                let s = TreeStatement::sign(&tree.leaves, head.0, head.1, key).map_err(internal)?;
                let receipt = s.inclusion_receipt(index, path).map_err(internal);
                tree.history.keep_statement(s);
                receipt
            }
        }
    }

    /// The consistency receipt between the trees of `old_size` and `new_size` leaves
    /// (§18.5, §18.12); both at most the size of the latest signed head.
    pub fn consistency(
        &self,
        key: &SecretKey,
        old_size: u64,
        new_size: u64,
        now: u64,
    ) -> Result<Vec<u8>, LogServiceError> {
        let tree = lock(&self.tree);
        let signed = tree.history.heads.last().map_or(0, |(s, _)| *s);
        if old_size == 0 || old_size > new_size || new_size > signed {
            return Err(LogServiceError::NotInLog(format!(
                "no consistency between sizes {old_size} and {new_size}: the latest signed head has {signed} leaves"
            )));
        }
        sign_consistency_receipt(&tree.leaves, old_size, new_size, now, key)
            .map_err(|e| LogServiceError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::signed_receipt as receipt;
    use quorate_protocol::tlog::{InclusionReceipt, receipt_leaf_hash};

    /// Replies get inclusion receipts of their own leaf; proofs are against the first head
    /// containing the leaf with its time; sizes nobody signed are refused.
    #[test]
    fn replies_and_requests_are_proved() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SecretKey::from_seed(&[6; 32]));
        let (log, _) = AuditLog::open(&dir.path().join("a.qlog")).unwrap();
        log.prove_in_replies(key.clone());
        let r0 = receipt(0, &key);
        let inc = log.append_proved(&r0).unwrap().unwrap();
        let parsed = InclusionReceipt::parse(&inc).unwrap();
        let leaf = receipt_leaf_hash(&r0).unwrap();
        assert_eq!((parsed.proof.leaf_index, parsed.proof.tree_size), (0, 1));
        assert!(parsed.root_for(&leaf).is_some());
        assert!(log.append(&receipt(1, &key)).is_ok());
        // Not covered by a head yet.
        assert!(matches!(
            log.prove(&key, &leaf, None),
            Err(LogServiceError::NotInLog(_))
        ));
        log.sign_head(&key, 1_000).unwrap().unwrap();
        log.append(&receipt(2, &key)).unwrap();
        log.sign_head(&key, 2_000).unwrap().unwrap();
        let p = InclusionReceipt::parse(&log.prove(&key, &leaf, None).unwrap()).unwrap();
        assert_eq!((p.cose.tree_size, p.cose.issued_at), (2, 1_000));
        let p = InclusionReceipt::parse(&log.prove(&key, &leaf, Some(3)).unwrap()).unwrap();
        assert_eq!((p.cose.tree_size, p.cose.issued_at), (3, 2_000));
        assert!(log.prove(&key, &leaf, Some(1)).is_err());
        assert!(log.prove(&key, &[9; 32], None).is_err());
        assert!(log.consistency(&key, 1, 3, 3_000).is_ok());
        assert!(log.consistency(&key, 1, 4, 3_000).is_err());
        assert!(log.consistency(&key, 0, 3, 3_000).is_err());
    }

    /// After a restart the node proves old leaves against the head that first held them,
    /// with its time, read back from `LOG.heads`; a torn record is ignored.
    #[test]
    fn heads_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.qlog");
        let key = SecretKey::from_seed(&[7; 32]);
        let r0 = receipt(0, &key);
        {
            let (log, _) = AuditLog::open(&path).unwrap();
            log.append(&r0).unwrap();
            log.sign_head(&key, 1_000).unwrap().unwrap();
            log.append(&receipt(1, &key)).unwrap();
            log.sign_head(&key, 2_000).unwrap().unwrap();
        }
        let mut heads = std::fs::read(heads_path_of(&path)).unwrap();
        assert_eq!(heads.len(), 32);
        heads.extend([0xff; 7]);
        std::fs::write(heads_path_of(&path), heads).unwrap();
        let (log, _) = AuditLog::open(&path).unwrap();
        assert_eq!(log.adopt_head_history(), 2);
        let leaf = receipt_leaf_hash(&r0).unwrap();
        let p = InclusionReceipt::parse(&log.prove(&key, &leaf, None).unwrap()).unwrap();
        assert_eq!((p.cose.tree_size, p.cose.issued_at), (1, 1_000));
        // A fresh log ignores a stale history beyond its size.
        std::fs::remove_file(&path).unwrap();
        let (fresh, _) = AuditLog::open(&path).unwrap();
        assert_eq!(fresh.adopt_head_history(), 0);
    }
}
