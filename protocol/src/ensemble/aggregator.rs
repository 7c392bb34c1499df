//! The aggregator of a private ensemble as a sans-IO state machine (§15.3, §15.5).
//!
//! The machine drives the SecAgg server (§9.5) over the mesh messages of §15.3: it says
//! what to send to each member in each round, takes each member's answer, checks every
//! member receipt against the masked input it accompanies (§15.4), records the transcript
//! of accepted client messages, closes rounds, and at the end hands back the unsigned
//! aggregate receipt (§15.5). The caller moves the messages, runs the rounds' requests
//! concurrently under its own timeouts, generates the job's randomness and signs.
//!
//! Time: a round is closed explicitly once every member answered or failed (the caller's
//! request timeout bounds the wait), so the SecAgg server runs on a virtual clock that
//! advances by [`ROUND_MS`] at each close. The offline audit replays the transcript the
//! same way (`crate::ensemble_audit`).

use std::sync::Arc;

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};

use super::aggregate::{
    AggregatePayload, TranscriptEntry, encode_transcript, receipt_digest, transcript_digest,
};
use super::member_receipt::{MemberBinding, verify_member_receipt};
use super::messages::{EnsembleInput, EnsembleReply, EnsembleRound, EnsembleStart};
use super::params::{EnsembleParams, Mode};
use super::{ROUND_ABORT, salted_commitments};
use crate::ensemble_dp;
use crate::messages::common::{ErrorFrame, MessageError};
use crate::receipt::{Commitment, JOB_ID_LEN};
use crate::secagg::messages::{AbortCode, Limits, ServerBody, encode_server_message};
use crate::secagg::{Outcome, Server};
use crate::tensor::Tensor;

/// Virtual per-round timeout of the SecAgg server (milliseconds of the machine's clock).
pub const ROUND_MS: u64 = 1_000;

/// Closes `round` of `server` once every member answered or failed (§15.3): when the
/// server still waits in that round, its virtual clock jumps to the round's deadline.
/// Returns the clock. The live aggregator and the offline replay (§15.5) close rounds
/// alike, so a replay of the transcript reaches the aggregator's result.
pub fn close_round(server: &mut Server, round: u8, now: u64) -> u64 {
    if server.outcome().is_none() && server.round() as u8 == round {
        let now = server.poll_timeout().unwrap_or(now).max(now);
        server.handle_timeout(now);
        return now;
    }
    now
}

/// Builds the parameters of a new job (§15.2, §15.6): the mode's fixed-point scale
/// ([`Mode::scale_bits`]), noise calibrated for `dp = (ε, δ)` over all members if asked,
/// and the smallest modulus that fits.
#[allow(clippy::too_many_arguments)]
pub fn job_params(
    mode: Mode,
    session_id: [u8; 32],
    aggregator: PublicKey,
    members: Vec<PublicKey>,
    models: Vec<Digest32>,
    classes: u32,
    threshold: u32,
    dp: Option<(f64, f64)>,
) -> Result<EnsembleParams, String> {
    let noise = match dp {
        None => None,
        Some((eps, delta)) => Some(ensemble_dp::calibrate(
            eps,
            delta,
            mode,
            mode.scale_bits(),
            classes,
            members.len(),
        )?),
    };
    EnsembleParams::new(
        mode, session_id, aggregator, members, models, classes, threshold, noise,
    )
    .map_err(|e| format!("ensemble parameters: {}", e.0))
}

/// One ensemble job as the aggregator sees it; the randomness (job id, nonce, salts,
/// session id) is the caller's.
#[derive(Clone, Debug)]
pub struct AggregatorJob {
    /// Job parameters (§15.2).
    pub params: EnsembleParams,
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: Vec<u8>,
    /// The client's input tensors.
    pub inputs: Vec<Tensor>,
    /// One salt per input, the same for every member (§15.4).
    pub input_salts: Vec<[u8; SALT_LEN]>,
}

