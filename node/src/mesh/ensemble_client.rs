//! The aggregator of a private ensemble (§15.3) over the mesh: the protocol's aggregator
//! machine (`quorate_protocol::ensemble::aggregator`) decides rounds, checks member
//! receipts and builds the aggregate receipt (§15.5); this file sends one mesh request per
//! member per round and signs.

use anyhow::bail;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::ensemble::aggregator::{
    Aggregator, AggregatorError, AggregatorJob, Answer, ToMember, job_params,
};
use quorate_protocol::ensemble::{AggregatePayload, EnsembleParams, Mode};
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;

use crate::clock::unix_now;
use crate::mesh::client::MeshClient;

/// What to run.
pub struct EnsembleSpec {
    /// Contribution mode.
    pub mode: Mode,
    /// Member nodes, in SecAgg index order.
    pub members: Vec<Entry>,
    /// The model each member runs.
    pub models: Vec<Digest32>,
    /// The client's input tensors (one example).
    pub inputs: Vec<Tensor>,
    /// Classes per contribution.
    pub classes: u32,
    /// Shamir threshold (also the fewest contributors accepted).
    pub threshold: u32,
    /// Optional (ε, δ) for distributed DP.
    pub dp: Option<(f64, f64)>,
}

/// What a finished job gives.
pub struct EnsembleOutcome {
    /// The signed aggregate receipt.
    pub receipt: Vec<u8>,
    /// Its payload.
    pub payload: AggregatePayload,
    /// The transcript the receipt commits to.
    pub transcript: Vec<u8>,
    /// `(member name, receipt)` of each contributor.
    pub member_receipts: Vec<(String, Vec<u8>)>,
    /// Decoded result: mean probabilities or vote counts.
    pub result: Vec<f64>,
    /// What happened to each member that did not contribute, and any rejected message.
    pub events: Vec<String>,
    /// ε calibrated for all members and ε achieved with the actual contributors.
    pub epsilon: Option<(f64, f64)>,
}

/// Vector elements (members × classes) above which closing a round is done on the blocking
/// pool. Unmasking grows with the members and the vector: a few members of a few classes
/// take a handful of interpolations and keystream blocks, less than a hand-over to the pool
/// and back; a job of many members or classes would hold an async thread far longer.
const INLINE_CLOSE_MAX_ELEMENTS: usize = 4096;

fn closing_is_heavy(spec: &EnsembleSpec) -> bool {
    spec.members.len() * spec.classes as usize > INLINE_CLOSE_MAX_ELEMENTS
}

