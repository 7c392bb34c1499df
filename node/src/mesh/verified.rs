//! Verified jobs over the mesh (§14): the same request to R distinct nodes, every answer's
//! receipt checked, outputs compared under the policy, failover for replicas that fail, and
//! an evidence bundle when a replica's signed outputs disagree with the quorum. The decisions
//! are made by the sans-IO [`VerifiedJob`]; this file only does the networking.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quorate_protocol::evidence::{Bundle, BundleEntry, judge};
use quorate_protocol::messages::{InferRequest, InferResponse};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::ReceiptPayload;
use quorate_protocol::roster::Entry;
use quorate_protocol::verified_job::{JobError, Step, Verdict, VerifiedJob};

use crate::mesh::client::MeshClient;

/// One candidate's answer, kept for the output files and the bundle.
pub struct Answer {
    /// The node's response (outputs, salts, receipt).
    pub response: InferResponse,
    /// Its verified receipt payload.
    pub payload: ReceiptPayload,
}

/// A decided verified job.
pub struct Outcome {
    /// The request every replica received (policy digest bound in).
    pub request: InferRequest,
    /// The policy.
    pub policy: Policy,
    /// The quorum.
    pub quorum: usize,
    /// Candidates in the order they were considered.
    pub candidates: Vec<Entry>,
    /// Answers by candidate index.
    pub answers: Vec<Option<Answer>>,
    /// The decision; its `proven_wrong` are those the roster's governance lets the bundle
    /// convict (§14.7 step 5).
    pub verdict: Verdict,
    /// Disagreeing candidates the bundle cannot prove wrong under the governance, with why.
    pub not_proven: Vec<(usize, String)>,
}

/// A verified job that could not be accepted.
#[derive(Debug, thiserror::Error)]
#[error("{error}{}", failures_text(.failures))]
pub struct Failed {
    /// Why.
    pub error: JobError,
    /// Failed replicas: node name and reason.
    pub failures: Vec<(String, String)>,
}

fn failures_text(f: &[(String, String)]) -> String {
    f.iter()
        .map(|(n, r)| format!("\n  {n}: {r}"))
        .collect::<String>()
}

impl Outcome {
    /// The accepted answer: the first member of the agreeing group.
    pub fn accepted(&self) -> Option<&Answer> {
        self.verdict
            .agreeing
            .first()
            .and_then(|&i| self.answers.get(i)?.as_ref())
    }

    /// Node name of candidate `i`.
    pub fn name(&self, i: usize) -> &str {
        self.candidates.get(i).map_or("?", |e| e.name.as_str())
    }

    /// The evidence bundle (§14.6), when some answer disagrees with the accepted group.
    pub fn bundle(&self) -> Option<Bundle> {
        if self.verdict.disagreeing.is_empty() {
            return None;
        }
        let mut entries = Vec::new();
        let mut accused = Vec::new();
        for (i, a) in self.answers.iter().enumerate() {
            let Some(a) = a else { continue };
            if self.verdict.proven_wrong.contains(&i) {
                accused.push(self.candidates[i].key.key_id());
            }
            entries.push(BundleEntry {
                receipt: a.response.receipt.clone(),
                outputs: a.response.outputs.clone(),
                salts: a.response.output_salts.clone(),
            });
        }
        Some(Bundle {
            policy: self.policy,
            quorum: self.quorum as u64,
            entries,
            accused,
        })
    }
}

