//! `quorate infer --replicas R`: a verified job (§14) and its output files.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use quorate_protocol::messages::InferRequest;
use quorate_protocol::policy::Policy;
use quorate_protocol::tensor_file::salted_tensors_json;
use quorate_protocol::verified_job::VerifiedJob;
use serde_json::json;

use quorate_node::files::write_atomic;
use quorate_node::mesh::verified::{self, Outcome};

use super::session::Session;

/// The options of a verified job (§14), flattened into `quorate infer`.
#[derive(clap::Args)]
pub struct ReplicaArgs {
    /// Verified job (§14): run on this many distinct nodes and compare their outputs.
    #[arg(long, value_name = "R", conflicts_with = "node")]
    pub replicas: Option<usize>,
    /// Comparison policy of a verified job: exact, default, or tolerance:atol=A,rtol=B.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "default",
        requires = "replicas"
    )]
    pub policy: String,
    /// Agreeing replicas required to accept (default: a strict majority of R).
    #[arg(long, value_name = "Q", requires = "replicas")]
    pub quorum: Option<usize>,
}

/// Runs the verified job and writes OUT/{outputs.json, inputs.json, receipt.cose,
/// receipts/NODE.cose, verdict.json} and, on disagreement, OUT/evidence/JOB.bundle.
pub fn run(
    args: &ReplicaArgs,
    replicas: usize,
    timeout: Duration,
    out: &Path,
    session: &Session,
    mut req: InferRequest,
) -> anyhow::Result<ExitCode> {
    let policy = Policy::parse(&args.policy)?;
    req.policy = Some(policy.digest()?);
    let quorum = args.quorum.unwrap_or(VerifiedJob::majority(replicas));
    // §10.6: the roster authority decides which policies and quorums may accept a result or
    // convict a node; refuse before anything is sent.
    let governance = &session.roster.governance;
    governance
        .grant(&req.model, &policy)
        .and_then(|_| governance.check_quorum(&req.model, quorum as u64))
        .map_err(|e| {
            anyhow::anyhow!(
                "verified job refused before sending: {e}; choose within the roster's governance (§10.6)"
            )
        })?;
    let outcome = session.rt.block_on(async {
        let client = session.client(timeout)?;
        let (candidates, unreachable) = client.candidates(&req.model).await;
        for u in &unreachable {
            eprintln!("skipping  {u}");
        }
        let progress = |line: &str| eprintln!("{line}");
        let outcome = verified::run(
            &client, req, policy, replicas, quorum, candidates, &progress,
        )
        .await;
        client.close();
        outcome.context("verified job not accepted")
    })?;
    let paths = write_outcome(&outcome, out, &out.join("evidence"))?;
    print_summary(&outcome, &paths);
    Ok(ExitCode::SUCCESS)
}

/// Files written for a verified job.
pub struct Written {
    /// verdict.json.
    pub verdict: std::path::PathBuf,
    /// The evidence bundle, if any.
    pub bundle: Option<std::path::PathBuf>,
}

