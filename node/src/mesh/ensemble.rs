//! A member node's side of a private ensemble (§15.3): run the model on the client's
//! input and keep one protocol member machine (`quorate_protocol::ensemble::member`) per
//! job in a bounded per-job state map. The machine encodes the output, checks the rounds
//! and builds the member receipt; this file runs the model, passes time in, signs and
//! logs. The plaintext output never leaves the node: only masked SecAgg envelopes and a
//! member receipt committing to the masked vector do.

use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use quorate_crypto::{PublicKey, SecretKey};

use quorate_crypto::secagg::rng::OsRng;
use quorate_protocol::ensemble::member::{MemberJob, ModelRun, contribution};
use quorate_protocol::ensemble::{
    EnsembleInput, EnsembleReply, EnsembleRound, EnsembleStart, MASKED_INPUT_NAME, ROUND_ABORT,
};
use quorate_protocol::ensemble_rules::{self, RecentInputs};
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
#[cfg_attr(not(feature = "test-util"), allow(unused_imports))] // used by the test hook
use quorate_protocol::secagg::messages::{
    ClientBody, Limits, decode_client_message, encode_client_message,
};

use crate::audit::AuditLog;
use crate::clock::unix_now;
use crate::mesh::inline_cost::InlineCost;
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

/// Per-job SecAgg client state, bounded in count and age (§15.3). Each job has a lock of
/// its own, so that one job's round (its key agreements, its receipt's fsync) never holds up
/// another's: the table's lock is held only to find, add or drop a job.
pub struct MemberJobs {
    jobs: Mutex<JobTable<Arc<Mutex<MemberJob>>>>,
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

/// What [`EnsembleService::try_round_now`] did.
pub enum RoundNow {
    /// The round was answered (or refused).
    Answered(Result<EnsembleReply, ErrorFrame>),
    /// The job is busy with another request; the round is handed back untouched, to be
    /// answered where waiting is allowed.
    Busy(EnsembleRound),
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
    /// Per request kind (0 the start, then the round number), what answering it cost lately.
    costs: [InlineCost; ROUND_ABORT as usize + 1],
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
            costs: Default::default(),
            hooks,
        }
    }

    /// Whether a request of this kind (0 the start, else the round) may be answered on an
    /// async thread (§15.3): never ShareKeys or MaskedInputCollection (rounds 1 and 2: key
    /// agreement, secret sharing, decryption, and round 2's durable append), and the others
    /// only when their recent answers were quick ([`InlineCost`]). A start's model must
    /// also be quick; the caller knows that.
    pub fn runs_inline(&self, kind: u8) -> bool {
        !matches!(kind, 1 | 2)
            && self
                .costs
                .get(usize::from(kind))
                .is_some_and(InlineCost::is_quick)
    }

    fn note_cost(&self, kind: u8, took: Duration) {
        if let Some(cost) = self.costs.get(usize::from(kind)) {
            cost.note(took);
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
        // A prepared start has no input yet: the rule applies when it comes (§15.1).
        if let Some(inputs) = &req.inputs {
            self.check_repeated_input(inputs, &req.params.members, req.params.threshold)?;
        }
        Ok(model)
    }

    /// §17.6: the input was not aggregated recently over a nearly equal member set.
    fn check_repeated_input(
        &self,
        inputs: &[quorate_protocol::tensor::Tensor],
        members: &[PublicKey],
        threshold: u32,
    ) -> Result<(), ErrorFrame> {
        self.recent
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "state lock"))?
            .check_and_record(
                ensemble_rules::input_digest(inputs),
                members,
                threshold,
                self.jobs.now_ms(),
            )
    }

    /// Handles [`EnsembleInput`] (blocking), round 2 of a prepared job (§15.1): checks that
    /// the job takes this input from `peer`, applies the repeated-input rule, runs the model,
    /// masks its output and makes the member receipt durable before answering.
    pub fn input(&self, peer: &PublicKey, req: EnsembleInput) -> Result<EnsembleReply, ErrorFrame> {
        exit_if(&self.hooks, 2);
        let Some(job) = self.held_job(&req.job_id)? else {
            return Err(unknown_job(&req.job_id));
        };
        let mut held = job
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "job lock"))?;
        held.check_input(peer, &req).map_err(|r| r.frame)?;
        // From here the job takes this input or none: any refusal ends it (§15.1).
        let answer = (|| {
            let p = held.params();
            self.check_repeated_input(&req.inputs, &p.members, p.threshold)?;
            let model = self.models.onnx(&held.model())?;
            let values = run_for_contribution(&model, &req.inputs, held.params())?;
            let now = self.jobs.now_ms();
            let reply = held
                .handle_input(peer, &req, values, unix_now(), now)
                .map_err(|r| r.frame)?
                .reply;
            self.with_receipt(&held, reply)
        })();
        if answer.is_err() {
            self.drop_job(&req.job_id, &job);
        }
        answer
    }

    /// A round-2 reply with its member receipt, signed and durable (§15.4, §12.4).
    fn with_receipt(
        &self,
        job: &MemberJob,
        mut out: EnsembleReply,
    ) -> Result<EnsembleReply, ErrorFrame> {
        #[cfg(feature = "test-util")]
        if let Some(how) = &self.hooks.tamper_masked {
            out.message = tamper(&out.message, how, job.limits(), &self.key);
        }
        out.receipt = Some(sign_and_log(self, job, &out.message)?);
        Ok(out)
    }

    /// Drops job `id` if the table still holds `job` under it, not a later one.
    fn drop_job(&self, id: &[u8; 16], job: &Arc<Mutex<MemberJob>>) {
        if let Ok(mut jobs) = self.jobs.jobs.lock() {
            let same = jobs
                .get_mut(id, Instant::now())
                .is_some_and(|j| Arc::ptr_eq(j, job));
            if same {
                jobs.remove(id);
            }
        }
    }

    /// Handles [`EnsembleStart`] (blocking): runs the model and answers round 0. The job is
    /// bound to `peer`, the authenticated key that started it.
    pub fn start(
        &self,
        peer: PublicKey,
        model: &LoadedModel,
        req: EnsembleStart,
    ) -> Result<EnsembleReply, ErrorFrame> {
        let started = Instant::now();
        let answer = start_blocking(self, peer, model, req);
        self.note_cost(0, started.elapsed());
        answer
    }

    /// Handles [`EnsembleRound`] (blocking): one SecAgg server message for the job's expected
    /// round, from the peer that started the job.
    pub fn round(&self, peer: &PublicKey, req: EnsembleRound) -> Result<EnsembleReply, ErrorFrame> {
        let Some(job) = self.job(&req)? else {
            return Err(unknown_job(&req.job_id));
        };
        let mut held = job
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "job lock"))?;
        self.timed_round(peer, req, &job, &mut held)
    }

    /// Handles [`EnsembleRound`] without waiting on its job's lock: for an async thread, which
    /// must not wait out another request's round (its fsync, say). A busy job gives the round
    /// back.
    pub fn try_round_now(&self, peer: &PublicKey, req: EnsembleRound) -> RoundNow {
        let job = match self.job(&req) {
            Ok(Some(job)) => job,
            Ok(None) => return RoundNow::Answered(Err(unknown_job(&req.job_id))),
            Err(e) => return RoundNow::Answered(Err(e)),
        };
        let mut held = match job.try_lock() {
            Ok(held) => held,
            Err(TryLockError::WouldBlock) => return RoundNow::Busy(req),
            Err(TryLockError::Poisoned(_)) => {
                return RoundNow::Answered(Err(err(ErrorCode::Internal, "job lock")));
            }
        };
        RoundNow::Answered(self.timed_round(peer, req, &job, &mut held))
    }

    /// The job a round is for, if it is held; the table's lock is released on return. (A test
    /// node configured to crash on this round exits here, before looking.)
    fn job(&self, req: &EnsembleRound) -> Result<Option<Arc<Mutex<MemberJob>>>, ErrorFrame> {
        if req.round < ROUND_ABORT {
            exit_if(&self.hooks, req.round);
        }
        self.held_job(&req.job_id)
    }

    fn held_job(&self, id: &[u8; 16]) -> Result<Option<Arc<Mutex<MemberJob>>>, ErrorFrame> {
        let mut jobs = self
            .jobs
            .jobs
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "state lock"))?;
        Ok(jobs.get_mut(id, Instant::now()).cloned())
    }

    fn timed_round(
        &self,
        peer: &PublicKey,
        req: EnsembleRound,
        job: &Arc<Mutex<MemberJob>>,
        held: &mut MemberJob,
    ) -> Result<EnsembleReply, ErrorFrame> {
        let (started, kind, id) = (Instant::now(), req.round, req.job_id);
        let (answer, finished) = round(self, peer, req, held);
        if finished {
            self.drop_job(&id, job);
        }
        self.note_cost(kind, started.elapsed());
        answer
    }
}