/// A message the aggregator sends to a member.
#[derive(Clone, Debug, PartialEq)]
pub enum ToMember {
    /// The start request of round 0 (§15.3).
    Start(Box<EnsembleStart>),
    /// A SecAgg server message of rounds 1..=4, or an abort notice (round 5).
    Round(EnsembleRound),
    /// Round 2 of a prepared job, with the client's input (§15.1).
    Input(Box<EnsembleInput>),
}

/// A message for member `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct Send {
    /// Member index.
    pub to: u32,
    /// What to send.
    pub message: ToMember,
}

/// What came back from a member for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// An ensemble reply.
    Reply(EnsembleReply),
    /// A typed error frame.
    Refused(ErrorFrame),
    /// A response of another kind.
    Unexpected,
    /// No answer: the connection or the request failed, or timed out.
    Failed(String),
}

/// What a finished job gives, before the aggregator signs it.
#[derive(Clone, Debug)]
pub struct AggregateResult {
    /// The aggregate receipt's payload (§15.5), issued at the time passed in.
    pub payload: AggregatePayload,
    /// The transcript the payload commits to.
    pub transcript: Vec<u8>,
    /// `(member, receipt)` of each contributor, ascending by member.
    pub member_receipts: Vec<(u32, Vec<u8>)>,
    /// Decoded result: mean probabilities or vote counts.
    pub result: Vec<f64>,
    /// ε calibrated for all members and ε achieved with the actual contributors.
    pub epsilon: Option<(f64, f64)>,
}

/// Why a job gave no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregatorError {
    /// The SecAgg server could not be set up.
    #[error("secure aggregation: {0}")]
    Setup(String),
    /// SecAgg aborted (too few members answered, reconstruction failed).
    #[error("the ensemble aborted in SecAgg round {round}: {reason}")]
    Aborted {
        /// The round that failed.
        round: String,
        /// Why.
        reason: String,
    },
    /// The machine was asked for its result before it finished.
    #[error("the ensemble ended without an outcome")]
    NoOutcome,
    /// The transcript could not be encoded.
    #[error("transcript: {0}")]
    Transcript(String),
}

/// The aggregator's state machine for one job (§15.3).
pub struct Aggregator {
    job: AggregatorJob,
    limits: Limits,
    server: Server,
    /// The virtual clock of the SecAgg server.
    now: u64,
    /// The round whose answers are being collected; [`ROUND_ABORT`] while abort notices
    /// are out.
    round: u8,
    finished: bool,
    params_digest: Digest32,
    input_commitments: Vec<Commitment>,
    transcript: Vec<TranscriptEntry>,
    member_receipts: Vec<(u32, Vec<u8>)>,
    events: Vec<(u32, String)>,
    /// The job was started without its input (§15.1); it has its input once
    /// `job.inputs` is not empty (an input holds at least one tensor).
    prepared: bool,
    /// The round-2 requests of a prepared job, held until its input comes.
    held: Vec<Send>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("round", &self.round)
            .field("finished", &self.finished)
            .field("accepted", &self.transcript.len())
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// A machine for `job` whose SecAgg server uses `threads` workers (0: every core),
    /// and the start requests of round 0, one per member (§15.3).
    pub fn new(job: AggregatorJob, threads: usize) -> Result<(Self, Vec<Send>), AggregatorError> {
        if job.input_salts.len() != job.inputs.len() {
            return Err(AggregatorError::Setup(
                "one salt per input is required".into(),
            ));
        }
        Self::build(job, threads, false)
    }

    /// A machine for a *prepared* job (§15.1): its start requests carry no input, so that
    /// rounds 0 and 1 (key advertisement and secret sharing, which never read an input) run
    /// before the client's input exists. After round 1 the machine holds the round-2 requests
    /// until [`Aggregator::provide_input`] gives it the input, which they then carry.
    pub fn new_prepared(
        params: EnsembleParams,
        job_id: [u8; JOB_ID_LEN],
        nonce: Vec<u8>,
        threads: usize,
    ) -> Result<(Self, Vec<Send>), AggregatorError> {
        let job = AggregatorJob {
            params,
            job_id,
            nonce,
            inputs: Vec::new(),
            input_salts: Vec::new(),
        };
        Self::build(job, threads, true)
    }

