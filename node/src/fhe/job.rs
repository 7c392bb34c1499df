//! One encrypted ensemble job (§16): upload the server key to each member, encrypt once,
//! have each member score the ciphertext with its qlinear model, have the aggregator add the
//! encrypted scores, and decrypt only the sum. Used by `quorate fhe infer` and the demo.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::roster::Entry;

use super::client::{self, ClientKeys};
use crate::files::write_atomic;
use crate::mesh::client::MeshClient;
use quorate_fhe::qlinear::QLinear;

/// A qlinear model the client knows, by file.
pub struct KnownModel {
    /// File name (e.g. `qlinear-1.json`).
    pub file: String,
    /// SHA-256 of the file.
    pub digest: Digest32,
    /// The parsed model.
    pub model: QLinear,
}

/// Every `qlinear-*.json` (any valid qlinear `*.json`) in `dir`.
pub fn known_models(dir: &Path) -> anyhow::Result<Vec<KnownModel>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let Ok(bytes) = crate::files::read_limited(&p, quorate_fhe::qlinear::MAX_MODEL_LEN) else {
            continue;
        };
        if let Ok(model) = QLinear::parse(&bytes) {
            out.push(KnownModel {
                file: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                digest: sha256(&bytes),
                model,
            });
        }
    }
    Ok(out)
}

/// What one member did.
pub struct MemberResult {
    /// Node name.
    pub node: String,
    /// Model file it evaluated.
    pub model: String,
    /// Its signed receipt.
    pub receipt: Vec<u8>,
    /// The encrypted score.
    pub score: Vec<u8>,
    /// Seconds from request to verified answer.
    pub seconds: f64,
}

/// The outcome of a job.
pub struct JobResult {
    /// The input ciphertext sent to every member.
    pub input: Vec<u8>,
    /// Members in order.
    pub members: Vec<MemberResult>,
    /// The aggregator's name, receipt and encrypted sum.
    pub aggregator: (String, Vec<u8>, Vec<u8>),
    /// The decrypted sum.
    pub sum: i64,
    /// The plaintext the client expected from its own copy of the models, when it has them.
    pub expected: Option<i64>,
}

/// Runs a job; `say` reports progress lines.
pub async fn run(
    mesh: &MeshClient,
    keys: &ClientKeys,
    members: &[Entry],
    aggregator: &Entry,
    known: &[KnownModel],
    raw: &[f64],
    say: &mut dyn FnMut(String),
) -> anyhow::Result<JobResult> {
    ensure!(!members.is_empty(), "at least one member is needed");
    // The model each member serves, from its signed roster entry.
    let mut picked = Vec::new();
    for m in members {
        let Some(k) = known.iter().find(|k| m.models.contains(&k.digest)) else {
            bail!(
                "the roster lists no qlinear model known here for member {:?}",
                m.name
            );
        };
        picked.push(k);
    }
    ensure!(
        picked.iter().all(|k| k.model.same_inputs(&picked[0].model)),
        "the members' models quantize their inputs differently; one ciphertext cannot serve them all"
    );
    let q = picked[0].model.quantize(raw)?;
    let input = keys.encrypt(&q)?;
    say(format!(
        "encrypted 8 features × 4 planes ({} bytes, compact list)",
        input.len()
    ));
    let mut uploaded: Vec<&str> = Vec::new();
    for node in members.iter().chain(std::iter::once(aggregator)) {
        if uploaded.contains(&node.name.as_str()) {
            continue;
        }
        let start = Instant::now();
        let mut last = 0;
        client::upload_key(mesh, node, keys, &mut |got, total| {
            let pct = got * 100 / total.max(1);
            if pct >= last + 25 || got == total {
                last = pct;
                eprint!("\r  server key → {}: {pct}%   ", node.name);
            }
        })
        .await?;
        eprintln!();
        say(format!(
            "server key sha256:{}… ready on {} ({:.1} s)",
            &hex::encode(keys.server_digest)[..16],
            node.name,
            start.elapsed().as_secs_f64()
        ));
        uploaded.push(&node.name);
    }
    let jobs = members.iter().zip(&picked).map(|(node, k)| {
        let input = input.clone();
        async move {
            let start = Instant::now();
            let (score, receipt, _) = client::eval(mesh, node, k.digest, keys, input).await?;
            anyhow::Ok(MemberResult {
                node: node.name.clone(),
                model: k.file.clone(),
                receipt,
                score,
                seconds: start.elapsed().as_secs_f64(),
            })
        }
    });
    let results: Vec<MemberResult> = futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    for r in &results {
        say(format!(
            "{} scored {} on ciphertexts in {:.1} s (receipt verified)",
            r.node, r.model, r.seconds
        ));
    }
    let start = Instant::now();
    let (sum_ct, agg_receipt, _) = client::aggregate(
        mesh,
        aggregator,
        keys,
        results.iter().map(|r| r.score.clone()).collect(),
    )
    .await?;
    say(format!(
        "{} added the {} encrypted scores in {:.1} s (receipt verified)",
        aggregator.name,
        results.len(),
        start.elapsed().as_secs_f64()
    ));
    let sum = keys.decrypt_sum(&sum_ct, results.len())?;
    let expected = Some(picked.iter().map(|k| k.model.score(&q)).sum());
    Ok(JobResult {
        input,
        members: results,
        aggregator: (aggregator.name.clone(), agg_receipt, sum_ct),
        sum,
        expected,
    })
}

/// Writes a job's evidence to `out`: ciphertexts, receipts and `result.json`.
pub fn write(out: &Path, r: &JobResult) -> anyhow::Result<()> {
    let receipts = out.join("receipts");
    std::fs::create_dir_all(&receipts)
        .with_context(|| format!("cannot create {}", receipts.display()))?;
    write_atomic(&out.join("input.ct"), &r.input, 0o644)?;
    for m in &r.members {
        write_atomic(&out.join(format!("score-{}.ct", m.node)), &m.score, 0o644)?;
        write_atomic(
            &receipts.join(format!("{}-eval.cose", m.node)),
            &m.receipt,
            0o644,
        )?;
    }
    let (agg, receipt, sum_ct) = &r.aggregator;
    write_atomic(&out.join("sum.ct"), sum_ct, 0o644)?;
    write_atomic(&receipts.join(format!("{agg}-sum.cose")), receipt, 0o644)?;
    let doc = serde_json::json!({
        "sum": r.sum,
        "class": if r.sum > 0 { "benign" } else { "malignant" },
        "members": r.members.iter().map(|m| serde_json::json!({
            "node": m.node, "model": m.model, "seconds": m.seconds,
        })).collect::<Vec<_>>(),
        "aggregator": agg,
    });
    write_atomic(
        &out.join("result.json"),
        serde_json::to_vec_pretty(&doc)?.as_slice(),
        0o644,
    )
}
