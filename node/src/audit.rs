//! The node's audit trail (§12.4): every receipt the node signs is appended to a local log
//! and made durable (fsync) before the reply leaves the node.
//!
//! The format is `quorate_protocol::audit_log`; opening the log truncates an incomplete or
//! mismatching tail record left by a crash.
//!
//! Storage faults (§12.4.1): when an append cannot be made durable (a full disk, a file system
//! gone read-only, an I/O error) the job is answered `storage_unavailable` and the log is cut
//! back to its last complete record, so a later append never lands after a fragment; every
//! new append tries again, so the node recovers by itself once space returns.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::Context;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use quorate_crypto::SecretKey;
use quorate_crypto::merkle::{MerkleLog, leaf_hash};
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::audit_log::{MAGIC, RECORD_HEADER, record, scan};
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_protocol::receipt::EncodedPayload;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::tlog::TreeHead;

use crate::clock::unix_now;

/// An open audit log.
pub struct AuditLog {
    file: Mutex<Tail>,
    /// The RFC 9162 tree over the durable records, in file order (§18.1, §18.11.1).
    tree: Mutex<Tree>,
    /// Receipts waiting for the next group commit.
    queue: Mutex<Queue>,
    path: PathBuf,
    /// Seconds each durable append took (§12.7).
    fsync: Histogram,
    /// Signs the payloads of one key in a group commit (§12.4.2): `sign_group`, or in tests
    /// a signer that fails.
    sign_group: group_sign::GroupSigner,
}

/// The log's Merkle tree, what the node signed over it, and the key that signs the
/// statement of each group commit when replies carry inclusion receipts (§18.11.3).
struct Tree {
    leaves: MerkleLog,
    /// The size of the last head signed, `None` before the first or after one not kept.
    signed: Option<u64>,
    /// The bytes of the latest head signed.
    latest: Option<Vec<u8>>,
    /// The size of the head last written to `LOG.head`: heads signed on request (§18.12)
    /// are written too, at the next interval or on shutdown.
    kept: Option<u64>,
    history: tlog::HeadHistory,
    inline: Option<Arc<SecretKey>>,
}

mod group_sign;
mod tail;
mod tlog;
use group_sign::{Pending, sign_pending};
use tail::Tail;
pub use tlog::{LogServiceError, heads_path_of};

/// A record's leaf hash (§18.1). The node's records are receipts as it signed them, with an
/// empty unprotected header, so a record's bytes are its leaf (a test holds this).
fn leaf_of(record: &[u8]) -> Digest32 {
    leaf_hash(record)
}

