//! The aggregator of a private ensemble (§15.3): drives the SecAgg server state machine,
//! one mesh request per member per round, records the transcript, checks each member
//! receipt, and signs the aggregate receipt (§15.5).

use std::sync::Arc;

use anyhow::{Context, bail};
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::ensemble::{
    AggregatePayload, EnsembleParams, EnsembleReply, EnsembleRound, EnsembleStart,
    MASKED_INPUT_NAME, Mode, ROUND_ABORT, TranscriptEntry, encode_transcript, masked_tensor,
    receipt_digest, transcript_digest,
};
use quorate_protocol::ensemble_dp;
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::receipt::{self, Commitment, JobKind};
use quorate_protocol::roster::Entry;
use quorate_protocol::secagg::messages::{ClientBody, Limits, decode_client_message};
use quorate_protocol::secagg::{Outcome, Server};
use quorate_protocol::tensor::Tensor;

use crate::clock::unix_now;
use crate::mesh::client::MeshClient;

/// Virtual per-round timeout of the aggregator's state machine. Rounds are closed
/// explicitly once every member answered or failed; real waiting is bounded by the mesh
/// client's request timeout.
const ROUND_MS: u64 = 1_000;

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

/// Checks a member receipt against the envelope it accompanies (§15.4).
fn check_member_receipt(
    bytes: &[u8],
    member: &Entry,
    start: &EnsembleStart,
    envelope: &[u8],
    limits: &Limits,
) -> anyhow::Result<()> {
    let r = receipt::parse(bytes)?;
    r.sign1
        .verify(&member.key)
        .context("member receipt signature")?;
    let p = r.payload;
    let ok = p.kind == JobKind::EnsembleMember
        && p.job_id == start.job_id
        && p.nonce == start.nonce
        && p.model_digest == start.model
        && p.policy == Some(start.params.digest())
        && p.inputs
            == start
                .inputs
                .iter()
                .zip(&start.input_salts)
                .map(|(t, salt)| Commitment::to(t, Some(salt)))
                .collect::<Vec<_>>();
    if !ok {
        bail!("member receipt does not match the job");
    }
    let m = decode_client_message(envelope, limits)?;
    let ClientBody::MaskedInput { packed } = m.body else {
        bail!("round 2 reply is not a masked input");
    };
    let t = masked_tensor(packed).map_err(|e| anyhow::anyhow!(e.0))?;
    match p.outputs.as_slice() {
        [c] if c.name == MASKED_INPUT_NAME && c.matches(&t, None) => Ok(()),
        _ => bail!("member receipt does not commit to the masked input sent"),
    }
}

