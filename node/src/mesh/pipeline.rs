//! Pipeline jobs (§13.2–§13.5): run the stages of a split model on mesh nodes in order, pass
//! activations on, cross-verify stages (replicas or random audits), and collect the receipt
//! chain.
//!
//! Linking rule (§13.3): one job id for the whole pipeline; the client feeds every activation to
//! the next stage with the salt the producing node returned for it, so the next stage's input
//! commitment is byte-identical to the producing stage's output commitment; every stage after
//! the first binds the digest of the previous stage's linked receipt (field 11).

use std::collections::HashMap;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};
use quorate_protocol::chain::{ChainStage, ReceiptChain};
use quorate_protocol::evidence::Bundle;
use quorate_protocol::governance::Governance;
use quorate_protocol::messages::{InferRequest, InferResponse};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{JobKind, ReceiptPayload, receipt_digest};
use quorate_protocol::tensor::Tensor;
use quorate_protocol::verified_job::VerifiedJob;

use crate::mesh::client::MeshClient;
use crate::mesh::verified;
use quorate_split::{Source, Split};

/// Salt of a §3.3 commitment.
pub type Salt = [u8; SALT_LEN];

/// Where a stage input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// A graph input, supplied by the client.
    Input,
    /// An output of the stage with this 1-based index.
    Stage(usize),
}

/// One stage of a plan.
#[derive(Clone, Debug)]
pub struct StagePlan {
    /// 1-based index.
    pub index: usize,
    /// Stage-model digest (§13.1).
    pub digest: Digest32,
    /// Inputs in the stage model's order, with their origin.
    pub inputs: Vec<(String, From)>,
}

/// The stages to run, from a split done in memory or a `stages.json`.
#[derive(Clone, Debug)]
pub struct Plan {
    /// SHA-256 of the whole model.
    pub source: Digest32,
    /// Stages in order.
    pub stages: Vec<StagePlan>,
}