/// Where a node keeps the latest signed tree head of the audit log `log`: beside it,
/// `LOG.head` (§18.11).
pub fn head_path_of(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// Seconds between two tree heads while the log grows (§18.11.2).
pub const HEAD_INTERVAL_SECS: u64 = 5;

/// The result of a commit as every receipt of its group sees it: the I/O error's kind and
/// text (an `io::Error` cannot be shared).
type CommitResult = Result<(), (std::io::ErrorKind, String)>;
/// Where a receipt's waiter finds the result of the commit that carried it, and its
/// inclusion receipt when it asked for one (§18.11.3).
struct Outcome {
    done: OnceLock<CommitResult>,
    wants_proof: bool,
    inclusion: OnceLock<Vec<u8>>,
    /// The receipt the commit signed, for a payload queued unsigned (§12.4.2).
    signed: OnceLock<Vec<u8>>,
    /// Why such a payload could not be signed; it was then not committed.
    sign_failed: OnceLock<String>,
    /// Who waits for the result: the leader wakes exactly the waiters of its group and the
    /// next leader, rather than every waiter contending for the queue after each commit.
    waiter: Waiter,
}

/// Who appended a receipt and waits for its commit.
enum Waiter {
    /// A blocking thread, parked until its result is in or it is to lead a commit.
    Thread(std::thread::Thread),
    /// An async task ([`AuditLog::append_async`]): it is never woken to lead a commit (an
    /// `fdatasync` would stall its runtime thread), and leads one only as it appends, when
    /// its caller asks ([`Leader::Caller`]); it is told through this channel that its result
    /// is in.
    Task(Mutex<Option<tokio::sync::oneshot::Sender<()>>>),
}

impl Outcome {
    fn new(wants_proof: bool, waiter: Waiter) -> Arc<Self> {
        Arc::new(Self {
            done: OnceLock::new(),
            wants_proof,
            inclusion: OnceLock::new(),
            signed: OnceLock::new(),
            sign_failed: OnceLock::new(),
            waiter,
        })
    }

    /// Wakes the waiter: to read its result, or (a thread) to lead the next commit.
    fn wake(&self) {
        match &self.waiter {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(tx) => {
                if let Some(tx) = lock(tx).take() {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// The waiter's result, once its commit is over.
    fn result(&self, path: &Path) -> Option<Result<Option<Vec<u8>>, AppendError>> {
        let result = self.done.get()?;
        Some(
            result
                .clone()
                .map(|()| self.inclusion.get().cloned())
                .map_err(|(kind, message)| AppendError::StorageUnavailable {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(kind, message),
                }),
        )
    }
}

/// Who leads the commit of an async append when none is under way (§12.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leader {
    /// A thread of the blocking pool: the caller's runtime thread stays free to serve.
    Pool,
    /// The caller's own thread, for its group only: for a job alone in the node, which then
    /// saves two hand-overs between threads (to the pool and back). The runtime's other
    /// threads serve meanwhile; groups that gather during the commit go to the pool.
    Caller,
}

/// Receipts appended but not yet taken by a commit.
#[derive(Default)]
struct Queue {
    pending: Vec<(Pending, Arc<Outcome>)>,
    /// A commit is under way (its leader holds no lock on the queue meanwhile).
    committing: bool,
}

/// A receipt over the format's limit is refused before it is queued.
fn check_len(receipt: &[u8]) -> Result<(), AppendError> {
    if receipt.len() > MAX_RECEIPT_LEN {
        return Err(AppendError::TooLarge(receipt.len()));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a receipt could not be logged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The receipt exceeds the format's limit.
    #[error("receipt of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The node could not sign the receipt (§12.4.2).
    #[error("cannot sign the receipt: {0}")]
    Signing(String),
    /// The log's storage cannot take the record now (full, read-only, failing).
    #[error("audit log {path} cannot take the receipt: {source}")]
    StorageUnavailable {
        /// The log.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

impl From<AppendError> for ErrorFrame {
    /// §11.5: storage faults are `storage_unavailable`, so a client retries elsewhere; the
    /// message names the cause, not the path (§12.4.1).
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::TooLarge(_) | AppendError::Signing(_) => {
                ErrorFrame::new(ErrorCode::Internal, e.to_string())
            }
            AppendError::StorageUnavailable { source, .. } => ErrorFrame::new(
                ErrorCode::StorageUnavailable,
                format!("the node cannot make the receipt durable: {source}"),
            ),
        }
    }
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
        let mut tree = Tree {
            leaves: MerkleLog::new(),
            signed: None,
            latest: None,
            kept: None,
            history: tlog::HeadHistory::default(),
            inline: None,
        };
        let mut durable_len = MAGIC.len() as u64;
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
                tracing::warn!(
                    "audit log {}: dropping a torn tail of {} bytes after {} complete records",
                    path.display(),
                    s.torn_bytes,
                    s.records.len()
                );
                file.set_len(s.good_len)?;
                file.sync_all()?;
            }
            durable_len = s.good_len;
            for r in &s.records {
                tree.push(leaf_of(r))
                    .map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
            }
            s.records.len()
        };
        Ok((
            Self {
                file: Mutex::new(Tail::new(file, durable_len)?),
                tree: Mutex::new(tree),
                queue: Mutex::default(),
                path: path.to_path_buf(),
                // 10 µs to about 5 s.
                fsync: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
                sign_group: quorate_protocol::batch_receipt::sign_group,
            },
            count,
        ))
    }

    /// Appends a receipt and makes it durable; only then may the reply carrying it leave the
    /// node. On failure the log keeps exactly its complete records (§12.4.1).
    ///
    /// Group commit (§12.4): receipts appended while a commit is under way wait for the next
    /// one, and one write and one `fdatasync` make the whole group durable. Each caller still
    /// returns only once its own receipt is durable; if the commit fails, every receipt of the
    /// group is cut from the log and every caller gets the error.
    pub fn append(&self, receipt: &[u8]) -> Result<(), AppendError> {
        self.append_inner(receipt, false).map(|_| ())
    }

    /// [`Self::append`], returning the receipt's inclusion receipt (§18.4) under the one
    /// statement its group commit signed, when [`Self::prove_in_replies`] set a key;
    /// `None` otherwise.
    pub fn append_proved(&self, receipt: &[u8]) -> Result<Option<Vec<u8>>, AppendError> {
        self.append_inner(receipt, true)
    }

    fn append_inner(
        &self,
        receipt: &[u8],
        wants_proof: bool,
    ) -> Result<Option<Vec<u8>>, AppendError> {
        check_len(receipt)?;
        let mine = Outcome::new(wants_proof, Waiter::Thread(std::thread::current()));
        let mut queue = lock(&self.queue);
        queue
            .pending
            .push((Pending::Record(record(receipt)), mine.clone()));
        loop {
            if let Some(result) = mine.result(&self.path) {
                return result;
            }
            if queue.committing {
                // An unpark that comes between the unlock and the park is kept, and a
                // spurious wake-up only loops: the checks above decide.
                drop(queue);
                std::thread::park();
                queue = lock(&self.queue);
                continue;
            }
            // Lead: everything waiting now, this receipt included unless an earlier leader
            // took it already.
            queue.committing = true;
            queue = self.lead(queue, false).0;
        }
    }

    /// [`Self::append_proved`] (or [`Self::append`] when `wants_proof` is false) for async
    /// callers: the task waits without holding a thread. Receipts of tasks and of threads join
    /// the same groups; when no commit is under way, one is led from the blocking thread pool,
    /// so a burst of tasks costs one hand-over per group rather than one per receipt.
    pub async fn append_async(
        self: &Arc<Self>,
        receipt: &[u8],
        wants_proof: bool,
        leader: Leader,
    ) -> Result<Option<Vec<u8>>, AppendError> {
        check_len(receipt)?;
        let mine = self
            .queue_async(Pending::Record(record(receipt)), wants_proof, leader)
            .await;
        mine.result(&self.path)
            .unwrap_or_else(|| Err(self.not_run()))
    }

    /// Queues a payload to be signed by the commit that makes it durable, together with the
    /// other payloads of its group (§12.4.2): one receipt (§4) when it commits alone, else a
    /// batch receipt (§5.3) under the group's one signed root. Returns the receipt once it is
    /// durable. A payload too large to travel in a batch receipt is signed alone at once.
    pub async fn append_payload_async(
        self: &Arc<Self>,
        payload: EncodedPayload,
        key: Arc<SecretKey>,
        leader: Leader,
    ) -> Result<Vec<u8>, AppendError> {
        if !group_sign::fits_a_batch(&payload) {
            let receipt = payload
                .sign(&key)
                .map_err(|e| AppendError::Signing(e.to_string()))?;
            self.append_async(&receipt, false, leader).await?;
            return Ok(receipt);
        }
        let mine = self
            .queue_async(Pending::Payload(payload, key), false, leader)
            .await;
        if let Some(e) = mine.sign_failed.get() {
            return Err(AppendError::Signing(e.clone()));
        }
        mine.result(&self.path)
            .unwrap_or_else(|| Err(self.not_run()))?;
        mine.signed.get().cloned().ok_or_else(|| self.not_run())
    }

    fn not_run(&self) -> AppendError {
        AppendError::StorageUnavailable {
            path: self.path.clone(),
            source: std::io::Error::other("the commit of this receipt did not run"),
        }
    }

    /// Queues an entry for a task and waits until the commit that carried it is settled:
    /// holding no thread, unless `leader` has this thread lead the commit.
    async fn queue_async(
        self: &Arc<Self>,
        entry: Pending,
        wants_proof: bool,
        leader: Leader,
    ) -> Arc<Outcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mine = Outcome::new(wants_proof, Waiter::Task(Mutex::new(Some(tx))));
        {
            let mut queue = lock(&self.queue);
            queue.pending.push((entry, mine.clone()));
            if !queue.committing {
                queue.committing = true;
                let tasks_wait = match leader {
                    Leader::Caller => self.lead(queue, true).1,
                    Leader::Pool => {
                        drop(queue);
                        true
                    }
                };
                if tasks_wait {
                    let log = self.clone();
                    tokio::task::spawn_blocking(move || drop(log.lead(lock(&log.queue), false)));
                }
            }
        }
        // Woken when the commit that carried this receipt is settled. (`mine` keeps the
        // sender alive, so the wait ends only by that; were a result ever missing, no result
        // is released.)
        let _ = rx.await;
        mine
    }

    /// Commits groups while this caller leads (`queue.committing` is set by the caller): the
    /// pending group, then, as long as the next waiter is a task (which cannot lead), the
    /// group that gathered meanwhile. Hands over to a waiting thread, or stops when nothing
    /// is pending. With `one_group`, stops after the first group and returns `true` when a
    /// task waits, still leading: the caller then hands the lead to the pool.
    fn lead<'q>(
        &'q self,
        mut queue: MutexGuard<'q, Queue>,
        one_group: bool,
    ) -> (MutexGuard<'q, Queue>, bool) {
        loop {
            let pending = std::mem::take(&mut queue.pending);
            drop(queue);
            // §12.4.2: the payloads of the group are signed together, then committed.
            let (group, unsigned) = sign_pending(pending, unix_now(), self.sign_group);
            let result = self.commit(&group);
            queue = lock(&self.queue);
            for (_, outcome) in &group {
                let _ = outcome.done.set(result.clone());
                outcome.wake();
            }
            for outcome in &unsigned {
                outcome.wake();
            }
            let next = queue.pending.first().map(|(_, o)| o.clone());
            match next {
                Some(next) if matches!(next.waiter, Waiter::Task(_)) => {
                    if one_group {
                        return (queue, true);
                    }
                }
                Some(next) => {
                    // Whoever appended first since the commit began leads the next one.
                    queue.committing = false;
                    next.wake();
                    return (queue, false);
                }
                None => {
                    queue.committing = false;
                    return (queue, false);
                }
            }
        }
    }

    /// Writes a group of records after the durable end and `fdatasync`s them; on failure cuts
    /// the file back to the durable end (or marks it to be cut first by the next commit).
    fn commit(&self, group: &[(Vec<u8>, Arc<Outcome>)]) -> CommitResult {
        // A panic while holding the lock leaves the tail as consistent as any failure does.
        let mut tail = lock(&self.file);
        let started = std::time::Instant::now();
        let bytes: Vec<u8> = group.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        match tail.append_durably(&bytes) {
            Ok(()) => {
                self.fsync.observe(started.elapsed().as_secs_f64());
                // §18.11.1: the leaves join the tree in file order (the tail lock is held).
                let mut tree = lock(&self.tree);
                let mut indices = Vec::with_capacity(group.len());
                for (r, _) in group {
                    indices.push(tree.push(leaf_of(&r[RECORD_HEADER..])));
                    if let Some(Err(e)) = indices.last() {
                        tracing::error!("audit log {}: {e}", self.path.display());
                    }
                }
                tree.prove_group(group, &indices, &self.path);
                Ok(())
            }
            Err(source) => {
                // §12.4.1: the operator must learn of it; the jobs are answered with
                // `storage_unavailable`.
                tracing::error!(
                    receipts = group.len(),
                    "audit log {}: cannot make receipts durable ({source}); answering jobs with storage_unavailable until it can",
                    self.path.display()
                );
                Err((source.kind(), source.to_string()))
            }
        }
    }

    /// Signs a tree head over every durable record (§18.3, §18.11.2) if records were made
    /// durable since the last head it signed (or none was signed yet); `None` otherwise.
    pub fn sign_head(&self, key: &SecretKey, now: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let mut tree = lock(&self.tree);
        let size = tree.leaves.len();
        if tree.signed == Some(size) {
            return Ok(None);
        }
        let root = tree
            .leaves
            .root(size)
            .ok_or_else(|| anyhow::anyhow!("no root for the log's own size {size}"))?;
        let head = TreeHead {
            log_id: key.public_key().key_id(),
            size,
            root,
            issued_at: now,
        }
        .sign(key)?;
        tree.signed = Some(size);
        let new = tree.history.signed(size, now);
        if new {
            self.keep_head_record(size, now);
        }
        if new && size > 0 {
            // §18.12: proofs against this head then cost no signature.
            let statement =
                quorate_protocol::tlog::TreeStatement::sign(&tree.leaves, size, now, key)?;
            tree.history.keep_statement(statement);
        }
        tree.latest = Some(head.clone());
        Ok(Some(head))
    }

    /// The head `LOG.head` should hold (§18.11.2), when it does not hold it yet: a head is
    /// signed first if records were made durable since the last one, and the latest head is
    /// returned with its size unless [`Self::head_kept`] recorded that size already. A head
    /// signed on request (§18.12) is returned here too, so the file never falls behind it.
    pub fn head_to_keep(
        &self,
        key: &SecretKey,
        now: u64,
    ) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        self.sign_head(key, now)?;
        let tree = lock(&self.tree);
        Ok(match (tree.signed, &tree.latest) {
            (Some(size), Some(head)) if tree.kept != Some(size) => Some((size, head.clone())),
            _ => None,
        })
    }

    /// The head of `size` leaves from [`Self::head_to_keep`] is written to `LOG.head`.
    pub fn head_kept(&self, size: u64) {
        lock(&self.tree).kept = Some(size);
    }

    /// Where the latest signed tree head is kept: [`head_path_of`] this log.
    pub fn head_path(&self) -> PathBuf {
        head_path_of(&self.path)
    }

    /// The append-and-fsync latency histogram, shared with the metrics registry (§12.7).
    pub fn fsync_histogram(&self) -> Histogram {
        self.fsync.clone()
    }

    /// Bytes of complete, durable records (the header included).
    pub fn durable_len(&self) -> u64 {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .durable_len
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