/// Writes the accepted outputs, every receipt, the verdict and (on disagreement) the bundle,
/// the bundle into `evidence` as `JOB.bundle`.
pub fn write_outcome(o: &Outcome, out: &Path, evidence: &Path) -> anyhow::Result<Written> {
    let Some(accepted) = o.accepted() else {
        bail!("the verdict has no agreeing replica");
    };
    let receipts = out.join("receipts");
    std::fs::create_dir_all(&receipts)
        .with_context(|| format!("cannot create {}", receipts.display()))?;
    let outputs = salted_tensors_json(
        &accepted.response.outputs,
        accepted.response.output_salts.as_deref(),
    );
    write_atomic(
        &out.join("outputs.json"),
        &serde_json::to_vec_pretty(&outputs)?,
        0o644,
    )?;
    let inputs = salted_tensors_json(&o.request.inputs, o.request.input_salts.as_deref());
    write_atomic(
        &out.join("inputs.json"),
        &serde_json::to_vec_pretty(&inputs)?,
        0o600,
    )?;
    write_atomic(&out.join("receipt.cose"), &accepted.response.receipt, 0o644)?;
    for (i, a) in o.answers.iter().enumerate() {
        if let Some(a) = a {
            write_atomic(
                &receipts.join(format!("{}.cose", o.name(i))),
                &a.response.receipt,
                0o644,
            )?;
        }
    }
    let job = hex::encode(o.request.job_id);
    let bundle = match o.bundle() {
        None => None,
        Some(b) => {
            let dir = evidence;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(format!("{job}.bundle"));
            write_atomic(&path, &b.encode()?, 0o644)?;
            Some(path)
        }
    };
    let v = &o.verdict;
    let names = |list: &[usize]| list.iter().map(|&i| o.name(i)).collect::<Vec<_>>();
    let node = |i: usize| {
        json!({
            "name": o.name(i),
            "kid": o.candidates[i].key.key_id().to_string(),
        })
    };
    let doc = json!({
        "job_id": job,
        "model": hex::encode(o.request.model),
        "policy": o.policy.describe(),
        "policy_digest": o.request.policy.map(hex::encode),
        "replicas": o.answers.iter().filter(|a| a.is_some()).count(),
        "quorum": o.quorum,
        "accepted": true,
        "accepted_from": o.name(v.agreeing[0]),
        "agreeing": names(&v.agreeing),
        "disagreeing": names(&v.disagreeing),
        "proven_wrong": v.proven_wrong.iter().map(|&i| node(i)).collect::<Vec<_>>(),
        "not_proven": o.not_proven.iter().map(|(i, why)| {
            let mut n = node(*i);
            n["reason"] = json!(why);
            n
        }).collect::<Vec<_>>(),
        "failed": v.failed.iter().map(|(i, r)| json!({"name": o.name(*i), "reason": r})).collect::<Vec<_>>(),
        "bit_identical": bit_identical(o),
        "evidence": bundle.as_ref().map(|p| p.display().to_string()),
    });
    let verdict = out.join("verdict.json");
    write_atomic(&verdict, &serde_json::to_vec_pretty(&doc)?, 0o644)?;
    Ok(Written { verdict, bundle })
}

/// Whether the agreeing replicas returned bit-identical outputs (§14.3: expected when they
/// share execution provider and runtime version).
fn bit_identical(o: &Outcome) -> bool {
    let outs: Vec<_> = o
        .verdict
        .agreeing
        .iter()
        .filter_map(|&i| o.answers.get(i)?.as_ref())
        .map(|a| &a.response.outputs)
        .collect();
    outs.windows(2).all(|w| w[0] == w[1])
}

fn print_summary(o: &Outcome, w: &Written) {
    let v = &o.verdict;
    let agreeing: Vec<&str> = v.agreeing.iter().map(|&i| o.name(i)).collect();
    println!(
        "verified  {} of {} replicas agree under policy {} (quorum {}): {}",
        v.agreeing.len(),
        v.agreeing.len() + v.disagreeing.len(),
        o.policy.describe(),
        o.quorum,
        agreeing.join(", ")
    );
    if let Some(a) = o.accepted() {
        for t in &a.response.outputs {
            let vals: Vec<String> = t
                .to_f64_vec()
                .iter()
                .take(8)
                .map(|x| format!("{x:.6}"))
                .collect();
            println!("output    {} = [{}]", t.name(), vals.join(", "));
        }
    }
    for (i, reason) in &v.failed {
        println!("failed    {} (replaced): {reason}", o.name(*i));
    }
    for &i in &v.disagreeing {
        let proven = v.proven_wrong.contains(&i);
        println!(
            "CAUGHT    {} [{}]: signed outputs disagree with the agreeing replicas{}",
            o.name(i),
            o.candidates[i].key.key_id(),
            if proven {
                " (proven by its own signature)".to_string()
            } else {
                o.not_proven
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or_else(String::new, |(_, why)| format!(" (not provable: {why})"))
            }
        );
    }
    if let Some(b) = &w.bundle {
        println!("evidence  {}", b.display());
    }
    println!("wrote     {}", w.verdict.display());
}
