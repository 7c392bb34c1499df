//! A member's side of a private ensemble as a sans-IO state machine (§15.3, §15.4).
//!
//! One [`MemberJob`] per job: it is created from a start request that passed the member
//! rules (`crate::ensemble_rules`, §15.2, §17) and the member's encoded contribution
//! ([`contribution`]), answers round 0, then takes the aggregator's round messages in
//! order, answering only the peer that started the job, and builds the member receipt of
//! round 2. The node keeps the jobs (bounded in count and age), runs the model, passes the
//! time in, signs receipts and logs them.

use std::sync::Arc;

use quorate_crypto::secagg::rng::SecretRng;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{PublicKey, SecretKey};

use super::messages::{EnsembleInput, EnsembleReply, EnsembleRound, EnsembleStart, masked_tensor};
use super::params::{EnsembleParams, Mode};
use super::{ROUND_ABORT, salted_commitments};
use crate::messages::common::{ErrorCode, ErrorFrame};
use crate::receipt::{Commitment, JobKind, ReceiptPayload};
use crate::secagg::encoding::{FixedPoint, encode_vote};
use crate::secagg::messages::{
    ClientBody, Limits, ServerBody, decode_client_message, decode_server_message,
};
use crate::secagg::{Client, ClientError};
use crate::{ensemble_dp, ensemble_rules};

fn err(code: ErrorCode, m: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, m)
}

/// Encodes a member's model output as its SecAgg input (§15.2): the probability vector in
/// fixed point at the job's scale (mean mode) or a one-hot vote for its arg-max (votes
/// mode), plus the job's DP noise (§15.6) drawn from `rng`.
pub fn contribution(
    params: &EnsembleParams,
    probs: &[f32],
    rng: &mut dyn SecretRng,
) -> Result<Vec<u64>, ErrorFrame> {
    if probs.len() != params.classes as usize {
        return Err(err(
            ErrorCode::InvalidInput,
            format!(
                "the model gives {} output values; the job expects one example of {} classes",
                probs.len(),
                params.classes
            ),
        ));
    }
    let mut values = match params.mode {
        Mode::Mean => {
            // §15.6: the sensitivity the noise is calibrated for holds only for a
            // probability vector.
            ensemble_dp::check_probability_vector(probs)
                .map_err(|e| err(ErrorCode::InvalidInput, e))?;
            let fp = FixedPoint::new((1u64 << params.scale_bits) as f64, 1.0)
                .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
            fp.encode(probs)
                .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?
                .values
        }
        Mode::Votes => {
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            encode_vote(best, probs.len())
                .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?
        }
    };
    if let Some(n) = &params.noise {
        ensemble_dp::add_noise(&mut values, n, rng)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    }
    Ok(values)
}

/// How the member ran its model, for its receipt (§15.4).
#[derive(Clone, Debug)]
pub struct ModelRun {
    /// Digest of the model that ran.
    pub model: Digest32,
    /// Execution provider that ran it.
    pub provider: String,
    /// Runtime name and version.
    pub runtime: String,
    /// Unix seconds the receipt states.
    pub issued_at: u64,
}

/// A round message answered (§15.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundAnswer {
    /// The reply to send.
    pub reply: EnsembleReply,
    /// The job is over (done, aborted or abort notice taken): its state may go.
    pub finished: bool,
}

/// A round message refused (§15.3): the error frame to send, and whether the job's state
/// is gone with it (the SecAgg client aborted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The typed error.
    pub frame: ErrorFrame,
    /// The job is over.
    pub finished: bool,
}

impl Refusal {
    fn keep(code: ErrorCode, m: impl Into<String>) -> Self {
        Self {
            frame: err(code, m),
            finished: false,
        }
    }
}

/// The member's state machine for one job (§15.3).
pub struct MemberJob {
    client: Client,
    /// The job's parameters: a prepared job encodes its output under them when its input
    /// comes.
    params: EnsembleParams,
    /// Started without its input (§15.1): the input comes in round 2.
    prepared: bool,
    /// The authenticated peer that started the job: the only one whose rounds are served.
    aggregator: PublicKey,
    /// The round whose request is expected next (1..=4).
    next: u8,
    /// The receipt payload without its output commitment (filled in at round 2).
    receipt: ReceiptPayload,
    limits: Limits,
}

impl std::fmt::Debug for MemberJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberJob")
            .field("next", &self.next)
            .field("aggregator", &self.aggregator)
            .finish_non_exhaustive()
    }
}

