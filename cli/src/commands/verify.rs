//! `quorate verify`: offline verification of receipts (§6).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use quorate_protocol::tensor_file::{self, MAX_FILE_LEN, RevealedTensor};

use std::io::Write;

use crate::commands::verify_tlog;
use crate::verify_files::{collect_files, verify_streaming};
use quorate_node::files::{load_public_key, read_limited};
use quorate_verify::TrustStore;
use quorate_verify::receipts::{FileReport, human_line, json_entry};

/// Arguments of `quorate verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Each receipt is parsed strictly (deterministic CBOR, COSE_Sign1 profile of §4.1), its\n\
signer looked up by key id among the trusted keys, and its signature given exactly\n\
verify_strict's verdict (§6.2), one worker per core; audit logs stream through in bounded\n\
memory, a line per receipt in log order. Exit status 0 only if every receipt verifies.\n\n\
Evidence bundles (*.bundle, §14.7) are recognised and re-checked: signatures, commitments,\n\
and which nodes their own signed outputs prove wrong (--json lists them under \"convicted\"),\n\
under the roster's governance (§10.6: granted policy, minimum quorum, witnesses of the accused's\n\
provider); with --trust keys and no --roster the default governance applies.\n\
Aggregate receipts of private ensembles (§15.5) are audited by replaying their transcript.\n\
Transparency logs (§18): --head checks audit logs against a signed tree head; signed heads\n\
(*.head) and consistency receipts (*.consistency) are verified under their log's key;\n\
equivocation bundles (*.equivocation) convict a log that signed two roots for one size;\n\
inclusion receipts a receipt carries (header 394) are checked against its own leaf.\n\n\
Examples:\n  quorate verify out/receipt.cose --trust keys/node1.key.pub\n  quorate verify receipts/ --trust a.pub --trust b.pub --json\n  quorate verify out/receipt.cose --trust keys/node1.key.pub --tensor probabilities=out/outputs.json\n  quorate verify out/receipts/node-1-eval.cose --roster roster.cose --admin admin.pub --blob fhe:input=out/input.ct\n  quorate verify keep/nodes/node-1/audit.qlog --head keep/nodes/node-1/audit.qlog.head --trust keys/node1.key.pub\n  quorate verify keep/monitor --roster keep/roster.cose --admin keep/admin.pub\n  quorate verify --serve 127.0.0.1:8080"
)]
pub struct VerifyArgs {
    /// Receipt files, receipt chains (*.qchain, §13.2), audit logs, or directories searched for them.
    #[arg(required_unless_present = "serve", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// A trusted public key (.pub file from `quorate keygen`); repeat for several.
    #[arg(long, value_name = "PUBKEY", required_unless_present_any = ["roster", "serve"])]
    pub trust: Vec<PathBuf>,
    /// Trust the nodes of this signed roster (needs --admin).
    #[arg(long, value_name = "FILE", requires = "admin")]
    pub roster: Option<PathBuf>,
    /// The roster authority's public key, to check --roster.
    #[arg(long, value_name = "PUBKEY", requires = "roster")]
    pub admin: Option<PathBuf>,
    /// Check a revealed tensor against its commitment: NAME=FILE (JSON tensor list or .npy).
    #[arg(long, value_name = "NAME=FILE")]
    pub tensor: Vec<String>,
    /// Check receipt chains (*.qchain) against this `stages.json` from `quorate split` (§13.3).
    #[arg(long, value_name = "STAGES_JSON")]
    pub pipeline: Option<PathBuf>,
    /// Check a revealed FHE ciphertext or server key against its commitment (§16.6):
    /// NAME=FILE, e.g. fhe:input=out/input.ct.
    #[arg(long, value_name = "NAME=FILE")]
    pub blob: Vec<String>,
    /// Check the audit logs (*.qlog) given against this signed tree head of their node's
    /// log (§18.8.6): the first `size` records must reproduce its root. Repeat for several.
    #[arg(long, value_name = "HEAD")]
    pub head: Vec<PathBuf>,
    /// Print a JSON report instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Serve the verifier page (built by scripts/build-web) on this loopback IP:PORT instead;
    /// the browser checks the files, nothing is uploaded.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["paths", "trust", "roster", "json"])]
    pub serve: Option<String>,
    /// The folder of the built page, for --serve [default: web/dist of the source tree].
    #[arg(long, value_name = "DIR", requires = "serve")]
    pub web_dir: Option<PathBuf>,
}

fn load_reveal(spec: &str) -> anyhow::Result<RevealedTensor> {
    let (name, file) = spec.split_once('=').context("--tensor takes NAME=FILE")?;
    let bytes = read_limited(std::path::Path::new(file), MAX_FILE_LEN as u64)?;
    let all =
        tensor_file::parse_any(&bytes, name).with_context(|| format!("tensor file {file}"))?;
    all.into_iter()
        .find(|r| r.tensor.name() == name)
        .with_context(|| format!("{file} holds no tensor named {name:?}"))
}

