//! The transparency-log side of `quorate verify` (§18.8): audit logs against signed tree
//! heads (`--head`), equivocation bundles (`*.equivocation`, or any file that decodes as
//! one), and signed tree heads and consistency receipts (`*.head`, `*.consistency`), each
//! judged under the trusted key of the log it names.

use std::path::{Path, PathBuf};

use quorate_crypto::{KeyId, PublicKey};
use quorate_node::files::read_limited;
use quorate_protocol::audit_log::RecordReader;
use quorate_protocol::batch_receipt::parse_any;
use quorate_protocol::tlog::{
    ConsistencyReceipt, EquivocationBundle, MAX_BUNDLE_LEN, MAX_COSE_RECEIPT_LEN,
    MAX_SIGNED_DOC_LEN, TreeHead,
};
use quorate_verify::TrustStore;
use quorate_verify::tlog::{
    NotProven, Verdict, convict, verify_consistency_receipt, verify_records, verify_tree_head,
};

/// The file extension of an equivocation bundle written by a monitor.
pub const EQUIVOCATION_EXTENSION: &str = "equivocation";
/// The file extensions of signed tree heads and consistency receipts, as nodes and monitors
/// write them (`LOG.head`, `NODE.head`, `NODE.consistency`, §18.11.2, §18.13).
pub const DOCUMENT_EXTENSIONS: [&str; 2] = ["head", "consistency"];

/// Whether `path` is named as a signed tree head or a consistency receipt.
pub fn is_document_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| DOCUMENT_EXTENSIONS.iter().any(|d| e == *d))
}

/// Verifies each signed tree head (§18.8.1) and consistency receipt (§18.8.3 steps 1–6)
/// under the trusted key of the log it names.
pub fn check_documents(files: &[PathBuf], trust: &TrustStore) -> Vec<TlogLine> {
    per_file(files, trust, document)
}

/// One line per file, judged by `check`.
fn per_file(
    files: &[PathBuf],
    trust: &TrustStore,
    check: fn(&Path, &TrustStore) -> Result<String, String>,
) -> Vec<TlogLine> {
    files
        .iter()
        .map(|path| TlogLine {
            label: path.display().to_string(),
            outcome: check(path, trust),
        })
        .collect()
}

/// The trusted key and name of the log `kid`, or why there is none.
fn trusted(trust: &TrustStore, kid: KeyId) -> Result<(PublicKey, String), String> {
    trust
        .get(&kid)
        .cloned()
        .ok_or_else(|| format!("the log {kid} is not among the trusted keys"))
}

fn document(path: &Path, trust: &TrustStore) -> Result<String, String> {
    let bytes = read_limited(path, MAX_COSE_RECEIPT_LEN as u64).map_err(|e| format!("{e:#}"))?;
    if let Ok(head) = TreeHead::parse(&bytes) {
        let (key, name) = trusted(trust, head.sign1.kid)?;
        let h = verify_tree_head(&bytes, &key).map_err(|e| format!("{e} ({})", e.code()))?;
        return Ok(format!(
            "signed tree head of {name}: {} leaves, root {}…, signed {}",
            h.size,
            &hex::encode(h.root)[..16],
            quorate_protocol::time::utc(h.issued_at)
        ));
    }
    let receipt = ConsistencyReceipt::parse(&bytes)
        .map_err(|e| format!("neither a signed tree head nor a consistency receipt: {e}"))?;
    let (key, name) = trusted(trust, receipt.cose.kid)?;
    let c = verify_consistency_receipt(&bytes, &key).map_err(|e| format!("{e} ({})", e.code()))?;
    Ok(format!(
        "consistency receipt of {name}: its {} leaves (root {}…) are a prefix of its {} (root {}…)",
        c.old_size,
        &hex::encode(c.old_root)[..16],
        c.new_size,
        &hex::encode(c.new_root)[..16]
    ))
}

/// One line of the report: what was checked, and the verdict in words.
pub struct TlogLine {
    /// The file or pair of files.
    pub label: String,
    /// `Ok(what held)` or `Err(why not)`.
    pub outcome: Result<String, String>,
}

/// Whether `path` holds an equivocation bundle (§18.7): by extension, or by content.
pub fn is_equivocation_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == EQUIVOCATION_EXTENSION)
        || (path.is_file()
            && read_limited(path, MAX_BUNDLE_LEN as u64)
                .is_ok_and(|b| EquivocationBundle::from_cbor(&b).is_ok()))
}

/// Judges every equivocation bundle (§18.8.5) under the trusted key of the log its heads
/// name. A bundle is `Ok` when it convicts: it is evidence, and it holds.
pub fn check_equivocations(files: &[PathBuf], trust: &TrustStore) -> Vec<TlogLine> {
    per_file(files, trust, judge)
}

