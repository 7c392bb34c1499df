//! The whole `quorate verify` report over artefacts handed in by name, for shells that hold
//! bytes rather than paths: the browser page (`web/`) and the Python package (`python/`).
//!
//! It sorts artefacts the way the command does (evidence bundles by extension or content
//! type, chains by extension, aggregate receipts by content type, the rest receipts and audit
//! logs), applies the same size limits, and builds the same JSON report (§6.3) and the same
//! human lines, with the same failure codes and reasons.

use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::chain::MAX_CHAIN_LEN;
use quorate_protocol::ensemble::MAX_AGGREGATE_LEN;
use quorate_protocol::evidence::MAX_BUNDLE_LEN;
use quorate_protocol::receipt::MAX_RECEIPT_LEN;
use quorate_protocol::roster::{MAX_ROSTER_LEN, Role, Roster, RosterError};
use serde_json::json;

use crate::TrustStore;
use crate::bundle::{BundleFileReport, looks_like_bundle, verify_bundle};
use crate::chain::{CHAIN_EXTENSION, ChainReport, verify_chain};
use crate::receipts::{Failure, FileReport, MAX_AUDIT_LOG_LEN, Source, expand, verify_receipts};

/// Largest public-key file read (as `quorate verify` does).
pub const MAX_PUBLIC_KEY_LEN: usize = 16 << 10;

/// One artefact: a label (a file name or relative path) and its bytes, or why there are none.
pub struct Artefact {
    /// A file name or a relative path; its extension decides how a file is read, as on the
    /// command line.
    pub label: String,
    /// The bytes, or why they could not be read.
    pub bytes: Result<Vec<u8>, String>,
}

/// The transcript and member receipts kept beside an aggregate receipt (§15.5), found by the
/// caller from the aggregate's label: `DIR/transcript.cbor` and `DIR/members/*.cose`.
pub type Beside<'a> = &'a dyn Fn(&str) -> Result<(Vec<u8>, Vec<Vec<u8>>), String>;

/// The keys a report is checked against.
#[derive(Default)]
pub struct Keys {
    /// Node keys: receipts, chains and bundles must be signed by one of them.
    pub nodes: TrustStore,
    /// Keys that may sign aggregate receipts: every roster entry, and every trusted key.
    pub aggregators: TrustStore,
    /// Notes for the reader (for instance an expired roster), not failures.
    pub notes: Vec<String>,
}

impl Keys {
    /// Trusts one key, as `--trust FILE` does: named by its label's file name for receipts.
    pub fn trust(&mut self, key: PublicKey, label: &str) {
        self.aggregators.add(key, label);
        let name = label.rsplit(['/', '\\']).next().unwrap_or(label);
        self.nodes
            .add(key, if name.is_empty() { label } else { name });
    }

    /// Trusts the nodes of a roster signed by `admin`, as `--roster R --admin A` does. An
    /// auditor checks old receipts: an expired roster is noted, not refused; every other
    /// roster fault is an error `roster LABEL: reason`.
    pub fn add_roster(
        &mut self,
        label: &str,
        bytes: &[u8],
        admin: &PublicKey,
        now: u64,
    ) -> Result<(), String> {
        if bytes.len() > MAX_ROSTER_LEN {
            return Err(too_large(label, bytes.len(), MAX_ROSTER_LEN as u64));
        }
        let now = match Roster::verify(bytes, admin, now) {
            Err(RosterError::Expired { expires_at, .. }) => {
                self.notes.push(format!(
                    "note: the roster expired at {expires_at}; checking receipts against it as signed"
                ));
                expires_at.saturating_sub(1)
            }
            _ => now,
        };
        let roster =
            Roster::verify(bytes, admin, now).map_err(|e| format!("roster {label}: {e}"))?;
        for e in &roster.entries {
            self.aggregators.add(e.key, e.name.clone());
        }
        for e in roster.entries.iter().filter(|e| e.role == Role::Node) {
            self.nodes.add(e.key, e.name.clone());
        }
        Ok(())
    }
}

