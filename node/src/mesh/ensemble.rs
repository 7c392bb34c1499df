//! A member node's side of a private ensemble (§15.3): run the model on the client's
//! input and keep one protocol member machine (`quorate_protocol::ensemble::member`) per
//! job in a bounded per-job state map. The machine encodes the output, checks the rounds
//! and builds the member receipt; this file runs the model, passes time in, signs and
//! logs. The plaintext output never leaves the node: only masked SecAgg envelopes and a
//! member receipt committing to the masked vector do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_crypto::{PublicKey, SecretKey};

use quorate_crypto::secagg::rng::OsRng;
use quorate_protocol::ensemble::member::{MemberJob, ModelRun, contribution};
use quorate_protocol::ensemble::{
    EnsembleReply, EnsembleRound, EnsembleStart, MASKED_INPUT_NAME, ROUND_ABORT,
};
use quorate_protocol::ensemble_rules::{self, RecentInputs};
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
#[cfg_attr(not(feature = "test-util"), allow(unused_imports))] // used by the test hook
use quorate_protocol::secagg::messages::{
    ClientBody, Limits, decode_client_message, encode_client_message,
};

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
    #[cfg(feature = "test-util")]
    pub exit_at_round: Option<u8>,
    /// Send a bad masked input in round 2: `malformed`, `oversized` or `short`.
    #[cfg(feature = "test-util")]
    pub tamper_masked: Option<String>,
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

#[cfg(not(feature = "test-util"))]
fn exit_if(_: &TestHooks, _: u8) {}

#[cfg(feature = "test-util")]
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
}

fn start_blocking(
    state: &EnsembleService,
    aggregator: PublicKey,
    model: &LoadedModel,
    req: EnsembleStart,
) -> Result<EnsembleReply, ErrorFrame> {
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
    let values = contribution(&req.params, &probs, &mut OsRng)?;
    let run = ModelRun {
        model: model.digest,
        provider: model.provider.clone(),
        runtime: runtime_version(),
        issued_at: unix_now(),
    };
    let (job, reply) = MemberJob::start(
        &req,
        aggregator,
        values,
        state.key.duplicate(),
        Box::new(OsRng),
        run,
        state.jobs.now_ms(),
        JOB_TTL.as_millis() as u64,
    )?;
    let mut jobs = state
        .jobs
        .jobs
        .lock()
        .map_err(|_| err(ErrorCode::Internal, "state lock"))?;
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
    Ok(reply)
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
    let answer = match job.handle_round(peer, &req, now) {
        Ok(a) => a,
        Err(refusal) => {
            if refusal.finished {
                jobs.remove(&req.job_id);
            }
            return Err(refusal.frame);
        }
    };
    let mut out = answer.reply;
    if out.round == 2 {
        #[cfg(feature = "test-util")]
        if let Some(how) = &state.hooks.tamper_masked {
            out.message = tamper(&out.message, how, job.limits(), &state.key);
        }
        let payload = job.receipt_payload(&out.message)?;
        debug_assert_eq!(payload.outputs[0].name, MASKED_INPUT_NAME);
        let receipt = payload
            .sign(&state.key)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        // §12.4: durable before the reply leaves.
        state.audit.append(&receipt).map_err(ErrorFrame::from)?;
        out.receipt = Some(receipt);
    }
    if answer.finished {
        jobs.remove(&req.job_id);
    }
    Ok(out)
}

/// Test hook: replaces the masked input with a bad one, re-signed so that only the
/// aggregator's content checks (not the signature) can catch it.
#[cfg(feature = "test-util")]
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
