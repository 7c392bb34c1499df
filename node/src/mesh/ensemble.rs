//! A member node's side of a private ensemble (§15.3): run the model on the client's
//! input, encode (and optionally noise) the output, and answer the aggregator's SecAgg
//! rounds from a bounded per-job state map. The plaintext output never leaves this file:
//! only masked SecAgg envelopes and a member receipt committing to the masked vector do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_crypto::{PublicKey, SecretKey};

use quorate_crypto::secagg::rng::OsRng;
use quorate_protocol::ensemble::{
    EnsembleReply, EnsembleRound, EnsembleStart, MASKED_INPUT_NAME, Mode, ROUND_ABORT,
    masked_tensor,
};
use quorate_protocol::ensemble_dp;
use quorate_protocol::ensemble_rules::{self, RecentInputs};
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::secagg::messages::{
    ClientBody, Limits, ServerBody, decode_client_message, decode_server_message,
    encode_client_message,
};
use quorate_protocol::secagg::{Client, ClientError};

use crate::audit::AuditLog;
use crate::clock::unix_now;
use crate::mesh::job_table::{JobTable, Refused};
use crate::mesh::models::Models;
use crate::mesh::reload::RosterKeeper;
use quorate_runtime::{LoadedModel, runtime_version};

/// Most ensemble jobs a node keeps state for at once.
pub const MAX_JOBS: usize = 32;
/// A job not finished within this time is dropped.
pub const JOB_TTL: Duration = Duration::from_secs(120);

/// Test-only behaviour of a member (hidden node configuration, never set in production).
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Exit the process on receiving the request of this round (0..=4), as a crash would.
    pub exit_at_round: Option<u8>,
    /// Send a bad masked input in round 2: `malformed`, `oversized` or `short`.
    pub tamper_masked: Option<String>,
}

struct MemberJob {
    client: Client,
    /// The authenticated peer that started the job: the only one whose rounds are served.
    aggregator: PublicKey,
    /// The round whose request is expected next (1..=4).
    next: u8,
    /// The receipt payload without its output commitment (filled in at round 2).
    receipt: ReceiptPayload,
    key: SecretKey,
    limits: Limits,
}

/// Per-job SecAgg client state, bounded in count and age (§15.3).
pub struct MemberJobs {
    jobs: Mutex<JobTable<MemberJob>>,
    epoch: Option<Instant>,
}

impl Default for MemberJobs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemberJobs {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            jobs: Mutex::new(JobTable::new(MAX_JOBS, JOB_TTL)),
            epoch: Some(Instant::now()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    /// Jobs currently held (for tests and health).
    pub fn len(&self) -> usize {
        self.jobs.lock().map(|j| j.len()).unwrap_or(0)
    }

    /// True when no job is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn err(code: ErrorCode, m: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, m)
}

fn exit_if(hooks: &TestHooks, round: u8) {
    if hooks.exit_at_round == Some(round) {
        // Test hook: crash without answering, as a killed member would.
        std::process::exit(3);
    }
}

/// The member side of private ensembles, handed what it needs: the node's key, its audit
/// log and models, and the per-job state it keeps.
pub struct EnsembleService {
    key: Arc<SecretKey>,
    audit: Arc<AuditLog>,
    models: Arc<Models>,
    roster: Arc<RosterKeeper>,
    jobs: MemberJobs,
    recent: Mutex<RecentInputs>,
    hooks: TestHooks,
}

impl EnsembleService {
    /// A member service signing with `key` into `audit`, serving `models`.
    pub fn new(
        key: Arc<SecretKey>,
        audit: Arc<AuditLog>,
        models: Arc<Models>,
        roster: Arc<RosterKeeper>,
        hooks: TestHooks,
    ) -> Self {
        Self {
            key,
            audit,
            models,
            roster,
            jobs: MemberJobs::new(),
            recent: Mutex::new(RecentInputs::new()),
            hooks,
        }
    }