fn unknown_job(id: &[u8; 16]) -> ErrorFrame {
    err(
        ErrorCode::UnknownJob,
        format!(
            "no open ensemble job {} (never started, finished, aborted or expired)",
            hex::encode(id)
        ),
    )
}

/// Runs `model` on the client's `inputs` and encodes its output as the member's SecAgg
/// input under `params` (§15.2).
fn run_for_contribution(
    model: &LoadedModel,
    inputs: &[quorate_protocol::tensor::Tensor],
    params: &quorate_protocol::ensemble::EnsembleParams,
) -> Result<Vec<u64>, ErrorFrame> {
    let checked = model
        .check_inputs(inputs.to_vec())
        .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?;
    let outputs = model
        .run(&checked)
        .map_err(|e| err(ErrorCode::Internal, format!("{e:#}")))?;
    let probs: Vec<f32> = outputs
        .first()
        .map(|t| t.to_f64_vec().into_iter().map(|x| x as f32).collect())
        .unwrap_or_default();
    contribution(params, &probs, &mut OsRng)
}

fn start_blocking(
    state: &EnsembleService,
    aggregator: PublicKey,
    model: &LoadedModel,
    req: EnsembleStart,
) -> Result<EnsembleReply, ErrorFrame> {
    // A prepared start runs no model: its input comes in round 2 (§15.1).
    let values = match &req.inputs {
        Some(inputs) => Some(run_for_contribution(model, inputs, &req.params)?),
        None => None,
    };
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
    match jobs.insert(req.job_id, Arc::new(Mutex::new(job)), Instant::now()) {
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

/// One round of a held job, under the job's lock; also says whether the job is over (its
/// last round answered, or a fatal refusal) and is to be dropped.
fn round(
    state: &EnsembleService,
    peer: &PublicKey,
    req: EnsembleRound,
    job: &mut MemberJob,
) -> (Result<EnsembleReply, ErrorFrame>, bool) {
    let now = state.jobs.now_ms();
    let answer = match job.handle_round(peer, &req, now) {
        Ok(a) => a,
        Err(refusal) => return (Err(refusal.frame), refusal.finished),
    };
    let out = answer.reply;
    if out.round == 2 {
        return (state.with_receipt(job, out), answer.finished);
    }
    (Ok(out), answer.finished)
}

/// The member receipt of round 2 (§15.4), signed and durable before the reply leaves (§12.4).
fn sign_and_log(
    state: &EnsembleService,
    job: &MemberJob,
    masked: &[u8],
) -> Result<Vec<u8>, ErrorFrame> {
    let payload = job.receipt_payload(masked)?;
    debug_assert_eq!(payload.outputs[0].name, MASKED_INPUT_NAME);
    let receipt = payload
        .sign(&state.key)
        .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    state.audit.append(&receipt).map_err(ErrorFrame::from)?;
    Ok(receipt)
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

#[cfg(test)]
#[path = "ensemble_prepared_tests.rs"]
mod prepared_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_protocol::ensemble::{EnsembleParams, Mode};
    use quorate_protocol::roster::Roster;
    use quorate_protocol::tensor::Tensor;

    /// A member service (index 0 of a five-member job) holding one started job, with the
    /// aggregator's key.
    fn member_with_a_job(dir: &std::path::Path) -> (EnsembleService, PublicKey, [u8; 16]) {
        let key = SecretKey::from_seed(&[1; 32]);
        let (service, model) = member_service(dir, &key);
        let digest = model.digest;
        let aggregator = SecretKey::from_seed(&[7; 32]).public_key();
        let mut members = vec![key.public_key()];
        members.extend((2..=5u8).map(|i| SecretKey::from_seed(&[i; 32]).public_key()));
        let params = EnsembleParams::new(
            Mode::Mean,
            [5; 32],
            aggregator,
            members,
            vec![digest; 5],
            2,
            3,
            None,
        )
        .unwrap();
        let job_id = [4; 16];
        let start = EnsembleStart {
            job_id,
            nonce: vec![2; 32],
            model: digest,
            inputs: Some(vec![
                Tensor::from_f32("features", vec![1, 30], &[0.5; 30]).unwrap(),
            ]),
            params,
            index: 0,
            input_salts: vec![[9; 32]],
        };
        let reply = service.start(aggregator, &model, start).unwrap();
        assert_eq!(reply.round, 0);
        (service, aggregator, job_id)
    }

    /// The member service of a node holding `key`, serving `mlp.onnx` under an empty roster
    /// (the tests start jobs past the roster rules), and the model.
    pub(super) fn member_service(
        dir: &std::path::Path,
        key: &SecretKey,
    ) -> (EnsembleService, Arc<LoadedModel>) {
        let (models, model, audit) = crate::test_support::mlp_served(dir);
        let admin = SecretKey::from_seed(&[9; 32]);
        let roster = Roster {
            governance: Default::default(),
            mesh: "m".into(),
            serial: 1,
            issued_at: 1000,
            expires_at: u64::MAX / 2,
            entries: vec![],
        };
        let bytes = roster.sign(&admin).unwrap();
        let keeper = RosterKeeper::new(
            "n1",
            key.public_key(),
            admin.public_key(),
            &dir.join("roster.cbor"),
            roster,
            bytes,
        );
        let service = EnsembleService::new(
            Arc::new(key.duplicate()),
            Arc::new(audit),
            models,
            Arc::new(keeper),
            TestHooks::default(),
        );
        (service, model)
    }

    fn round_3(job_id: [u8; 16]) -> EnsembleRound {
        EnsembleRound {
            job_id,
            round: 3,
            message: vec![0xa0],
        }
    }

    /// An async thread never waits on a job another request holds: the round is handed back
    /// untouched, and answered once the job is free.
    #[test]
    fn a_busy_job_hands_the_round_back_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (service, aggregator, job_id) = member_with_a_job(dir.path());
        let job = service.job(&round_3(job_id)).unwrap().unwrap();
        let held = job.lock().unwrap();
        match service.try_round_now(&aggregator, round_3(job_id)) {
            RoundNow::Busy(req) => assert_eq!((req.job_id, req.round), (job_id, 3)),
            RoundNow::Answered(a) => panic!("answered while busy: {:?}", a.map(|r| r.round)),
        }
        drop(held);
        match service.try_round_now(&aggregator, round_3(job_id)) {
            RoundNow::Answered(Err(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
            RoundNow::Answered(Ok(r)) => panic!("a malformed round answered: {}", r.round),
            RoundNow::Busy(_) => panic!("busy with nothing holding it"),
        }
        match service.try_round_now(&aggregator, round_3([0; 16])) {
            RoundNow::Answered(Err(e)) => assert_eq!(e.code, ErrorCode::UnknownJob),
            _ => panic!("an unknown job was not refused as such"),
        }
        // The job is still held for its real round 1.
        assert_eq!(service.open_jobs(), 1);
    }

    /// Rounds 1 and 2 (key agreement, secret sharing, the durable receipt) never run on an
    /// async thread; the others do once they were quick (§15.3).
    #[test]
    fn only_quick_rounds_without_key_agreement_run_inline() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _, _) = member_with_a_job(dir.path());
        assert_eq!(service.runs_inline(0), service.costs[0].is_quick());
        for kind in 1..=5u8 {
            assert!(!service.runs_inline(kind), "round {kind} before any answer");
            service.note_cost(kind, Duration::from_micros(5));
        }
        assert!(!service.runs_inline(1) && !service.runs_inline(2));
        assert!((3..=5).all(|k| service.runs_inline(k)));
        assert!(!service.runs_inline(6), "no such round");
        for _ in 0..4 {
            service.note_cost(4, Duration::from_millis(5));
        }
        assert!(!service.runs_inline(4), "slow answers move round 4 off");
    }
}