    fn build(
        job: AggregatorJob,
        threads: usize,
        prepared: bool,
    ) -> Result<(Self, Vec<Send>), AggregatorError> {
        job.params
            .validate()
            .map_err(|e: MessageError| AggregatorError::Setup(e.0))?;
        let cfg = Arc::new(job.params.round_config());
        let limits = Limits::of(&cfg);
        let server = Server::new(cfg, 0, ROUND_MS, threads)
            .map_err(|e| AggregatorError::Setup(e.to_string()))?;
        // §15.4: member receipts and the aggregate receipt commit to the input under the
        // same salted commitment.
        let input_commitments = salted_commitments(&job.inputs, &job.input_salts);
        let starts = (0..job.params.members.len())
            .map(|i| Send {
                to: i as u32,
                message: ToMember::Start(Box::new(EnsembleStart {
                    input_salts: job.input_salts.clone(),
                    job_id: job.job_id,
                    nonce: job.nonce.clone(),
                    model: job.params.models[i],
                    inputs: (!prepared).then(|| job.inputs.clone()),
                    params: job.params.clone(),
                    index: i as u32,
                })),
            })
            .collect();
        let machine = Self {
            params_digest: job.params.digest(),
            job,
            limits,
            server,
            now: 0,
            round: 0,
            finished: false,
            input_commitments,
            transcript: Vec::new(),
            member_receipts: Vec::new(),
            events: Vec::new(),
            prepared,
            held: Vec::new(),
        };
        Ok((machine, starts))
    }

    /// Whether the machine waits for [`Aggregator::provide_input`] before it can go on: a
    /// prepared job whose round 1 closed.
    pub fn awaits_input(&self) -> bool {
        self.lacks_input() && !self.held.is_empty()
    }

    /// A prepared job whose input has not come yet.
    fn lacks_input(&self) -> bool {
        self.prepared && self.job.inputs.is_empty()
    }

    /// Gives a prepared job the client's `inputs` and their salts (one per input, the same
    /// for every member, §15.4), and returns the round-2 requests that carry them: at once
    /// if round 1 closed, else at its close (from [`Aggregator::close_round`]). Refused for a
    /// job started with its input, or given one already.
    pub fn provide_input(
        &mut self,
        inputs: Vec<Tensor>,
        input_salts: Vec<[u8; SALT_LEN]>,
    ) -> Result<Vec<Send>, AggregatorError> {
        if !self.lacks_input() {
            return Err(AggregatorError::Setup(
                "only a prepared job without its input takes one".into(),
            ));
        }
        if inputs.is_empty() || input_salts.len() != inputs.len() {
            return Err(AggregatorError::Setup(
                "at least one input, and one salt per input, are required".into(),
            ));
        }
        self.input_commitments = salted_commitments(&inputs, &input_salts);
        self.job.inputs = inputs;
        self.job.input_salts = input_salts;
        let held = std::mem::take(&mut self.held);
        Ok(self.with_input(held))
    }

    /// Gives up a prepared job that waits for its input (§15.1): the abort notices (round 5,
    /// §15.3) that free its members' state at once rather than when it expires. Nothing for
    /// a job in any other state.
    pub fn abandon(self) -> Vec<Send> {
        if !self.awaits_input() {
            return Vec::new();
        }
        let notice = encode_server_message(
            self.server.round_digest(),
            &ServerBody::Abort {
                code: AbortCode::Cancelled,
            },
        );
        self.held
            .iter()
            .map(|s| Send {
                to: s.to,
                message: ToMember::Round(EnsembleRound {
                    job_id: self.job.job_id,
                    round: ROUND_ABORT,
                    message: notice.clone(),
                }),
            })
            .collect()
    }