impl Plan {
    /// The plan of a split computed by [`quorate_split::split_model`].
    pub fn from_split(split: &Split) -> Self {
        Self {
            source: split.source_digest,
            stages: split
                .stages
                .iter()
                .map(|s| StagePlan {
                    index: s.index,
                    digest: s.digest,
                    inputs: s
                        .inputs
                        .iter()
                        .map(|(info, src)| {
                            let from = match src {
                                Source::GraphInput => From::Input,
                                Source::Stage(k) => From::Stage(*k),
                            };
                            (info.name.clone(), from)
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The plan in a `stages.json` written by `quorate split` (§13.1).
    pub fn from_stages_json(text: &[u8]) -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        struct Manifest {
            format: String,
            source: SourceJson,
            stages: Vec<StageJson>,
        }
        #[derive(serde::Deserialize)]
        struct SourceJson {
            sha256: String,
        }
        #[derive(serde::Deserialize)]
        struct StageJson {
            index: usize,
            sha256: String,
            inputs: Vec<InputJson>,
        }
        #[derive(serde::Deserialize)]
        struct InputJson {
            name: String,
            from: serde_json::Value,
        }
        let m: Manifest = serde_json::from_slice(text).context("stages.json is malformed")?;
        anyhow::ensure!(
            m.format == quorate_split::STAGES_FORMAT,
            "stages.json has format {:?}, expected {:?}",
            m.format,
            quorate_split::STAGES_FORMAT
        );
        let digest = |h: &str| -> anyhow::Result<Digest32> {
            hex::decode(h)
                .ok()
                .and_then(|d| d.try_into().ok())
                .with_context(|| format!("{h:?} is not a hex SHA-256 digest"))
        };
        let mut stages = Vec::new();
        for (i, s) in m.stages.iter().enumerate() {
            anyhow::ensure!(
                s.index == i + 1,
                "stages.json lists stage {} at position {}",
                s.index,
                i + 1
            );
            let inputs = s
                .inputs
                .iter()
                .map(|inp| {
                    let from = match &inp.from {
                        serde_json::Value::String(t) if t == "input" => From::Input,
                        serde_json::Value::Number(n) => match n.as_u64() {
                            Some(k) if (1..=i as u64).contains(&k) => From::Stage(k as usize),
                            _ => bail!(
                                "stage {}: input {:?} comes from stage {n}, not an earlier one",
                                s.index,
                                inp.name
                            ),
                        },
                        other => {
                            bail!("stage {}: input {:?} has origin {other}", s.index, inp.name)
                        }
                    };
                    Ok((inp.name.clone(), from))
                })
                .collect::<anyhow::Result<_>>()?;
            stages.push(StagePlan {
                index: s.index,
                digest: digest(&s.sha256)?,
                inputs,
            });
        }
        anyhow::ensure!(
            (1..=quorate_protocol::chain::MAX_STAGES).contains(&stages.len()),
            "a pipeline has 1 to {} stages",
            quorate_protocol::chain::MAX_STAGES
        );
        Ok(Self {
            source: digest(&m.source.sha256)?,
            stages,
        })
    }
}

/// How stages are cross-verified (§13.4).
#[derive(Clone, Copy, Debug)]
pub enum CrossCheck {
    /// Every stage on this many distinct nodes (1: no cross-check).
    Replicas(usize),
    /// Every stage on one node, re-run on a second with this probability.
    Audit(f64),
}

/// One node's checked answer for a stage.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The node.
    pub node: String,
    /// Its response (outputs, salts, receipt), already checked under §11.4.
    pub response: InferResponse,
    /// The receipt's payload.
    pub payload: ReceiptPayload,
}

impl Answer {
    fn output_salt(&self, i: usize) -> Option<&Salt> {
        self.response.output_salts.as_ref().and_then(|s| s.get(i))
    }
}

/// A node whose stage output differed from the majority on the same inputs (§13.5).
#[derive(Clone, Debug)]
pub struct Dissent {
    /// 1-based stage.
    pub stage: usize,
    /// The dissenting answer.
    pub answer: Answer,
    /// The nodes of the majority it differs from.
    pub majority: Vec<String>,
    /// The evidence bundle (§14.6) of the stage: every answer, revealed, accusing the
    /// dissenters; `quorate verify` re-checks it offline.
    pub bundle: Bundle,
}

/// The outcome of one stage.
#[derive(Clone, Debug)]
pub struct StageRun {
    /// 1-based index.
    pub index: usize,
    /// The inputs sent (stage model order) and their salts.
    pub inputs: Vec<(Tensor, Salt)>,
    /// The agreeing answers; the first is linked into the chain.
    pub agreeing: Vec<Answer>,
    /// Whether a random audit re-ran this stage.
    pub audited: bool,
    /// Nodes that failed (error, timeout, bad receipt) and were replaced.
    pub failed: Vec<String>,
}

/// A finished pipeline job.
#[derive(Clone, Debug)]
pub struct PipelineRun {
    /// Job id shared by every stage.
    pub job_id: [u8; 16],
    /// Per stage.
    pub stages: Vec<StageRun>,
    /// Nodes caught disagreeing with a majority, localised to their stage.
    pub dissents: Vec<Dissent>,
    /// The chain document (§13.2).
    pub chain: ReceiptChain,
}

impl PipelineRun {
    /// The pipeline's outputs (the last stage's linked outputs) with their salts.
    pub fn outputs(&self) -> Vec<(Tensor, Option<Salt>)> {
        self.stages
            .last()
            .and_then(|s| s.agreeing.first())
            .map(|a| {
                a.response
                    .outputs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), a.output_salt(i).copied()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Random `u64`, for audit coins.
fn coin(p: f64) -> anyhow::Result<bool> {
    if p <= 0.0 {
        return Ok(false);
    }
    if p >= 1.0 {
        return Ok(true);
    }
    let r = u64::from_le_bytes(quorate_crypto::random::bytes::<8>()?);
    Ok((r as f64) < p * (u64::MAX as f64))
}

/// The quorum a stage run on `want` distinct nodes uses: a single replica is its own quorum;
/// more need a strict majority of at least two, so one node never outvotes another.
fn stage_quorum(want: usize) -> usize {
    if want == 1 {
        1
    } else {
        VerifiedJob::majority(want).max(2)
    }
}

/// §10.6: every stage binds `policy`, so the roster must grant it for every stage model; a
/// cross-checked pipeline compares results, so its quorum must reach the rule's minimum.
/// Checked before anything is sent.
pub fn check_governance(
    governance: &Governance,
    plan: &Plan,
    check: CrossCheck,
    policy: &Policy,
) -> anyhow::Result<()> {
    let compared = match check {
        CrossCheck::Replicas(r) if r > 1 => Some(stage_quorum(r)),
        CrossCheck::Replicas(_) => None,
        CrossCheck::Audit(p) if p > 0.0 => Some(stage_quorum(2)),
        CrossCheck::Audit(_) => None,
    };
    for sp in &plan.stages {
        governance
            .grant(&sp.digest, policy)
            .and_then(|_| match compared {
                Some(q) => governance.check_quorum(&sp.digest, q as u64),
                None => Ok(()),
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "pipeline refused before sending: stage {} (sha256:{}): {e}; choose within the roster's governance (§10.6)",
                    sp.index,
                    hex::encode(sp.digest)
                )
            })?;
    }
    Ok(())
}

/// Runs every stage of `plan` in order (§13.3, §13.4). `inputs` are the graph inputs.
/// `progress` receives one line per event.
pub async fn run(
    client: &MeshClient,
    plan: &Plan,
    inputs: &[Tensor],
    check: CrossCheck,
    policy: Policy,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<PipelineRun> {
    check_governance(&client.roster.governance, plan, check, &policy)?;
    let job_id: [u8; 16] = quorate_crypto::random::bytes()?;
    let mut graph_inputs: HashMap<String, (Tensor, Salt)> = HashMap::new();
    for t in inputs {
        graph_inputs.insert(
            t.name().to_string(),
            (t.clone(), quorate_crypto::random::bytes()?),
        );
    }
    // Linked outputs of earlier stages, by tensor name: tensor and the salt its node returned.
    let mut activations: HashMap<String, (Tensor, Salt)> = HashMap::new();
    let mut previous: Option<Digest32> = None;
    let mut stages = Vec::new();
    let mut dissents = Vec::new();
    for sp in &plan.stages {
        let mut stage_inputs = Vec::new();
        for (name, from) in &sp.inputs {
            let (t, s) = match from {
                From::Input => graph_inputs.get(name).with_context(|| {
                    format!(
                        "stage {} needs graph input {name:?}, which the input file lacks",
                        sp.index
                    )
                })?,
                From::Stage(k) => activations.get(name).with_context(|| {
                    format!(
                        "stage {} needs {name:?} from stage {k}, which did not return it",
                        sp.index
                    )
                })?,
            };
            stage_inputs.push((t.clone(), *s));
        }
        let (run, stage_dissents) = run_stage(
            client,
            sp,
            job_id,
            previous,
            stage_inputs,
            check,
            policy,
            plan.stages.len(),
            progress,
        )
        .await?;
        let linked = run
            .agreeing
            .first()
            .context("stage without an accepted answer")?;
        previous = Some(receipt_digest(&linked.response.receipt));
        for (i, t) in linked.response.outputs.iter().enumerate() {
            let salt = linked.output_salt(i).with_context(|| {
                format!("node {} returned no salt for {:?}", linked.node, t.name())
            })?;
            activations.insert(t.name().to_string(), (t.clone(), *salt));
        }
        dissents.extend(stage_dissents);
        stages.push(run);
    }
    let chain = ReceiptChain {
        job_id,
        source: Some(plan.source),
        stages: plan
            .stages
            .iter()
            .zip(&stages)
            .map(|(sp, run)| ChainStage {
                model: sp.digest,
                receipts: run
                    .agreeing
                    .iter()
                    .map(|a| a.response.receipt.clone())
                    .collect(),
            })
            .collect(),
    };
    Ok(PipelineRun {
        job_id,
        stages,
        dissents,
        chain,
    })
}

/// Runs one stage with cross-verification and failover (§13.4) through the same engine as
/// every verified job (§14.4, `VerifiedJob`): dispatch to the wanted number of distinct nodes,
/// replace failed ones, and when answers differ, add nodes one at a time until a quorum agrees
/// under the policy or no node is left. An answer without output salts is a failed replica
/// (the next stage could not link to it).
#[allow(clippy::too_many_arguments)]
async fn run_stage(
    client: &MeshClient,
    sp: &StagePlan,
    job_id: [u8; 16],
    previous: Option<Digest32>,
    inputs: Vec<(Tensor, Salt)>,
    check: CrossCheck,
    policy: Policy,
    n_stages: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(StageRun, Vec<Dissent>)> {
    // One request for every node of the stage: same job, nonce, inputs, salts, policy and
    // previous receipt, so that their receipts differ only in outputs and signer (§13.4) and
    // disagreeing ones form an evidence bundle (§14.6).
    let req = InferRequest {
        job_id,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        kind: JobKind::Stage,
        model: sp.digest,
        inputs: inputs.iter().map(|(t, _)| t.clone()).collect(),
        input_salts: Some(inputs.iter().map(|(_, s)| *s).collect()),
        policy: Some(policy.digest()?),
        previous,
    };
    let (mut nodes, unreachable) = client.candidates(&sp.digest).await;
    for u in &unreachable {
        progress(&format!("stage {}: skipping {u}", sp.index));
    }
    if nodes.is_empty() {
        bail!(
            "no reachable node serves stage {} (sha256:{})",
            sp.index,
            hex::encode(sp.digest)
        );
    }
    // Spread consecutive stages over different nodes when loads are equal.
    let len = nodes.len();
    nodes.rotate_left((sp.index - 1) % len);
    let (want, audited) = match check {
        CrossCheck::Replicas(r) => (r.max(1), false),
        CrossCheck::Audit(p) => {
            let a = coin(p)?;
            (1 + usize::from(a), a)
        }
    };
    if want > nodes.len() {
        bail!(
            "stage {} needs {want} distinct nodes but only {} reachable nodes serve it",
            sp.index,
            nodes.len()
        );
    }
    let quorum = stage_quorum(want);
    let stage_progress = |line: &str| progress(&format!("stage {}/{n_stages}: {line}", sp.index));
    let salted = |r: &InferResponse| {
        if r.output_salts.is_some() {
            Ok(())
        } else {
            Err("the node did not salt its outputs".to_string())
        }
    };
    let outcome = verified::run_checked(
        client,
        req,
        policy,
        want,
        quorum,
        nodes,
        &salted,
        &stage_progress,
    )
    .await
    .map_err(|e| anyhow::anyhow!("stage {}: {e}", sp.index))?;
    let answer = |i: usize| {
        outcome.answers[i].as_ref().map(|a| Answer {
            node: outcome.name(i).to_string(),
            response: a.response.clone(),
            payload: a.payload.clone(),
        })
    };
    let agreeing: Vec<Answer> = outcome
        .verdict
        .agreeing
        .iter()
        .filter_map(|&i| answer(i))
        .collect();
    let majority: Vec<String> = agreeing.iter().map(|a| a.node.clone()).collect();
    let dissents: Vec<Dissent> = match outcome.bundle() {
        None => Vec::new(),
        Some(bundle) => outcome
            .verdict
            .disagreeing
            .iter()
            .filter_map(|&i| answer(i))
            .map(|a| Dissent {
                stage: sp.index,
                answer: a,
                majority: majority.clone(),
                bundle: bundle.clone(),
            })
            .collect(),
    };
    for d in &dissents {
        progress(&format!(
            "stage {}: {} returned an activation that differs from {} on the same input digest: caught",
            sp.index,
            d.answer.node,
            majority.join(" and ")
        ));
    }
    let failed = outcome
        .verdict
        .failed
        .iter()
        .map(|(i, _)| outcome.name(*i).to_string())
        .collect();
    Ok((
        StageRun {
            index: sp.index,
            inputs,
            agreeing,
            audited,
            failed,
        },
        dissents,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mlp_split() -> (Split, Vec<u8>) {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mlp.onnx");
        let bytes = std::fs::read(&model).unwrap();
        let cuts = quorate_split::parse_cuts("h1,h2").unwrap();
        let split = quorate_split::split_model(&bytes, &cuts, &Default::default()).unwrap();
        let json = quorate_split::stages_json_text(&model, &cuts, &split).unwrap();
        (split, json)
    }

    #[test]
    fn stages_json_gives_the_same_plan_as_the_split() {
        let (split, json) = mlp_split();
        let a = Plan::from_split(&split);
        let b = Plan::from_stages_json(&json).unwrap();
        assert_eq!(a.source, b.source);
        assert_eq!(a.stages.len(), 3);
        for (x, y) in a.stages.iter().zip(&b.stages) {
            assert_eq!(
                (x.index, x.digest, &x.inputs),
                (y.index, y.digest, &y.inputs)
            );
        }
        assert_eq!(b.stages[1].inputs, [("h1".to_string(), From::Stage(1))]);
    }

    #[test]
    fn malformed_stages_json_is_refused_with_a_reason() {
        let (_, json) = mlp_split();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let refuse = |f: &dyn Fn(&mut serde_json::Value), why: &str| {
            let mut w = v.clone();
            f(&mut w);
            let e = Plan::from_stages_json(w.to_string().as_bytes()).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{e:#}");
        };
        refuse(&|w| w["format"] = "other/1".into(), "format");
        refuse(
            &|w| w["stages"][1]["inputs"][0]["from"] = 3.into(),
            "not an earlier one",
        );
        refuse(
            &|w| w["stages"][0]["sha256"] = "zz".into(),
            "not a hex SHA-256",
        );
        refuse(&|w| w["stages"][2]["index"] = 7.into(), "position 3");
        refuse(&|w| w["stages"] = serde_json::json!([]), "1 to 16 stages");
        assert!(Plan::from_stages_json(b"{").is_err());
    }
}