    /// Ensemble jobs held now.
    pub fn open_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// The checks of an [`EnsembleStart`], made before a job slot is taken and before the
    /// model runs (§15.2, §17): the model is served; the job passes the member rules under
    /// the current roster (its aggregator is the peer, its members are roster nodes serving
    /// their models, its size, threshold and noise are what governance and the stated ε
    /// require); the job is new and there is room for it; and its input was not aggregated
    /// recently over a nearly equal member set. Returns the model to run.
    pub fn prepare_start(
        &self,
        peer: &PublicKey,
        req: &EnsembleStart,
    ) -> Result<Arc<LoadedModel>, ErrorFrame> {
        exit_if(&self.hooks, 0);
        let model = self.models.onnx(&req.model)?;
        ensemble_rules::check_start(req, &self.key.public_key(), peer, &self.roster.roster())?;
        let mut jobs = self
            .jobs
            .jobs
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "state lock"))?;
        let now = Instant::now();
        if jobs.contains(&req.job_id, now) {
            return Err(err(
                ErrorCode::Replayed,
                format!(
                    "ensemble job {} was already started here",
                    hex::encode(req.job_id)
                ),
            ));
        }
        jobs.expire(now);
        if jobs.len() >= MAX_JOBS {
            return Err(err(
                ErrorCode::Busy,
                format!("{MAX_JOBS} ensemble jobs are open on this node"),
            ));
        }
        drop(jobs);
        self.recent
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "state lock"))?
            .check_and_record(
                ensemble_rules::input_digest(req),
                &req.params.members,
                req.params.threshold,
                self.jobs.now_ms(),
            )?;
        Ok(model)
    }

    /// Handles [`EnsembleStart`] (blocking): runs the model and answers round 0. The job is
    /// bound to `peer`, the authenticated key that started it.
    pub fn start(
        &self,
        peer: PublicKey,
        model: &LoadedModel,
        req: EnsembleStart,
    ) -> Result<EnsembleReply, ErrorFrame> {
        start_blocking(self, peer, model, req)
    }

    /// Handles [`EnsembleRound`] (blocking): one SecAgg server message for the job's expected
    /// round, from the peer that started the job.
    pub fn round(&self, peer: &PublicKey, req: EnsembleRound) -> Result<EnsembleReply, ErrorFrame> {
        round(self, peer, req)
    }

    fn clone_key(&self) -> Result<SecretKey, ErrorFrame> {
        self.key
            .to_pem()
            .map_err(|e| e.to_string())
            .and_then(|pem| SecretKey::from_pem(&pem).map_err(|e| e.to_string()))
            .map_err(|e| err(ErrorCode::Internal, e))
    }
}

fn start_blocking(
    state: &EnsembleService,
    aggregator: PublicKey,
    model: &LoadedModel,
    req: EnsembleStart,
) -> Result<EnsembleReply, ErrorFrame> {
    let p = &req.params;
    let checked = model
        .check_inputs(req.inputs.clone())
        .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?;
    let outputs = model
        .run(&checked)
        .map_err(|e| err(ErrorCode::Internal, format!("{e:#}")))?;
    let probs: Vec<f32> = outputs
        .first()
        .map(|t| t.to_f64_vec().into_iter().map(|x| x as f32).collect())
        .unwrap_or_default();
    if probs.len() != p.classes as usize {
        return Err(err(
            ErrorCode::InvalidInput,
            format!(
                "the model gives {} output values; the job expects one example of {} classes",
                probs.len(),
                p.classes
            ),
        ));
    }
    let mut values = match p.mode {
        Mode::Mean => {
            // §15.6: the sensitivity the noise is calibrated for holds only for a
            // probability vector.
            ensemble_dp::check_probability_vector(&probs)
                .map_err(|e| err(ErrorCode::InvalidInput, e))?;
            let fp = quorate_protocol::secagg::encoding::FixedPoint::new(
                (1u64 << p.scale_bits) as f64,
                1.0,
            )
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
            fp.encode(&probs)
                .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?
                .values
        }
        Mode::Votes => {
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            quorate_protocol::secagg::encoding::encode_vote(best, probs.len())
                .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?
        }
    };
    if let Some(n) = &p.noise {
        ensemble_dp::add_noise(&mut values, n, &mut OsRng)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    }
    let key = state.clone_key()?;
    let cfg = Arc::new(p.round_config());
    let limits = Limits::of(&cfg);
    let mut client = Client::new(
        cfg,
        req.index,
        state.clone_key()?,
        values,
        Box::new(OsRng),
        JOB_TTL.as_millis() as u64,
    )
    .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?;
    let now = state.jobs.now_ms();
    let message = client
        .start(now)
        .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    let receipt = ReceiptPayload {
        job_id: req.job_id,
        nonce: req.nonce.clone(),
        kind: JobKind::EnsembleMember,
        model_digest: model.digest,
        // §15.4: salted with the client's salts, so the receipt does not let anyone
        // brute-force low-entropy features.
        inputs: req
            .inputs
            .iter()
            .zip(&req.input_salts)
            .map(|(t, salt)| Commitment::to(t, Some(salt)))
            .collect(),
        outputs: Vec::new(),
        provider: model.provider.clone(),
        runtime: runtime_version(),
        issued_at: unix_now(),
        previous: None,
        policy: Some(p.digest()),
    };
    let mut jobs = state
        .jobs
        .jobs
        .lock()
        .map_err(|_| err(ErrorCode::Internal, "state lock"))?;
    let job = MemberJob {
        client,
        aggregator,
        next: 1,
        receipt,
        key,
        limits,
    };
    match jobs.insert(req.job_id, job, Instant::now()) {
        Ok(()) => {}
        Err(Refused::Full) => {
            return Err(err(
                ErrorCode::Busy,
                format!("{MAX_JOBS} ensemble jobs are open on this node"),
            ));
        }
        Err(Refused::Duplicate) => {
            return Err(err(ErrorCode::Replayed, "ensemble job already started"));
        }
    }
    Ok(EnsembleReply {
        job_id: req.job_id,
        round: 0,
        message,
        receipt: None,
    })
}

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