    /// The round-2 requests `sends` with the job's input attached.
    fn with_input(&self, sends: Vec<Send>) -> Vec<Send> {
        sends
            .into_iter()
            .map(|s| match s.message {
                ToMember::Round(r) if r.round == 2 => Send {
                    to: s.to,
                    message: ToMember::Input(Box::new(EnsembleInput {
                        job_id: r.job_id,
                        message: r.message,
                        inputs: self.job.inputs.clone(),
                        input_salts: self.job.input_salts.clone(),
                    })),
                },
                _ => s,
            })
            .collect()
    }

    /// The round whose answers are expected: 0..=4, or [`ROUND_ABORT`] while abort notices
    /// are out.
    pub fn round(&self) -> u8 {
        self.round
    }

    /// True once the job has a sum, or aborted and its abort notices went out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What happened to members, in order: dropouts, refusals, rejected messages.
    pub fn events(&self) -> &[(u32, String)] {
        &self.events
    }

    /// The job id.
    pub fn job_id(&self) -> [u8; JOB_ID_LEN] {
        self.job.job_id
    }

    /// The job parameters.
    pub fn params(&self) -> &EnsembleParams {
        &self.job.params
    }

    /// Takes member `member`'s answer to this round's request (§15.3). An answer that is
    /// not a reply of this job and round, a round-2 reply whose member receipt does not
    /// hold up (§15.4), and a message the SecAgg server refuses are recorded as events and
    /// leave the member out of the round. Answers to abort notices are not read.
    pub fn handle_answer(&mut self, member: u32, answer: Answer) {
        if self.finished || self.round == ROUND_ABORT {
            return;
        }
        let round = self.round;
        let reply = match answer {
            Answer::Reply(r) if r.job_id == self.job.job_id && r.round == round => r,
            Answer::Reply(_) => {
                return self.event(member, "answered for another job or round (ignored)".into());
            }
            Answer::Refused(e) => {
                return self.event(member, format!("dropped in round {round}: {e}"));
            }
            Answer::Unexpected => {
                return self.event(member, format!("unexpected answer in round {round}"));
            }
            Answer::Failed(e) => {
                return self.event(member, format!("dropped in round {round}: {e}"));
            }
        };
        if round == 2
            && let Err(e) = self.check_receipt(member, &reply)
        {
            return self.event(member, format!("masked input refused in round 2: {e}"));
        }
        match self.server.handle_message(&reply.message, self.now) {
            Ok(()) => {
                self.transcript.push(TranscriptEntry {
                    member,
                    round,
                    envelope: reply.message,
                });
                if let (2, Some(r)) = (round, reply.receipt) {
                    self.member_receipts.push((member, r));
                }
            }
            Err(e) => self.event(member, format!("message refused in round {round}: {e}")),
        }
    }