/// Runs one ensemble job over the mesh and signs the aggregate receipt with `key`. The
/// decisions are the protocol's aggregator machine (§15.3); this shell draws the job's
/// randomness, moves its messages, and signs.
pub async fn run(
    client: &MeshClient,
    key: &SecretKey,
    spec: &EnsembleSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<EnsembleOutcome> {
    let params = params_of(key, spec)?;
    let input_salts = salts_for(&spec.inputs)?;
    let (job_id, nonce) = fresh_ids()?;
    let job = AggregatorJob {
        params,
        job_id,
        nonce,
        inputs: spec.inputs.clone(),
        input_salts,
    };
    let (machine, sends) = Aggregator::new(job, 0)?;
    let machine = drive(client, spec, machine, sends, progress).await?;
    finish(machine, key, spec)
}

/// A job whose rounds 0 and 1 ran before its input (§15.1): [`run_prepared`] gives it the
/// input. Its members hold it for at most two minutes (§15.3).
pub struct Prepared {
    machine: Aggregator,
}

impl Prepared {
    /// The job's id, as its members and receipts know it.
    pub fn job_id(&self) -> [u8; 16] {
        self.machine.job_id()
    }
}

/// Runs rounds 0 and 1 of a job before its input exists (§15.1): key advertisement and
/// secret sharing, which never read the input. `spec.inputs` is not used.
pub async fn prepare(
    client: &MeshClient,
    key: &SecretKey,
    spec: &EnsembleSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Prepared> {
    let (job_id, nonce) = fresh_ids()?;
    let (machine, sends) = Aggregator::new_prepared(params_of(key, spec)?, job_id, nonce, 0)?;
    let machine = drive(client, spec, machine, sends, progress).await?;
    if !machine.awaits_input() {
        let events = member_events(&machine, spec);
        bail!("the job ended before its input: {}", events.join("; "));
    }
    Ok(Prepared { machine })
}

/// Gives a prepared job the client's input (`spec.inputs`, each under a fresh salt) and runs
/// its rounds 2 to 4, then signs the aggregate receipt with `key`.
pub async fn run_prepared(
    client: &MeshClient,
    key: &SecretKey,
    spec: &EnsembleSpec,
    prepared: Prepared,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<EnsembleOutcome> {
    let mut machine = prepared.machine;
    let sends = machine.provide_input(spec.inputs.clone(), salts_for(&spec.inputs)?)?;
    let machine = drive(client, spec, machine, sends, progress).await?;
    finish(machine, key, spec)
}

/// The parameters of a new job of `spec` aggregated by `key` (§15.2), under a fresh SecAgg
/// session id.
fn params_of(key: &SecretKey, spec: &EnsembleSpec) -> anyhow::Result<EnsembleParams> {
    job_params(
        spec.mode,
        quorate_crypto::random::bytes()?,
        key.public_key(),
        spec.members.iter().map(|e| e.key).collect(),
        spec.models.clone(),
        spec.classes,
        spec.threshold,
        spec.dp,
    )
    .map_err(anyhow::Error::msg)
}

/// Gives up a prepared job without its input: sends its members the abort notices that free
/// their state (§15.3) rather than leave it held until it expires. The answers are not read.
pub async fn abandon(client: &MeshClient, spec: &EnsembleSpec, prepared: Prepared) {
    let notices = prepared.machine.abandon();
    let sends = notices.into_iter().filter_map(|s| match s.message {
        ToMember::Round(r) => Some(async move {
            let notice = Request::EnsembleRound(r);
            let _ = client.request(&spec.members[s.to as usize], &notice).await;
        }),
        _ => None,
    });
    futures_util::future::join_all(sends).await;
}

/// A fresh job id and nonce.
fn fresh_ids() -> anyhow::Result<([u8; 16], Vec<u8>)> {
    Ok((
        quorate_crypto::random::bytes()?,
        quorate_crypto::random::bytes::<32>()?.to_vec(),
    ))
}

/// §15.4: one fresh salt per input, the same for every member.
fn salts_for(inputs: &[Tensor]) -> anyhow::Result<Vec<[u8; 32]>> {
    Ok(inputs
        .iter()
        .map(|_| quorate_crypto::random::bytes())
        .collect::<Result<Vec<_>, _>>()?)
}

/// Sends each round's requests and feeds the answers to `machine` until the job is finished
/// or, prepared, waits for its input.
async fn drive(
    client: &MeshClient,
    spec: &EnsembleSpec,
    mut machine: Aggregator,
    mut sends: Vec<quorate_protocol::ensemble::aggregator::Send>,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Aggregator> {
    while !machine.is_finished() && !machine.awaits_input() {
        progress(&format!(
            "round {}: {} request{}",
            machine.round(),
            sends.len(),
            if sends.len() == 1 { "" } else { "s" }
        ));
        // Each answer is checked as it arrives (§15.5: the transcript is in acceptance
        // order), so verifying one member's envelope overlaps with waiting for the others.
        let mut answers: FuturesUnordered<_> = sends
            .into_iter()
            .map(|s| async move {
                let request = match s.message {
                    ToMember::Start(r) => Request::EnsembleStart(*r),
                    ToMember::Round(r) => Request::EnsembleRound(r),
                    ToMember::Input(r) => Request::EnsembleInput(*r),
                };
                let answer = match client.request(&spec.members[s.to as usize], &request).await {
                    Ok(Response::Ensemble(r)) => Answer::Reply(r),
                    Ok(Response::Error(e)) => Answer::Refused(e),
                    Ok(_) => Answer::Unexpected,
                    Err(e) => Answer::Failed(format!("{e:#}")),
                };
                (s.to, answer)
            })
            .collect();
        while let Some((i, answer)) = answers.next().await {
            machine.handle_answer(i, answer);
        }
        // Closing the last round reconstructs the secrets (Shamir) and, for a member lost
        // after sharing its keys, regenerates its masks by key agreement: a large job, and
        // any close that agrees keys, is kept off the async threads, which carry every
        // connection's I/O; a small job's interpolations cost less than the hand-over.
        if closing_is_heavy(spec) || machine.closing_agrees_keys() {
            (machine, sends) = tokio::task::spawn_blocking(move || {
                let sends = machine.close_round();
                (machine, sends)
            })
            .await?;
        } else {
            sends = machine.close_round();
        }
    }
    Ok(machine)
}

/// The machine's member events, each under its member's name.
fn member_events(machine: &Aggregator, spec: &EnsembleSpec) -> Vec<String> {
    machine
        .events()
        .iter()
        .map(|(i, e)| format!("{}: {e}", spec.members[*i as usize].name))
        .collect()
}

/// The outcome of a finished job, its aggregate receipt signed with `key`.
fn finish(
    machine: Aggregator,
    key: &SecretKey,
    spec: &EnsembleSpec,
) -> anyhow::Result<EnsembleOutcome> {
    let events = member_events(&machine, spec);
    let done = match machine.finish(unix_now()) {
        Ok(done) => done,
        Err(e @ AggregatorError::Aborted { .. }) => {
            bail!("{e}; member events: {}", events.join("; "))
        }
        Err(e) => bail!("{e}"),
    };
    let receipt = done.payload.sign(key)?;
    Ok(EnsembleOutcome {
        result: done.result,
        receipt,
        payload: done.payload,
        transcript: done.transcript,
        member_receipts: done
            .member_receipts
            .into_iter()
            .map(|(i, r)| (spec.members[i as usize].name.clone(), r))
            .collect(),
        events,
        epsilon: done.epsilon,
    })
}