impl MemberJob {
    /// Joins the job `req` started by the authenticated `aggregator` (which must be the one
    /// its parameters name, [`ensemble_rules::check_aggregator`]) with the encoded
    /// `values` ([`contribution`]), and answers round 0 at `now` (milliseconds). The
    /// SecAgg client signs with `identity` and waits at most `timeout_ms` per round.
    /// A prepared start (no input, §15.1) comes without `values`: they come with the input,
    /// in [`MemberJob::handle_input`].
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        req: &EnsembleStart,
        aggregator: PublicKey,
        values: Option<Vec<u64>>,
        identity: SecretKey,
        rng: Box<dyn SecretRng + Send>,
        run: ModelRun,
        now: u64,
        timeout_ms: u64,
    ) -> Result<(Self, EnsembleReply), ErrorFrame> {
        ensemble_rules::check_aggregator(req, &aggregator)?;
        let p = &req.params;
        let cfg = Arc::new(p.round_config());
        let limits = Limits::of(&cfg);
        let mut client = match (&req.inputs, values) {
            (Some(_), Some(values)) => {
                Client::new(cfg, req.index, identity, values, rng, timeout_ms)
            }
            (None, None) => Client::awaiting_input(cfg, req.index, identity, rng, timeout_ms),
            _ => {
                return Err(err(
                    ErrorCode::Internal,
                    "a start's contribution must come with its input, and only then",
                ));
            }
        }
        .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?;
        let message = client
            .start(now)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        let receipt = ReceiptPayload {
            job_id: req.job_id,
            nonce: req.nonce.clone(),
            kind: JobKind::EnsembleMember,
            model_digest: run.model,
            // §15.4: salted with the client's salts, so the receipt does not let anyone
            // brute-force low-entropy features.
            inputs: salted_commitments(req.inputs.as_deref().unwrap_or_default(), &req.input_salts),
            outputs: Vec::new(),
            provider: run.provider,
            runtime: run.runtime,
            issued_at: run.issued_at,
            previous: None,
            policy: Some(p.digest()),
        };
        let job = Self {
            client,
            params: p.clone(),
            prepared: req.inputs.is_none(),
            aggregator,
            next: 1,
            receipt,
            limits,
        };
        let reply = EnsembleReply {
            job_id: req.job_id,
            round: 0,
            message,
            receipt: None,
        };
        Ok((job, reply))
    }

    /// The SecAgg message limits of the job.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The job's parameters (§15.2).
    pub fn params(&self) -> &EnsembleParams {
        &self.params
    }

    /// The digest of the model this member runs for the job.
    pub fn model(&self) -> Digest32 {
        self.receipt.model_digest
    }

    /// Whether [`MemberJob::handle_input`] would take `req` from `peer` now, checked before
    /// the model runs on its input (§15.3): the peer is the job's aggregator, the job is a
    /// prepared one still without its input, and round 1 was answered.
    pub fn check_input(&self, peer: &PublicKey, req: &EnsembleInput) -> Result<(), Refusal> {
        if self.aggregator != *peer {
            return Err(Refusal::keep(
                ErrorCode::NotAllowed,
                "this ensemble job was started by another peer; only its aggregator may send its input",
            ));
        }
        if !self.prepared {
            return Err(Refusal::keep(
                ErrorCode::WrongRound,
                "this ensemble job was started with its input; its round 2 is an ensemble-round",
            ));
        }
        if self.client.has_input() {
            return Err(Refusal::keep(
                ErrorCode::Replayed,
                "this job already has its input",
            ));
        }
        if self.next != 2 {
            return Err(Refusal::keep(
                ErrorCode::WrongRound,
                format!("expected round {}, got the input of round 2", self.next),
            ));
        }
        if req.inputs.len() != req.input_salts.len() {
            return Err(Refusal::keep(ErrorCode::BadRequest, "one salt per input"));
        }
        Ok(())
    }

    /// Round 2 of a prepared job (§15.1): takes the client's input `req` from the
    /// authenticated `peer` with the member's output encoded as `values` ([`contribution`]),
    /// and answers the masked-input round it carries; the member receipt states `issued_at`
    /// (Unix seconds), the time of the input rather than of the preparation. A job takes one input: any refusal
    /// once the checks of [`MemberJob::check_input`] passed ends the job, so that no
    /// aggregator can have a prepared job mask a second input.
    pub fn handle_input(
        &mut self,
        peer: &PublicKey,
        req: &EnsembleInput,
        values: Vec<u64>,
        issued_at: u64,
        now: u64,
    ) -> Result<RoundAnswer, Refusal> {
        self.check_input(peer, req)?;
        let end = |code, m: String| Refusal {
            frame: err(code, m),
            finished: true,
        };
        self.client
            .provide_input(values)
            .map_err(|e| end(ErrorCode::InvalidInput, e.to_string()))?;
        self.receipt.inputs = salted_commitments(&req.inputs, &req.input_salts);
        self.receipt.issued_at = issued_at;
        let round = EnsembleRound {
            job_id: req.job_id,
            round: 2,
            message: req.message.clone(),
        };
        self.handle_round(peer, &round, now).map_err(|r| Refusal {
            frame: r.frame,
            finished: true,
        })
    }

    /// The round whose request is expected next (1..=4).
    pub fn next_round(&self) -> u8 {
        self.next
    }

    /// Answers the round message `req` from the authenticated `peer` at `now` (§15.3): only
    /// the peer that started the job is answered (§17), rounds are taken once each and in
    /// order, and an abort notice must be round 5 and bound to this job's SecAgg round.
    /// In round 2 the caller signs [`MemberJob::receipt_payload`] of the reply.
    pub fn handle_round(
        &mut self,
        peer: &PublicKey,
        req: &EnsembleRound,
        now: u64,
    ) -> Result<RoundAnswer, Refusal> {
        // §17: a co-member that forges rounds or abort notices for someone else's job is
        // refused before its message is read.
        if self.aggregator != *peer {
            return Err(Refusal::keep(
                ErrorCode::NotAllowed,
                "this ensemble job was started by another peer; only its aggregator may send rounds",
            ));
        }
        let msg = decode_server_message(&req.message, &self.limits)
            .map_err(|e| Refusal::keep(ErrorCode::BadRequest, format!("round message: {e}")))?;
        let carried = body_round(&msg.body);
        if req.round == ROUND_ABORT || carried == ROUND_ABORT {
            if carried != ROUND_ABORT || req.round != ROUND_ABORT {
                return Err(Refusal::keep(
                    ErrorCode::WrongRound,
                    "an abort notice must be round 5",
                ));
            }
            if msg.round_digest != *self.client.round_digest() {
                return Err(Refusal::keep(
                    ErrorCode::Replayed,
                    "abort notice of another round",
                ));
            }
            return Ok(RoundAnswer {
                reply: EnsembleReply {
                    job_id: req.job_id,
                    round: ROUND_ABORT,
                    message: Vec::new(),
                    receipt: None,
                },
                finished: true,
            });
        }
        if carried != req.round {
            return Err(Refusal::keep(
                ErrorCode::WrongRound,
                format!(
                    "round {} carries a SecAgg message of round {carried}",
                    req.round
                ),
            ));
        }
        if req.round < self.next {
            return Err(Refusal::keep(
                ErrorCode::Replayed,
                format!("round {} of this job was already answered", req.round),
            ));
        }
        if req.round > self.next {
            return Err(Refusal::keep(
                ErrorCode::WrongRound,
                format!("expected round {}, got round {}", self.next, req.round),
            ));
        }
        if req.round == 2 && !self.client.has_input() {
            return Err(Refusal::keep(
                ErrorCode::WrongRound,
                "round 2 of a prepared job comes with the job's input (ensemble-input)",
            ));
        }
        let message = match self.client.handle_message(&req.message, now) {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                return Err(Refusal {
                    frame: client_error(&e),
                    finished: e.is_fatal(),
                });
            }
        };
        self.next += 1;
        Ok(RoundAnswer {
            reply: EnsembleReply {
                job_id: req.job_id,
                round: req.round,
                message,
                receipt: None,
            },
            finished: self.client.is_done() || self.client.aborted().is_some(),
        })
    }

    /// The member receipt's payload for the round-2 `envelope` sent (§15.4): its one output
    /// is the plain commitment to the packed masked vector (to the whole envelope if it
    /// carries no masked input).
    pub fn receipt_payload(&self, envelope: &[u8]) -> Result<ReceiptPayload, ErrorFrame> {
        let packed = match decode_client_message(envelope, &self.limits).map(|m| m.body) {
            Ok(ClientBody::MaskedInput { packed }) => packed.to_vec(),
            _ => envelope.to_vec(),
        };
        let tensor = masked_tensor(&packed).map_err(|e| err(ErrorCode::Internal, e.0))?;
        let mut payload = self.receipt.clone();
        payload.outputs = vec![Commitment::to(&tensor, None)];
        Ok(payload)
    }
}

/// The ensemble round a SecAgg server message belongs to (§15.3).
fn body_round(body: &ServerBody<'_>) -> u8 {
    match body {
        ServerBody::Keys { .. } => 1,
        ServerBody::Shares { .. } => 2,
        ServerBody::Survivors { .. } => 3,
        ServerBody::Signatures { .. } => 4,
        ServerBody::Abort { .. } => ROUND_ABORT,
        // Sparse graphs only (§9.5.7); ensembles use the full graph, whose decoder refuses
        // it, so no ensemble round carries it.
        ServerBody::Commitments { .. } => u8::MAX,
    }
}

/// The §11.5 code of a SecAgg client refusal.
fn client_error(e: &ClientError) -> ErrorFrame {
    let code = match e {
        ClientError::Replayed => ErrorCode::Replayed,
        ClientError::OutOfRound { .. } => ErrorCode::WrongRound,
        _ => ErrorCode::RoundRejected,
    };
    err(code, e.to_string())
}