fn client_error(e: &ClientError) -> ErrorFrame {
    let code = match e {
        ClientError::Replayed => ErrorCode::Replayed,
        ClientError::OutOfRound { .. } => ErrorCode::WrongRound,
        _ => ErrorCode::RoundRejected,
    };
    err(code, e.to_string())
}

fn round(
    state: &EnsembleService,
    peer: &PublicKey,
    req: EnsembleRound,
) -> Result<EnsembleReply, ErrorFrame> {
    if req.round < ROUND_ABORT {
        exit_if(&state.hooks, req.round);
    }
    let now = state.jobs.now_ms();
    let mut jobs = state
        .jobs
        .jobs
        .lock()
        .map_err(|_| err(ErrorCode::Internal, "state lock"))?;
    let job = jobs.get_mut(&req.job_id, Instant::now()).ok_or_else(|| {
        err(
            ErrorCode::UnknownJob,
            format!(
                "no open ensemble job {} (never started, finished, aborted or expired)",
                hex::encode(req.job_id)
            ),
        )
    })?;
    // §17: a job answers only the peer that started it; a co-member that forges rounds or
    // abort notices for someone else's job is refused before its message is read.
    if job.aggregator != *peer {
        return Err(err(
            ErrorCode::NotAllowed,
            "this ensemble job was started by another peer; only its aggregator may send rounds",
        ));
    }
    let limits = job.limits;
    let msg = decode_server_message(&req.message, &limits)
        .map_err(|e| err(ErrorCode::BadRequest, format!("round message: {e}")))?;
    let carried = body_round(&msg.body);
    if req.round == ROUND_ABORT || carried == ROUND_ABORT {
        if carried != ROUND_ABORT || req.round != ROUND_ABORT {
            return Err(err(
                ErrorCode::WrongRound,
                "an abort notice must be round 5",
            ));
        }
        if msg.round_digest != *job.client.round_digest() {
            return Err(err(ErrorCode::Replayed, "abort notice of another round"));
        }
        jobs.remove(&req.job_id);
        return Ok(EnsembleReply {
            job_id: req.job_id,
            round: ROUND_ABORT,
            message: Vec::new(),
            receipt: None,
        });
    }
    if carried != req.round {
        return Err(err(
            ErrorCode::WrongRound,
            format!(
                "round {} carries a SecAgg message of round {carried}",
                req.round
            ),
        ));
    }
    if req.round < job.next {
        return Err(err(
            ErrorCode::Replayed,
            format!("round {} of this job was already answered", req.round),
        ));
    }
    if req.round > job.next {
        return Err(err(
            ErrorCode::WrongRound,
            format!("expected round {}, got round {}", job.next, req.round),
        ));
    }
    let reply = match job.client.handle_message(&req.message, now) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            let frame = client_error(&e);
            if e.is_fatal() {
                jobs.remove(&req.job_id);
            }
            return Err(frame);
        }
    };
    job.next += 1;
    let mut out = EnsembleReply {
        job_id: req.job_id,
        round: req.round,
        message: reply,
        receipt: None,
    };
    if req.round == 2 {
        if let Some(how) = &state.hooks.tamper_masked {
            out.message = tamper(&out.message, how, &limits, &job.key);
        }
        let packed = match decode_client_message(&out.message, &limits).map(|m| m.body) {
            Ok(ClientBody::MaskedInput { packed }) => packed.to_vec(),
            _ => out.message.clone(),
        };
        let tensor = masked_tensor(&packed).map_err(|e| err(ErrorCode::Internal, e.0))?;
        let mut payload = job.receipt.clone();
        payload.outputs = vec![Commitment::to(&tensor, None)];
        debug_assert_eq!(payload.outputs[0].name, MASKED_INPUT_NAME);
        let receipt = payload
            .sign(&job.key)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        // §12.4: durable before the reply leaves.
        state
            .audit
            .append(&receipt)
            .map_err(|e| err(ErrorCode::Internal, format!("{e:#}")))?;
        out.receipt = Some(receipt);
    }
    if job.client.is_done() || job.client.aborted().is_some() {
        jobs.remove(&req.job_id);
    }
    Ok(out)
}

/// Test hook: replaces the masked input with a bad one, re-signed so that only the
/// aggregator's content checks (not the signature) can catch it.
fn tamper(envelope: &[u8], how: &str, limits: &Limits, key: &SecretKey) -> Vec<u8> {
    let Ok(m) = decode_client_message(envelope, limits) else {
        return envelope.to_vec();
    };
    let ClientBody::MaskedInput { packed } = m.body else {
        return envelope.to_vec();
    };
    let mut bad = packed.to_vec();
    match how {
        "malformed" => return vec![0xa5; envelope.len()],
        "oversized" => bad.extend(std::iter::repeat_n(0xff, 4096)),
        _ => {
            bad.pop();
        }
    }
    encode_client_message(
        key,
        &m.round_digest,
        m.sender,
        &ClientBody::MaskedInput { packed: &bad },
    )
}