/// Runs one ensemble job over the mesh and signs the aggregate receipt with `key`.
pub async fn run(
    client: &MeshClient,
    key: &SecretKey,
    spec: &EnsembleSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<EnsembleOutcome> {
    let n = spec.members.len();
    let noise = match spec.dp {
        None => None,
        Some((eps, delta)) => Some(
            ensemble_dp::calibrate(
                eps,
                delta,
                spec.mode,
                if spec.mode == Mode::Mean { 16 } else { 0 },
                spec.classes,
                n,
            )
            .map_err(anyhow::Error::msg)?,
        ),
    };
    let params = EnsembleParams::new(
        spec.mode,
        quorate_crypto::random::bytes()?,
        key.public_key(),
        spec.members.iter().map(|e| e.key).collect(),
        spec.models.clone(),
        spec.classes,
        spec.threshold,
        noise,
    )
    .map_err(|e| anyhow::anyhow!("ensemble parameters: {}", e.0))?;
    let job_id: [u8; 16] = quorate_crypto::random::bytes()?;
    let nonce = quorate_crypto::random::bytes::<32>()?.to_vec();
    let cfg = Arc::new(params.round_config());
    let limits = Limits::of(&cfg);
    let mut server = Server::new(cfg, 0, ROUND_MS, 0)?;
    let mut now = 0u64;
    let mut transcript: Vec<TranscriptEntry> = Vec::new();
    let mut member_receipts: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut events = Vec::new();
    // §15.4: one salt per input, the same for every member, so member receipts and the
    // aggregate receipt commit to the input under the same salted commitment.
    let input_salts = spec
        .inputs
        .iter()
        .map(|_| quorate_crypto::random::bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let starts: Vec<EnsembleStart> = (0..n)
        .map(|i| EnsembleStart {
            input_salts: input_salts.clone(),
            job_id,
            nonce: nonce.clone(),
            model: spec.models[i],
            inputs: spec.inputs.clone(),
            params: params.clone(),
            index: i as u32,
        })
        .collect();

    // Round 0: the start request carries the input; each reply is a round-0 envelope.
    let mut requests: Vec<(u32, Request)> = starts
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, Request::EnsembleStart(s.clone())))
        .collect();
    let mut round = 0u8;
    loop {
        progress(&format!(
            "round {round}: {} request{}",
            requests.len(),
            if requests.len() == 1 { "" } else { "s" }
        ));
        let answers = futures_util::future::join_all(requests.iter().map(|(i, r)| async move {
            (*i, client.request(&spec.members[*i as usize], r).await)
        }))
        .await;
        if round == ROUND_ABORT {
            break;
        }
        for (i, answer) in answers {
            let name = &spec.members[i as usize].name;
            let reply: EnsembleReply = match answer {
                Ok(Response::Ensemble(r)) if r.job_id == job_id && r.round == round => r,
                Ok(Response::Ensemble(_)) => {
                    events.push(format!(
                        "{name}: answered for another job or round (ignored)"
                    ));
                    continue;
                }
                Ok(Response::Error(e)) => {
                    events.push(format!("{name}: dropped in round {round}: {e}"));
                    continue;
                }
                Ok(_) => {
                    events.push(format!("{name}: unexpected answer in round {round}"));
                    continue;
                }
                Err(e) => {
                    events.push(format!("{name}: dropped in round {round}: {e:#}"));
                    continue;
                }
            };
            if round == 2 {
                let checked = match &reply.receipt {
                    None => Err(anyhow::anyhow!("no member receipt")),
                    Some(r) => check_member_receipt(
                        r,
                        &spec.members[i as usize],
                        &starts[i as usize],
                        &reply.message,
                        &limits,
                    ),
                };
                if let Err(e) = checked {
                    events.push(format!("{name}: masked input refused in round 2: {e:#}"));
                    continue;
                }
            }
            match server.handle_message(&reply.message, now) {
                Ok(()) => {
                    transcript.push(TranscriptEntry {
                        member: i,
                        round,
                        envelope: reply.message,
                    });
                    if let (2, Some(r)) = (round, reply.receipt) {
                        member_receipts.push((i, r));
                    }
                }
                Err(e) => events.push(format!("{name}: message refused in round {round}: {e}")),
            }
        }
        // Every member answered or failed: close the round now.
        if server.outcome().is_none() && server.round() as u8 == round {
            now = server.poll_timeout().unwrap_or(now).max(now);
            server.handle_timeout(now);
        }
        let out = server.poll_transmit();
        round = match server.outcome() {
            Some(Outcome::Aborted { .. }) => ROUND_ABORT,
            Some(Outcome::Sum(_)) => break,
            None => server.round() as u8,
        };
        requests = out
            .into_iter()
            .map(|o| {
                (
                    o.to,
                    Request::EnsembleRound(EnsembleRound {
                        job_id,
                        round,
                        message: o.bytes,
                    }),
                )
            })
            .collect();
        if requests.is_empty() && round == ROUND_ABORT {
            break;
        }
    }
    let aggregate = match server.outcome() {
        Some(Outcome::Sum(a)) => a.clone(),
        Some(Outcome::Aborted { round, reason }) => {
            bail!(
                "the ensemble aborted in SecAgg round {round:?}: {reason}; member events: {}",
                events.join("; ")
            )
        }
        None => bail!("the ensemble ended without an outcome"),
    };
    let transcript_bytes = encode_transcript(&transcript).map_err(|e| anyhow::anyhow!(e.0))?;
    member_receipts.retain(|(i, _)| aggregate.contributors.contains(i));
    let epsilon = noise.map(|nz| {
        let (s, c) = (params.scale_bits, params.classes);
        (
            ensemble_dp::achieved_epsilon(&nz, spec.mode, s, c, n),
            ensemble_dp::achieved_epsilon(&nz, spec.mode, s, c, aggregate.contributors.len()),
        )
    });
    let payload = AggregatePayload {
        job_id,
        nonce,
        params: params.clone(),
        models: spec.models.clone(),
        inputs: spec
            .inputs
            .iter()
            .zip(&input_salts)
            .map(|(t, salt)| Commitment::to(t, Some(salt)))
            .collect(),
        contributors: aggregate.contributors.clone(),
        dropped: aggregate.dropped.clone(),
        sum: aggregate.sum.clone(),
        transcript: transcript_digest(&transcript_bytes),
        member_receipts: member_receipts
            .iter()
            .map(|(i, r)| (*i, receipt_digest(r)))
            .collect(),
        issued_at: unix_now(),
        epsilon_achieved_micro: epsilon.map(|(_, e)| (e * 1e6).ceil() as u64),
    };
    let receipt = payload.sign(key)?;
    Ok(EnsembleOutcome {
        result: params.decode_sum(&aggregate.sum, aggregate.contributors.len()),
        receipt,
        payload,
        transcript: transcript_bytes,
        member_receipts: member_receipts
            .into_iter()
            .map(|(i, r)| (spec.members[i as usize].name.clone(), r))
            .collect(),
        events,
        epsilon,
    })
}