fn judge(path: &Path, trust: &TrustStore) -> Result<String, String> {
    let bytes = read_limited(path, MAX_BUNDLE_LEN as u64).map_err(|e| format!("{e:#}"))?;
    let bundle = EquivocationBundle::from_cbor(&bytes)
        .map_err(|e| format!("not an equivocation bundle: {e}"))?;
    let kid = TreeHead::parse(&bundle.head_a)
        .map_err(|e| format!("its first head does not decode: {e}"))?
        .sign1
        .kid;
    let (key, name) = trusted(trust, kid)?;
    match convict(&bytes, &key) {
        Verdict::Equivocated(e) => Ok(format!(
            "log of {name} [{kid}] EQUIVOCATED: it signed two roots for size {}: {}… ({}) and {}… ({})",
            e.size,
            &hex::encode(e.first.0)[..16],
            e.first.1,
            &hex::encode(e.second.0)[..16],
            e.second.1
        )),
        Verdict::NotProven(why) => Err(format!(
            "proves nothing against the log of {name}: {}",
            not_proven(&why)
        )),
    }
}

fn not_proven(why: &NotProven) -> String {
    match why {
        NotProven::Malformed(e) => format!("malformed ({e})"),
        NotProven::DifferentLogs => "its heads belong to two different logs".into(),
        NotProven::NotSigned(e) => format!("a document is not the log's signed statement ({e})"),
        NotProven::SameTree => "both heads are one tree (same size, same root)".into(),
        NotProven::NoConsistencyReceipt => {
            "heads of different sizes and no consistency receipt: not provable offline".into()
        }
        NotProven::OtherSizes => "its consistency receipt is about other sizes".into(),
        NotProven::Consistent => "its consistency receipt links the two heads".into(),
        _ => format!("{why:?}"),
    }
}

/// An audit log's records, read one at a time (§6.4).
fn records(path: &Path) -> Result<impl Iterator<Item = Result<Vec<u8>, String>>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = RecordReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .map_err(|e| e.to_string())?;
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        match reader.next_record() {
            Ok(r) => r.map(Ok),
            Err(e) => {
                failed = true;
                Some(Err(format!("reading stopped: {e}")))
            }
        }
    }))
}

/// The key id that signed an audit log's first record, if it has one.
fn log_signer(path: &Path) -> Result<Option<KeyId>, String> {
    let first = records(path)?.next().transpose()?;
    Ok(first.and_then(|r| parse_any(&r).ok()).map(|r| r.kid()))
}

/// Checks each audit log among `files` against each head of the same log (§18.8.6): the
/// head verifies under the log's trusted key, and the log's first `size` records reproduce
/// its root. Logs are read record by record, in bounded memory. A head that matches no log
/// given is reported as a failure.
pub fn check_heads(heads: &[PathBuf], files: &[PathBuf], trust: &TrustStore) -> Vec<TlogLine> {
    let logs: Vec<(&PathBuf, Result<Option<KeyId>, String>)> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "qlog"))
        .map(|p| (p, log_signer(p)))
        .collect();
    let mut lines = Vec::new();
    for head_path in heads {
        let mut line = |label: String, outcome| lines.push(TlogLine { label, outcome });
        let head = match read_limited(head_path, MAX_SIGNED_DOC_LEN as u64)
            .map_err(|e| format!("{e:#}"))
            .and_then(|b| {
                TreeHead::parse(&b)
                    .map(|h| (b, h))
                    .map_err(|e| e.to_string())
            }) {
            Ok(h) => h,
            Err(e) => {
                line(
                    head_path.display().to_string(),
                    Err(format!("not a signed tree head: {e}")),
                );
                continue;
            }
        };
        let (bytes, parsed) = head;
        let kid = parsed.sign1.kid;
        let (key, name) = match trusted(trust, kid) {
            Ok(t) => t,
            Err(e) => {
                line(head_path.display().to_string(), Err(e));
                continue;
            }
        };
        let mut matched = false;
        for (log_path, signer) in &logs {
            let label = format!("{} against {}", log_path.display(), head_path.display());
            match signer {
                Ok(Some(k)) if *k == kid => {}
                // §18.8.7: an empty log has no signer; it is the log of the head named after it.
                Ok(None) if quorate_node::audit::head_path_of(log_path) == *head_path => {}
                Ok(_) => continue,
                Err(e) => {
                    line(label, Err(e.clone()));
                    continue;
                }
            }
            matched = true;
            let outcome = records(log_path).and_then(|records| {
                verify_records(records, &bytes, &key)
                    .map(|m| {
                        format!(
                            "the first {} of its {} records reproduce the signed head of {name} (root {}…)",
                            m.size,
                            m.records,
                            &hex::encode(parsed.body.root)[..16]
                        )
                    })
                    .map_err(|e| format!("{} ({})", e, e.code()))
            });
            line(label, outcome);
        }
        if !matched {
            line(
                head_path.display().to_string(),
                Err(format!(
                    "no audit log of {name} was given to check this head against"
                )),
            );
        }
    }
    lines
}

/// The lines as `OK`/`FAIL` text.
pub fn human(lines: &[TlogLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match &l.outcome {
            Ok(s) => format!("OK   {}: {s}", l.label),
            Err(e) => format!("FAIL {}: {e}", l.label),
        })
        .collect()
}

/// The lines as JSON entries.
pub fn json(lines: &[TlogLine]) -> serde_json::Value {
    lines
        .iter()
        .map(|l| {
            serde_json::json!({
                "path": l.label,
                "ok": l.outcome.is_ok(),
                "detail": match &l.outcome { Ok(s) | Err(s) => s },
            })
        })
        .collect()
}