/// Splits equivocation bundles (§18.7), signed tree heads and consistency receipts (§18.3,
/// §18.5) from the other paths: files that are one, and such files under directories.
/// Returns (bundles, documents, the rest).
#[allow(clippy::type_complexity)]
fn split_tlog_files(
    paths: Vec<PathBuf>,
) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>)> {
    let mut found = Vec::new();
    let mut docs = Vec::new();
    let mut rest = Vec::new();
    for p in paths {
        if p.is_dir() {
            crate::verify_files::walk(&p, &[verify_tlog::EQUIVOCATION_EXTENSION], &mut found)
                .with_context(|| format!("cannot list {}", p.display()))?;
            crate::verify_files::walk(&p, &verify_tlog::DOCUMENT_EXTENSIONS, &mut docs)
                .with_context(|| format!("cannot list {}", p.display()))?;
            rest.push(p);
        } else if verify_tlog::is_equivocation_file(&p) {
            found.push(p);
        } else if verify_tlog::is_document_file(&p) {
            docs.push(p);
        } else {
            rest.push(p);
        }
    }
    Ok((found, docs, rest))
}

/// Runs `quorate verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &args.serve {
        let dir = args
            .web_dir
            .clone()
            .unwrap_or_else(crate::commands::verify_serve::default_web_dir);
        return crate::commands::verify_serve::run(addr, &dir);
    }
    let mut trust = TrustStore::default();
    // Aggregate receipts (§15.5) are signed by clients: trust every roster entry for them.
    let mut aggregators = TrustStore::default();
    for p in &args.trust {
        let key = load_public_key(p)?;
        aggregators.add(key, p.display().to_string());
        trust.add(
            key,
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
        );
    }
    if let (Some(roster), Some(admin)) = (&args.roster, &args.admin) {
        let admin = load_public_key(admin)?;
        let bytes = read_limited(roster, quorate_protocol::roster::MAX_ROSTER_LEN as u64)?;
        // An auditor checks old receipts: the roster's signature must hold, its expiry is
        // reported but does not void receipts signed while it was valid.
        let now = match quorate_protocol::roster::Roster::verify(
            &bytes,
            &admin,
            quorate_node::clock::unix_now(),
        ) {
            Err(quorate_protocol::roster::RosterError::Expired { expires_at, .. }) => {
                eprintln!(
                    "note: the roster expired at {expires_at}; checking receipts against it as signed"
                );
                expires_at.saturating_sub(1)
            }
            _ => quorate_node::clock::unix_now(),
        };
        let r = quorate_protocol::roster::Roster::verify(&bytes, &admin, now)
            .with_context(|| format!("roster {}", roster.display()))?;
        // §10.6: evidence convicts only under the governance the roster authority signed.
        trust.set_governance(r.governance.clone());
        for e in &r.entries {
            aggregators.add(e.key, e.name.clone());
        }
        for e in r
            .entries
            .iter()
            .filter(|e| e.role == quorate_protocol::roster::Role::Node)
        {
            trust.add(e.key, e.name.clone());
        }
    }
    let reveals = args
        .tensor
        .iter()
        .map(|s| load_reveal(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // §14.7: evidence bundles are recognised by content type and checked on their own.
    let (bundles, rest) = crate::verify_files::split_paths(&args.paths)?;
    // §18.7: equivocation bundles, given or found under a directory, are judged on their own.
    let (equivocations, documents, rest) = split_tlog_files(rest)?;
    let (chains, files): (Vec<PathBuf>, Vec<PathBuf>) = collect_files(&rest)
        .context("cannot list receipts")?
        .into_iter()
        .partition(|p| crate::verify_files::is_chain_file(p));
    let only_bundles =
        files.is_empty() && chains.is_empty() && equivocations.is_empty() && documents.is_empty();
    if !bundles.is_empty() && only_bundles {
        return crate::commands::verify_bundles::run(&bundles, &trust, args.json);
    }
    let blobs = args
        .blob
        .iter()
        .map(|s| {
            let (name, file) = s.split_once('=').context("--blob takes NAME=FILE")?;
            let bytes = read_limited(
                std::path::Path::new(file),
                quorate_protocol::fhe::MAX_SERVER_KEY_LEN,
            )?;
            Ok(quorate_verify::receipts::RevealedBlob {
                name: name.to_string(),
                digest: quorate_crypto::tensor_digest::sha256(&bytes),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bundle_reports = crate::verify_files::verify_bundles(&bundles, &trust);
    let bundles_ok = bundle_reports.iter().all(|r| r.ok());
    if only_bundles {
        bail!(
            "no receipt files found (directories are searched for *.cose, *.qlog, *.qchain, *.bundle, *.equivocation, *.head and *.consistency)"
        );
    }
    let tlog_lines: Vec<verify_tlog::TlogLine> =
        verify_tlog::check_heads(&args.head, &files, &trust)
            .into_iter()
            .chain(verify_tlog::check_equivocations(&equivocations, &trust))
            .chain(verify_tlog::check_documents(&documents, &trust))
            .collect();
    let tlog_failed = tlog_lines.iter().filter(|l| l.outcome.is_err()).count();
    let pipeline = args
        .pipeline
        .as_ref()
        .map(|p| crate::commands::pipeline::declared_pipeline(p))
        .transpose()?;
    let chain_reports: Vec<_> = chains
        .iter()
        .map(|c| crate::verify_files::verify_chain_file(c, &trust, pipeline.as_ref(), &reveals))
        .collect();
    let chains_failed = chain_reports.iter().filter(|r| r.failure.is_some()).count();
    let (ensembles, files) = crate::verify_files::split_aggregates(files);
    let lookup = |k: &quorate_crypto::KeyId| aggregators.get(k).cloned();
    let ensemble_results: Vec<_> = ensembles
        .iter()
        .map(|p| (p, crate::verify_files::verify_aggregate_file(p, &lookup)))
        .collect();
    let ensembles_failed = ensemble_results.iter().filter(|(_, r)| r.is_err()).count();
    // Receipts stream through (§6.4): each report is printed as soon as its round is done and
    // then dropped, so an audit log of any length is verified in bounded memory.
    let reveals = if chains.is_empty() { &reveals[..] } else { &[] };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut first = true;
    let tally = if args.json {
        write!(out, "{{\n  \"receipts\": [")?;
        let render = |r: FileReport| serde_json::to_string(&json_entry(&r)).unwrap_or_default();
        let tally = verify_streaming(&files, &trust, reveals, &blobs, &render, &mut |entry| {
            let sep = if std::mem::take(&mut first) {
                "\n    "
            } else {
                ",\n    "
            };
            if let Err(e) = write!(out, "{sep}{entry}") {
                write_error.get_or_insert(e);
            }
        });
        write!(out, "{}],", if first { "" } else { "\n  " })?;
        tally
    } else {
        for r in &chain_reports {
            writeln!(out, "{}", quorate_verify::chain::human_line(r))?;
        }
        let render = |r: FileReport| human_line(&r);
        verify_streaming(&files, &trust, reveals, &blobs, &render, &mut |line| {
            if let Err(e) = writeln!(out, "{line}") {
                write_error.get_or_insert(e);
            }
        })
    };
    if let Some(e) = write_error {
        return Err(anyhow::Error::new(e).context("cannot write the report"));
    }
    let receipts_failed = tally.failed;
    let failed = receipts_failed + chains_failed + ensembles_failed + tlog_failed;
    if args.json {
        let mut rest = serde_json::Map::new();
        let mut ok = tally.failed == 0 && tally.total > 0;
        if !ensemble_results.is_empty() {
            rest.insert(
                "aggregates".into(),
                serde_json::json!(
                    ensemble_results
                        .iter()
                        .map(|(p, r)| serde_json::json!({
                            "path": p.display().to_string(), "ok": r.is_ok(),
                            "detail": match r { Ok(s) | Err(s) => s },
                        }))
                        .collect::<Vec<_>>()
                ),
            );
            ok = failed == 0;
        }
        if !chain_reports.is_empty() {
            rest.insert(
                "chains".into(),
                chain_reports
                    .iter()
                    .map(quorate_verify::chain::json_entry)
                    .collect(),
            );
            ok = failed == 0;
        }
        if !tlog_lines.is_empty() {
            rest.insert("transparency_log".into(), verify_tlog::json(&tlog_lines));
            ok = failed == 0;
        }
        if !bundle_reports.is_empty() {
            rest.insert(
                "bundles".into(),
                quorate_verify::bundle::json_report(&bundle_reports, &trust)["bundles"].take(),
            );
            ok = ok && bundles_ok;
        }
        rest.insert("ok".into(), ok.into());
        let rest = serde_json::to_string_pretty(&serde_json::Value::Object(rest))?;
        // The rest of the document after the streamed array: its members without the braces.
        let members = rest
            .trim()
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or_default();
        writeln!(out, "{}}}", members.trim_end())?;
    } else {
        for (p, r) in &ensemble_results {
            match r {
                Ok(line) => writeln!(out, "OK   {}: {line}", p.display())?,
                Err(e) => writeln!(out, "FAIL {}: {e}", p.display())?,
            }
        }
        for line in verify_tlog::human(&tlog_lines) {
            writeln!(out, "{line}")?;
        }
        let total = tally.total + ensemble_results.len();
        writeln!(
            out,
            "{} of {total} receipts verified",
            total - receipts_failed - ensembles_failed
        )?;
        if !tlog_lines.is_empty() {
            writeln!(
                out,
                "{} of {} transparency-log checks held",
                tlog_lines.len() - tlog_failed,
                tlog_lines.len()
            )?;
        }
        if !chain_reports.is_empty() {
            writeln!(
                out,
                "{} of {} receipt chains verified",
                chain_reports.len() - chains_failed,
                chain_reports.len()
            )?;
        }
        for r in &bundle_reports {
            for line in quorate_verify::bundle::human_lines(r, &trust) {
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()?;
    Ok(if failed == 0 && bundles_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
