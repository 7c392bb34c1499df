//! `quorate._native`: the Rust side of the `quorate` Python package (`python/quorate/`).
//!
//! Verification is `quorate_verify`'s, exactly as `quorate verify` runs it: the files are
//! gathered as the command gathers them and the report is the command's JSON. Results cross
//! into Python as JSON text, which the package turns into objects.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use quorate_protocol::batch_receipt::{self, AnyReceipt};
use quorate_protocol::ensemble::MAX_TRANSCRIPT_LEN;
use quorate_protocol::receipt::{Commitment, MAX_RECEIPT_LEN};
use quorate_protocol::roster::MAX_ROSTER_LEN;
use quorate_verify::named::{
    Artefact, Keys, MAX_PUBLIC_KEY_LEN, parse_public_key, verify_artefacts,
};
use quorate_verify::receipts::MAX_AUDIT_LOG_LEN;
use serde_json::{Value, json};

mod mesh;

create_exception!(
    _native,
    QuorateError,
    PyException,
    "Every error of the quorate package."
);
create_exception!(
    _native,
    VerifyError,
    QuorateError,
    "Verification could not run: a missing or invalid roster, key or file list."
);
create_exception!(
    _native,
    MalformedReceipt,
    QuorateError,
    "Bytes that are not a well-formed receipt under the spec's strict rules."
);
create_exception!(
    _native,
    MeshError,
    QuorateError,
    "A mesh job failed: no quorum, a refused node, a bad receipt, or the network."
);

/// Reads a file with a size limit, with `quorate verify`'s wording on failure.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > limit {
        return Err(format!(
            "{} is {} bytes; the limit for this kind of file is {limit}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every file below `dir` whose extension is one of `extensions`, sorted (as the command
/// walks directories).
fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect())
        .map_err(|e| format!("cannot list receipts: {e}"))?;
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

fn label(p: &Path) -> String {
    p.display().to_string()
}

/// Loads the trusted keys as `--trust K… --roster R --admin A` does.
fn load_keys(
    trust: &[PathBuf],
    roster: Option<&Path>,
    admin: Option<&Path>,
    now: u64,
) -> Result<Keys, String> {
    let mut keys = Keys::default();
    for p in trust {
        let bytes = read_limited(p, MAX_PUBLIC_KEY_LEN as u64)?;
        keys.trust(parse_public_key(&label(p), &bytes)?, &label(p));
    }
    match (roster, admin) {
        (Some(r), Some(a)) => {
            let admin = parse_public_key(&label(a), &read_limited(a, MAX_PUBLIC_KEY_LEN as u64)?)?;
            let bytes = read_limited(r, MAX_ROSTER_LEN as u64)?;
            keys.add_roster(&label(r), &bytes, &admin, now)?;
        }
        (Some(_), None) => {
            return Err("a roster needs admin= (the roster authority's public key)".into());
        }
        (None, Some(_)) => return Err("admin= needs roster=".into()),
        (None, None) if trust.is_empty() => {
            return Err(
                "no trusted keys: give roster= and admin=, or trust=[node key files]".into(),
            );
        }
        (None, None) => {}
    }
    Ok(keys)
}

/// The transcript and member receipts kept beside an aggregate receipt file (§15.5).
fn beside_on_disk(aggregate: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let dir = Path::new(aggregate).parent().unwrap_or(Path::new("."));
    let transcript = read_limited(&dir.join("transcript.cbor"), MAX_TRANSCRIPT_LEN as u64)?;
    let mut member_files = Vec::new();
    if dir.join("members").is_dir() {
        walk(&dir.join("members"), &["cose"], &mut member_files)?;
    }
    let members = member_files
        .iter()
        .map(|p| read_limited(p, MAX_RECEIPT_LEN as u64))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((transcript, members))
}

/// The artefacts under `paths`, gathered as `quorate verify PATH…` gathers them.
fn gather(paths: &[PathBuf]) -> Result<Vec<Artefact>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &["cose", "qlog", "qchain", "bundle"], &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    Ok(files
        .iter()
        .map(|p| Artefact {
            label: label(p),
            bytes: read_limited(p, MAX_AUDIT_LOG_LEN),
        })
        .collect())
}

/// `quorate verify PATHS… [--trust K…] [--roster R --admin A] --json`, with `now` the Unix
/// time a roster's expiry is judged at. Returns
/// `{"ok", "report" (the command's JSON), "lines" (its lines), "notes"}` as JSON text.
#[pyfunction]
#[pyo3(signature = (paths, trust, roster, admin, now))]
fn verify_paths(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    trust: Vec<PathBuf>,
    roster: Option<PathBuf>,
    admin: Option<PathBuf>,
    now: u64,
) -> PyResult<String> {
    let run = || -> Result<String, String> {
        if paths.is_empty() {
            return Err(
                "give at least one receipt file, audit log, chain, bundle or directory".into(),
            );
        }
        let keys = load_keys(&trust, roster.as_deref(), admin.as_deref(), now)?;
        let artefacts = gather(&paths)?;
        let report = verify_artefacts(&artefacts, &keys, &beside_on_disk)?;
        Ok(json!({
            "ok": report.ok,
            "report": report.json,
            "lines": report.lines,
            "notes": keys.notes,
        })
        .to_string())
    };
    py.detach(run).map_err(VerifyError::new_err)
}

fn commitments(list: &[Commitment]) -> Value {
    list.iter()
        .map(|c| json!({"name": c.name, "digest": hex::encode(c.digest), "salted": c.salted}))
        .collect()
}

/// The fields of a receipt (single or batch), as JSON text; raises `MalformedReceipt` with
/// the reason `quorate verify` gives.
#[pyfunction]
fn parse_receipt(bytes: &[u8]) -> PyResult<String> {
    if bytes.len() > MAX_RECEIPT_LEN {
        return Err(MalformedReceipt::new_err(format!(
            "malformed: {} bytes; a receipt is at most {MAX_RECEIPT_LEN}",
            bytes.len()
        )));
    }
    let r = batch_receipt::parse_any(bytes)
        .map_err(|e| MalformedReceipt::new_err(format!("malformed: {e}")))?;
    let p = r.payload();
    Ok(json!({
        "form": if matches!(r, AnyReceipt::Batch(_)) { "batch" } else { "single" },
        "kid": r.kid().to_string(),
        "job_id": hex::encode(p.job_id),
        "nonce": hex::encode(&p.nonce),
        "kind": p.kind.name(),
        "model_digest": hex::encode(p.model_digest),
        "inputs": commitments(&p.inputs),
        "outputs": commitments(&p.outputs),
        "provider": p.provider,
        "runtime": p.runtime,
        "issued_at": p.issued_at,
        "previous": p.previous.map(hex::encode),
        "policy_digest": p.policy.map(hex::encode),
    })
    .to_string())
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_paths, m)?)?;
    m.add_function(wrap_pyfunction!(parse_receipt, m)?)?;
    m.add("QuorateError", m.py().get_type::<QuorateError>())?;
    m.add("VerifyError", m.py().get_type::<VerifyError>())?;
    m.add("MalformedReceipt", m.py().get_type::<MalformedReceipt>())?;
    m.add("MeshError", m.py().get_type::<MeshError>())?;
    mesh::register(m)?;

    Ok(())
}