/// Runs `request` (whose `policy` must be the policy's digest) on `replicas` of `candidates`
/// (preferred first), replacing failed replicas, until the job is decided or fails.
pub async fn run(
    client: &MeshClient,
    request: InferRequest,
    policy: Policy,
    replicas: usize,
    quorum: usize,
    candidates: Vec<Entry>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, Failed> {
    let any = |_: &InferResponse| Ok(());
    run_checked(
        client, request, policy, replicas, quorum, candidates, &any, progress,
    )
    .await
}

/// [`run`], where an answer that passes the receipt checks (§11.4) but not `accept` counts as
/// a failed replica and is replaced (a pipeline stage needs salted outputs to link, §13.3).
#[allow(clippy::too_many_arguments)]
pub async fn run_checked(
    client: &MeshClient,
    request: InferRequest,
    policy: Policy,
    replicas: usize,
    quorum: usize,
    candidates: Vec<Entry>,
    accept: &(dyn Fn(&InferResponse) -> Result<(), String> + Sync),
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, Failed> {
    let fail = |error| Failed {
        error,
        failures: Vec::new(),
    };
    // §10.6: only a policy the roster grants for the model, with a quorum of at least the
    // rule's minimum once results are compared; nothing is sent otherwise.
    let governance = &client.roster.governance;
    governance
        .grant(&request.model, &policy)
        .map_err(|e| fail(JobError::NotAllowed(e)))?;
    if replicas > 1 {
        governance
            .check_quorum(&request.model, quorum as u64)
            .map_err(|e| fail(JobError::NotAllowed(e)))?;
    }
    let (mut job, first) =
        VerifiedJob::new(policy, replicas, quorum, candidates.len()).map_err(fail)?;
    let mut answers: Vec<Option<Answer>> = candidates.iter().map(|_| None).collect();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut running = FuturesUnordered::new();
    let dispatch = |i: usize| {
        let node = candidates[i].clone();
        let req = &request;
        async move { (i, client.infer_patiently(&node, req).await) }
    };
    let mut step = first;
    loop {
        match step {
            Step::Dispatch(list) => {
                for i in list {
                    progress(&format!("dispatch  {}", candidates[i].name));
                    running.push(dispatch(i));
                }
            }
            Step::Decided => break,
            Step::Failed(error) => return Err(Failed { error, failures }),
            Step::Wait => {}
        }
        let Some((i, result)) = running.next().await else {
            // Unreachable by construction: Wait is only returned while replicas are pending.
            return Err(Failed {
                error: JobError::NoQuorum {
                    agreeing: 0,
                    quorum,
                    answered: 0,
                    failed: failures.len(),
                },
                failures,
            });
        };
        let result = result.and_then(|(response, payload)| {
            accept(&response).map_err(anyhow::Error::msg)?;
            Ok((response, payload))
        });
        step = match result {
            Ok((response, payload)) => {
                progress(&format!("answered  {}", candidates[i].name));
                let outputs = response.outputs.clone();
                answers[i] = Some(Answer { response, payload });
                job.on_result(i, outputs)
            }
            Err(e) => {
                let reason = format!("{e:#}");
                progress(&format!(
                    "failed    {}: {reason}; replacing it",
                    candidates[i].name
                ));
                failures.push((candidates[i].name.clone(), reason.clone()));
                job.on_failure(i, reason)
            }
        };
    }
    drop(running);
    let mut verdict = job.verdict().cloned().ok_or_else(|| Failed {
        error: JobError::NoQuorum {
            agreeing: 0,
            quorum,
            answered: 0,
            failed: 0,
        },
        failures: Vec::new(),
    })?;
    // §14.7 step 5: accuse only whom the bundle proves wrong under the roster's governance
    // (granted policy, minimum quorum, witnesses of the accused's provider and runtime).
    let answered: Vec<(usize, &Answer)> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((i, a.as_ref()?)))
        .collect();
    let outputs: Vec<&[_]> = answered
        .iter()
        .map(|(_, a)| a.response.outputs.as_slice())
        .collect();
    let envs: Vec<(&str, &str)> = answered
        .iter()
        .map(|(_, a)| (a.payload.provider.as_str(), a.payload.runtime.as_str()))
        .collect();
    let j = judge(
        governance,
        &request.model,
        &policy,
        quorum as u64,
        &outputs,
        &envs,
    );
    verdict.proven_wrong = j.convicted.iter().map(|&k| answered[k].0).collect();
    let not_proven = answered
        .iter()
        .zip(&j.reasons)
        .filter(|((i, _), _)| verdict.disagreeing.contains(i))
        .filter_map(|((i, _), why)| Some((*i, why.clone()?.1)))
        .collect();
    Ok(Outcome {
        request,
        policy,
        quorum,
        candidates,
        answers,
        verdict,
        not_proven,
    })
}