/// Parses a public key: the PEM `.pub` file `quorate keygen` writes (what `quorate verify`
/// reads), or the 32-byte key as 64 hex digits.
pub fn parse_public_key(label: &str, bytes: &[u8]) -> Result<PublicKey, String> {
    if bytes.len() > MAX_PUBLIC_KEY_LEN {
        return Err(too_large(label, bytes.len(), MAX_PUBLIC_KEY_LEN as u64));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{label} is not text"))?;
    let trimmed = text.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        let raw = hex::decode(trimmed).map_err(|e| format!("public key {label}: {e}"))?;
        return PublicKey::from_bytes(&raw).map_err(|e| format!("public key {label}: {e}"));
    }
    PublicKey::from_pem(text).map_err(|e| format!("public key {label}: {e}"))
}

/// The report: the JSON of `quorate verify --json`, the lines of `quorate verify`, and the
/// verdict (the command's exit status 0).
pub struct Report {
    /// Exactly what `quorate verify --json` prints for the same files.
    pub json: serde_json::Value,
    /// Exactly the lines `quorate verify` prints for the same files.
    pub lines: Vec<String>,
    /// Every artefact verified.
    pub ok: bool,
}

fn too_large(label: &str, len: usize, limit: u64) -> String {
    format!("{label} is {len} bytes; the limit for this kind of file is {limit}")
}

fn extension(label: &str) -> Option<&str> {
    std::path::Path::new(label)
        .extension()
        .and_then(|e| e.to_str())
}

fn capped(a: &Artefact, limit: u64) -> Result<Vec<u8>, String> {
    match &a.bytes {
        Err(e) => Err(e.clone()),
        Ok(b) if b.len() as u64 > limit => Err(too_large(&a.label, b.len(), limit)),
        Ok(b) => Ok(b.clone()),
    }
}