    /// §15.4: the member receipt of a round-2 reply, checked against the masked input.
    fn check_receipt(&self, member: u32, reply: &EnsembleReply) -> Result<(), String> {
        let Some(receipt) = &reply.receipt else {
            return Err("no member receipt".into());
        };
        let i = member as usize;
        let (Some(key), Some(model)) = (
            self.job.params.members.get(i),
            self.job.params.models.get(i),
        ) else {
            return Err("not a member of this job".into());
        };
        let binding = MemberBinding {
            job_id: &self.job.job_id,
            nonce: &self.job.nonce,
            model,
            params: &self.params_digest,
            inputs: &self.input_commitments,
        };
        verify_member_receipt(receipt, key, &binding, &reply.message, &self.limits)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn event(&mut self, member: u32, what: String) {
        self.events.push((member, what));
    }

    /// Whether closing this round agrees keys (§9.5.5): the unmasking round, with a member
    /// whose ShareKeys was accepted but whose masked input was not, so that the server
    /// reconstructs its mask key and regenerates its pairwise masks by X25519 with each
    /// contributor. A driver keeps such a close off its async threads.
    pub fn closing_agrees_keys(&self) -> bool {
        if self.finished || self.round != 4 {
            return false;
        }
        let in_round = |round: u8| {
            self.transcript
                .iter()
                .filter(move |e| e.round == round)
                .map(|e| e.member)
        };
        let masked: Vec<u32> = in_round(2).collect();
        in_round(1).any(|m| !masked.contains(&m))
    }

    /// Closes the round once every member answered or failed, and returns the requests of
    /// the next round: SecAgg server messages, abort notices after an abort (§15.3), or
    /// nothing when the job is finished.
    pub fn close_round(&mut self) -> Vec<Send> {
        // A prepared job waiting for its input has nothing to close: its round 2 has not
        // been sent.
        if self.finished || self.awaits_input() {
            return Vec::new();
        }
        if self.round == ROUND_ABORT {
            // The abort notices went out; their answers are not read.
            self.finished = true;
            return Vec::new();
        }
        self.now = close_round(&mut self.server, self.round, self.now);
        let out = self.server.poll_transmit();
        self.round = match self.server.outcome() {
            Some(Outcome::Aborted { .. }) => ROUND_ABORT,
            Some(Outcome::Sum(_)) => {
                self.finished = true;
                return Vec::new();
            }
            None => self.server.round() as u8,
        };
        if out.is_empty() && self.round == ROUND_ABORT {
            self.finished = true;
        }
        let round = self.round;
        let sends: Vec<Send> = out
            .into_iter()
            .map(|o| Send {
                to: o.to,
                message: ToMember::Round(EnsembleRound {
                    job_id: self.job.job_id,
                    round,
                    message: o.bytes,
                }),
            })
            .collect();
        if round != 2 || !self.prepared {
            return sends;
        }
        // §15.1: a prepared job's round 2 carries its input, and waits for it.
        if self.lacks_input() {
            self.held = sends;
            return Vec::new();
        }
        self.with_input(sends)
    }

    /// The result of a finished job (§15.5): the unsigned aggregate receipt issued at
    /// `issued_at` (Unix seconds), the transcript, the contributors' member receipts and
    /// the decoded result.
    pub fn finish(self, issued_at: u64) -> Result<AggregateResult, AggregatorError> {
        let aggregate = match self.server.outcome() {
            Some(Outcome::Sum(a)) => a.clone(),
            Some(Outcome::Aborted { round, reason }) => {
                return Err(AggregatorError::Aborted {
                    round: format!("{round:?}"),
                    reason: reason.to_string(),
                });
            }
            None => return Err(AggregatorError::NoOutcome),
        };
        let params = &self.job.params;
        let transcript =
            encode_transcript(&self.transcript).map_err(|e| AggregatorError::Transcript(e.0))?;
        let mut member_receipts = self.member_receipts;
        member_receipts.retain(|(i, _)| aggregate.contributors.contains(i));
        let epsilon = params.noise.map(|nz| {
            let (m, s, c) = (params.mode, params.scale_bits, params.classes);
            (
                ensemble_dp::achieved_epsilon(&nz, m, s, c, params.members.len()),
                ensemble_dp::achieved_epsilon(&nz, m, s, c, aggregate.contributors.len()),
            )
        });
        let payload = AggregatePayload {
            job_id: self.job.job_id,
            nonce: self.job.nonce.clone(),
            params: params.clone(),
            models: params.models.clone(),
            inputs: self.input_commitments,
            contributors: aggregate.contributors.clone(),
            dropped: aggregate.dropped.clone(),
            sum: aggregate.sum.clone(),
            transcript: transcript_digest(&transcript),
            member_receipts: member_receipts
                .iter()
                .map(|(i, r)| (*i, receipt_digest(r)))
                .collect(),
            issued_at,
            epsilon_achieved_micro: epsilon.map(|(_, e)| (e * 1e6).ceil() as u64),
        };
        Ok(AggregateResult {
            result: params.decode_sum(&aggregate.sum, aggregate.contributors.len()),
            payload,
            transcript,
            member_receipts,
            epsilon,
        })
    }
}