/// Verifies artefacts given as files to `quorate verify` (directories already expanded by the
/// caller into their `*.cose`, `*.qlog`, `*.qchain` and `*.bundle` files). Errors are those
/// the command stops on: nothing to verify.
pub fn verify_artefacts(
    artefacts: &[Artefact],
    keys: &Keys,
    beside: Beside<'_>,
) -> Result<Report, String> {
    let is_bundle = |a: &Artefact| {
        extension(&a.label) == Some("bundle")
            || a.bytes
                .as_ref()
                .is_ok_and(|b| looks_like_bundle(&b[..b.len().min(64)]))
    };
    let (bundles, rest): (Vec<&Artefact>, Vec<&Artefact>) =
        artefacts.iter().partition(|a| is_bundle(a));
    let (chains, files): (Vec<&Artefact>, Vec<&Artefact>) = rest
        .into_iter()
        .partition(|a| extension(&a.label) == Some(CHAIN_EXTENSION));
    let bundle_reports: Vec<BundleFileReport> = bundles
        .iter()
        .map(|a| verify_bundle(&a.label, capped(a, MAX_BUNDLE_LEN as u64), &keys.nodes))
        .collect();
    let bundles_ok = bundle_reports.iter().all(BundleFileReport::ok);
    if !bundles.is_empty() && files.is_empty() && chains.is_empty() {
        let mut lines = Vec::new();
        for r in &bundle_reports {
            lines.extend(crate::bundle::human_lines(r, &keys.nodes));
        }
        return Ok(Report {
            json: crate::bundle::json_report(&bundle_reports, &keys.nodes),
            lines,
            ok: bundles_ok,
        });
    }
    if files.is_empty() && chains.is_empty() {
        return Err(
            "no receipt files found (directories are searched for *.cose, *.qlog, *.qchain and *.bundle)"
                .into(),
        );
    }
    let chain_reports: Vec<ChainReport> = chains
        .iter()
        .map(|a| {
            verify_chain(
                &a.label,
                capped(a, MAX_CHAIN_LEN as u64),
                &keys.nodes,
                None,
                &[],
            )
        })
        .collect();
    let chains_failed = chain_reports.iter().filter(|r| r.failure.is_some()).count();
    let (ensembles, files): (Vec<&Artefact>, Vec<&Artefact>) = files.into_iter().partition(|a| {
        capped(a, MAX_AGGREGATE_LEN as u64).is_ok_and(|b| crate::aggregate::is_aggregate(&b))
    });
    let lookup = |k: &KeyId| keys.aggregators.get(k).cloned();
    let ensemble_results: Vec<(&str, Result<String, String>)> = ensembles
        .iter()
        .map(|a| {
            let result = capped(a, MAX_AGGREGATE_LEN as u64).and_then(|agg| {
                let (transcript, members) = beside(&a.label)?;
                crate::aggregate::verify_aggregate(&agg, &transcript, &members, &lookup)
            });
            (a.label.as_str(), result)
        })
        .collect();
    let ensembles_failed = ensemble_results.iter().filter(|(_, r)| r.is_err()).count();
    let sources: Vec<Source> = files
        .iter()
        .flat_map(|a| {
            let limit = if extension(&a.label) == Some("qlog") {
                MAX_AUDIT_LOG_LEN
            } else {
                MAX_RECEIPT_LEN as u64
            };
            match capped(a, limit) {
                Ok(bytes) => expand(&a.label, bytes),
                Err(e) => vec![Source {
                    label: a.label.clone(),
                    bytes: Err(Failure::Io(e)),
                }],
            }
        })
        .collect();
    let reports: Vec<FileReport> = verify_receipts(sources, &keys.nodes, &[]);
    let receipts_failed = reports.iter().filter(|r| r.failure.is_some()).count();
    let failed = receipts_failed + chains_failed + ensembles_failed;

    let mut doc = crate::receipts::json_report(&reports);
    if !ensemble_results.is_empty() {
        doc["aggregates"] = json!(
            ensemble_results
                .iter()
                .map(|(p, r)| json!({
                    "path": p, "ok": r.is_ok(),
                    "detail": match r { Ok(s) | Err(s) => s },
                }))
                .collect::<Vec<_>>()
        );
        doc["ok"] = (failed == 0).into();
    }
    if !chain_reports.is_empty() {
        doc["chains"] = chain_reports.iter().map(crate::chain::json_entry).collect();
        doc["ok"] = (failed == 0).into();
    }
    if !bundle_reports.is_empty() {
        doc["bundles"] = crate::bundle::json_report(&bundle_reports, &keys.nodes)["bundles"].take();
        doc["ok"] = json!(doc["ok"] == true && bundles_ok);
    }

    let mut lines: Vec<String> = chain_reports.iter().map(crate::chain::human_line).collect();
    lines.extend(reports.iter().map(crate::receipts::human_line));
    for (p, r) in &ensemble_results {
        lines.push(match r {
            Ok(line) => format!("OK   {p}: {line}"),
            Err(e) => format!("FAIL {p}: {e}"),
        });
    }
    let total = reports.len() + ensemble_results.len();
    lines.push(format!(
        "{} of {total} receipts verified",
        total - receipts_failed - ensembles_failed
    ));
    if !chain_reports.is_empty() {
        lines.push(format!(
            "{} of {} receipt chains verified",
            chain_reports.len() - chains_failed,
            chain_reports.len()
        ));
    }
    for r in &bundle_reports {
        lines.extend(crate::bundle::human_lines(r, &keys.nodes));
    }
    Ok(Report {
        json: doc,
        lines,
        ok: failed == 0 && bundles_ok,
    })
}

/// Finds the transcript and member receipts of an aggregate receipt among named files, as
/// `quorate verify` finds them on disk: `DIR/transcript.cbor` and `DIR/members/*.cose`
/// (sorted by name), where `DIR` is the directory part of the aggregate's label.
pub fn beside_in<'a>(
    files: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    aggregate_label: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let dir = aggregate_label
        .rfind(['/', '\\'])
        .map_or("", |i| &aggregate_label[..=i]);
    let transcript_name = format!("{dir}transcript.cbor");
    let transcript = files
        .clone()
        .find(|(n, _)| *n == transcript_name)
        .map(|(_, b)| b.to_vec())
        .ok_or_else(|| format!("cannot read {transcript_name}: not among the files given"))?;
    let members_dir = format!("{dir}members/");
    let mut members: Vec<(&str, &[u8])> = files
        .filter(|(n, _)| {
            n.strip_prefix(members_dir.as_str())
                .is_some_and(|rest| !rest.is_empty() && extension(n) == Some("cose"))
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    if let Some((n, b)) = members.iter().find(|(_, b)| b.len() > MAX_RECEIPT_LEN) {
        return Err(too_large(n, b.len(), MAX_RECEIPT_LEN as u64));
    }
    Ok((
        transcript,
        members.into_iter().map(|(_, b)| b.to_vec()).collect(),
    ))
}
