//! The infer service (§11.3): run a model on checked inputs, commit and sign, and make the
//! receipt durable before the reply leaves (§12.4). Handed what it needs — the key, the audit
//! log, the models, a view of the current roster's governance — so it reaches into nothing
//! else of the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::SALT_LEN;
use quorate_protocol::governance::Governance;
use quorate_protocol::messages::{ErrorCode, ErrorFrame, InferRequest, InferResponse};
use quorate_protocol::receipt::{EncodedPayload, JobKind};
use quorate_protocol::tlog;
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::{Committed, JobParams, run_committed};

use crate::audit::{AuditLog, HEAD_INTERVAL_SECS, Leader};
use crate::clock::unix_now;
use crate::mesh::config::LogReplies;
use crate::mesh::inline_cost::InlineCost;
#[cfg(feature = "test-util")]
use crate::mesh::misbehave::Misbehaviour;
use crate::mesh::models::Models;

/// Reads the governance of the roster in use (§10.6); a roster reload may change it, so it
/// is read for every request.
pub type GovernanceView = Arc<dyn Fn() -> Governance + Send + Sync>;

/// Attested inference for the mesh.
pub struct InferService {
    key: Arc<SecretKey>,
    audit: Arc<AuditLog>,
    models: Arc<Models>,
    governance: GovernanceView,
    /// How replies prove inclusion (§18.11.3).
    replies: LogReplies,
    /// Whether plain inferences are signed by their group commit (§12.4.2).
    group_signing: bool,
    promises: PromiseWindow,
    /// What one job of each model cost lately; see [`Self::runs_inline`].
    costs: HashMap<[u8; 32], InlineCost>,
    /// Test harness only: wait this long before answering.
    #[cfg(feature = "test-util")]
    test_delay: Duration,
    /// Test harness only: lie as configured (§14.8).
    #[cfg(feature = "test-util")]
    pub(crate) misbehave: Option<Misbehaviour>,
    /// Test harness only: leave receipts out of the audit log.
    #[cfg(feature = "test-util")]
    pub(crate) omit_from_log: bool,
}

/// A job computed, not yet in the audit log: signed, or to be signed by the commit that
/// logs it (§12.4.2).
pub struct Signed {
    outputs: Vec<quorate_protocol::tensor::Tensor>,
    output_salts: Option<Vec<[u8; SALT_LEN]>>,
    receipt: Attestation,
    issued_at: u64,
}

/// A job's receipt, or its payload when the audit log's commit is to sign it.
enum Attestation {
    Receipt(Vec<u8>),
    Payload(EncodedPayload),
}

/// The window one promise covers: the head interval (§18.11.3).
pub const PROMISE_WINDOW_SECS: u64 = HEAD_INTERVAL_SECS;
/// Seconds from the end of a promise's window to its deadline: the head interval, plus one
/// second for the head's signing and one for rounding to whole seconds (§18.11.3).
pub const PROMISE_GRACE_SECS: u64 = HEAD_INTERVAL_SECS + 2;

/// The promise of the current window (§18.6), signed once and shared by every reply whose
/// receipt falls in it.
#[derive(Default)]
struct PromiseWindow {
    current: std::sync::Mutex<Option<(tlog::Promise, Vec<u8>)>>,
}

impl PromiseWindow {
    /// The signed promise covering a receipt issued at `issued_at`.
    fn covering(&self, issued_at: u64, key: &SecretKey) -> Result<Vec<u8>, tlog::TlogError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((p, bytes)) = current.as_ref()
            && p.covers(issued_at)
        {
            return Ok(bytes.clone());
        }
        let from = issued_at - issued_at % PROMISE_WINDOW_SECS;
        let p = tlog::Promise {
            log_id: key.public_key().key_id(),
            from,
            until: from + PROMISE_WINDOW_SECS,
            deadline: from + PROMISE_WINDOW_SECS + PROMISE_GRACE_SECS,
        };
        let bytes = p.sign(key)?;
        *current = Some((p, bytes.clone()));
        Ok(bytes)
    }
}

impl InferService {
    /// A service signing with `key` into `audit`, serving `models`, refusing verified jobs
    /// outside the governance `governance` reads.
    pub fn new(
        key: Arc<SecretKey>,
        audit: Arc<AuditLog>,
        models: Arc<Models>,
        governance: GovernanceView,
        replies: LogReplies,
    ) -> Self {
        if replies == LogReplies::Inclusion {
            audit.prove_in_replies(key.clone());
        }
        let costs = models
            .providers()
            .map(|(digest, _)| (digest, InlineCost::default()))
            .collect();
        Self {
            key,
            audit,
            models,
            governance,
            replies,
            group_signing: true,
            promises: PromiseWindow::default(),
            costs,
            #[cfg(feature = "test-util")]
            test_delay: Duration::ZERO,
            #[cfg(feature = "test-util")]
            misbehave: None,
            #[cfg(feature = "test-util")]
            omit_from_log: false,
        }
    }

    /// Test harness only: the same service, waiting `delay` before each answer and lying as
    /// `misbehave` says (§14.8).
    #[cfg(feature = "test-util")]
    pub fn with_test_behaviour(
        self,
        delay: Duration,
        misbehave: Option<Misbehaviour>,
        omit_from_log: bool,
    ) -> Self {
        Self {
            test_delay: delay,
            misbehave,
            omit_from_log,
            ..self
        }
    }

    /// Whether plain inferences are signed by their group commit (§12.4.2, the node's
    /// `sign_in_groups`; on unless turned off here).
    pub fn signing_in_groups(mut self, on: bool) -> Self {
        self.group_signing = on;
        self
    }

    /// The model a request names, or `unknown_model`.
    pub fn model(&self, digest: &[u8; 32]) -> Result<Arc<LoadedModel>, ErrorFrame> {
        self.models.onnx(digest)
    }

    /// §10.6: a verified job (a request binding a policy digest) runs only under a policy the
    /// current roster grants for the model; `not_allowed` otherwise. Plain jobs pass.
    pub fn check_governance(&self, req: &InferRequest) -> Result<(), ErrorFrame> {
        let Some(digest) = &req.policy else {
            return Ok(());
        };
        (self.governance)()
            .allows_digest(&req.model, digest)
            .map_err(|e| {
                ErrorFrame::new(
                    ErrorCode::NotAllowed,
                    format!("verified job refused: {e}; the roster authority decides which policies a model may use"),
                )
            })
    }

    /// Whether a request for `model` may be computed on an async runtime thread rather than
    /// handed to the blocking pool (§12.3): only when the model's recent runs, commitments and
    /// signature were quick ([`InlineCost`]). A model not yet run, or a slow one, goes to the
    /// pool.
    pub fn runs_inline(&self, model: &[u8; 32]) -> bool {
        #[cfg(feature = "test-util")]
        if !self.test_delay.is_zero() {
            return false;
        }
        self.costs.get(model).is_some_and(InlineCost::is_quick)
    }

    /// Runs one request, commits and signs its receipt: the CPU part of a job, without the
    /// audit log. Blocking unless [`Self::runs_inline`] says the model is quick.
    pub fn compute(&self, model: &LoadedModel, req: InferRequest) -> Result<Signed, ErrorFrame> {
        #[cfg(feature = "test-util")]
        std::thread::sleep(self.test_delay);
        let started = Instant::now();
        let salts = req.input_salts;
        let ordered_names: Vec<String> = req.inputs.iter().map(|t| t.name().to_string()).collect();
        let checked = model
            .check_inputs(req.inputs)
            .map_err(|e| ErrorFrame::new(ErrorCode::InvalidInput, e.to_string()))?;
        // Keep each input's salt with it through the reordering to declaration order.
        let inputs: Vec<Committed> = checked
            .into_iter()
            .map(|t| {
                let i = ordered_names
                    .iter()
                    .position(|n| n == t.name())
                    .unwrap_or(0);
                Committed {
                    salt: salts.as_ref().and_then(|s| s.get(i).copied()),
                    tensor: t,
                }
            })
            .collect();
        let job = JobParams {
            job_id: req.job_id,
            nonce: req.nonce,
            kind: req.kind,
            salted: salts.is_some(),
            previous: req.previous,
            policy: req.policy,
        };
        let internal = |e: anyhow::Error| ErrorFrame::new(ErrorCode::Internal, format!("{e:#}"));
        let attested = run_committed(model, inputs, &job, unix_now()).map_err(internal)?;
        // Test harness only (§14.8): a misbehaving node lies about what it computed.
        #[cfg(feature = "test-util")]
        let attested = {
            let mut attested = attested;
            if let Some(m) = self
                .misbehave
                .as_ref()
                .filter(|m| m.applies_to(&model.digest))
            {
                m.tamper(&mut attested);
            }
            attested
        };
        // §12.4.2: the receipt of a plain inference is signed by the commit that logs it,
        // with those of the other jobs that commit carries; a verified job's, a stage's and
        // any receipt of a node proving inclusion in its replies are signed here, alone.
        let batchable = self.group_signing
            && self.replies == LogReplies::Promise
            && job.kind == JobKind::Infer
            && job.policy.is_none()
            && job.previous.is_none();
        let receipt = if batchable {
            attested.payload.encode().map(Attestation::Payload)
        } else {
            attested.payload.sign(&self.key).map(Attestation::Receipt)
        }
        .map_err(|e| internal(e.into()))?;
        self.note_cost(&model.digest, started.elapsed());
        Ok(Signed {
            output_salts: job
                .salted
                .then(|| attested.outputs.iter().filter_map(|c| c.salt).collect()),
            outputs: attested.outputs.into_iter().map(|c| c.tensor).collect(),
            receipt,
            issued_at: attested.payload.issued_at,
        })
    }

    /// Notes what one job of `model` cost (see [`InlineCost`]).
    fn note_cost(&self, model: &[u8; 32], took: Duration) {
        if let Some(cost) = self.costs.get(model) {
            cost.note(took);
        }
    }

    /// The rest of a job after [`Self::compute`]: the receipt made durable, and proved to be
    /// in the log (§12.4, §18.11.3); the reply may leave once this returns. `leader` says
    /// who leads the commit if none is under way: this thread only for a job alone in the
    /// node (§12.3).
    pub async fn finish(
        &self,
        signed: Signed,
        leader: Leader,
    ) -> Result<InferResponse, ErrorFrame> {
        let (receipt, promise) = self.log(signed.receipt, signed.issued_at, leader).await?;
        Ok(InferResponse {
            output_salts: signed.output_salts,
            outputs: signed.outputs,
            receipt,
            promise,
        })
    }

    /// Makes the receipt durable before the reply leaves (§12.4) and proves it is in the log
    /// (§18.11.3): the receipt with its inclusion receipt in header 394, or the receipt as
    /// signed and a promise.
    async fn log(
        &self,
        receipt: Attestation,
        issued_at: u64,
        leader: Leader,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), ErrorFrame> {
        #[cfg(feature = "test-util")]
        let omit = self.omit_from_log;
        #[cfg(not(feature = "test-util"))]
        let omit = false;
        let internal = |e: String| ErrorFrame::new(ErrorCode::Internal, e);
        let receipt = match receipt {
            Attestation::Payload(payload) if !omit => {
                let receipt = self
                    .audit
                    .append_payload_async(payload, self.key.clone(), leader)
                    .await?;
                let promise = self
                    .promises
                    .covering(issued_at, &self.key)
                    .map_err(|e| internal(e.to_string()))?;
                return Ok((receipt, Some(promise)));
            }
            Attestation::Payload(payload) => payload
                .sign(&self.key)
                .map_err(|e| internal(e.to_string()))?,
            Attestation::Receipt(receipt) => receipt,
        };
        match self.replies {
            LogReplies::Inclusion => {
                let inclusion = if omit {
                    None
                } else {
                    self.audit.append_async(&receipt, true, leader).await?
                };
                let Some(inclusion) = inclusion else {
                    return Ok((receipt, None));
                };
                let proved = tlog::attach_inclusion_receipts(&receipt, &[inclusion])
                    .map_err(|e| internal(e.to_string()))?;
                Ok((proved, None))
            }
            LogReplies::Promise => {
                if !omit {
                    self.audit.append_async(&receipt, false, leader).await?;
                }
                let promise = self
                    .promises
                    .covering(issued_at, &self.key)
                    .map_err(|e| internal(e.to_string()))?;
                Ok((receipt, Some(promise)))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mesh::client::fresh_request;
    use crate::mesh::inline_cost::INLINE_MAX;
    use quorate_protocol::audit_log::scan;
    use quorate_protocol::tensor::Tensor;

    fn service(dir: &std::path::Path) -> (InferService, Arc<LoadedModel>) {
        let (models, model, audit) = crate::test_support::mlp_served(dir);
        let service = InferService::new(
            Arc::new(SecretKey::from_seed(&[3; 32])),
            Arc::new(audit),
            models,
            Arc::new(Governance::default),
            LogReplies::Promise,
        );
        (service, model)
    }

    /// A model goes to the async threads only once its jobs are known to be quick, and
    /// leaves them when they turn slow (§12.3).
    #[test]
    fn only_quick_models_run_inline() {
        let dir = tempfile::tempdir().unwrap();
        let (service, model) = service(dir.path());
        assert!(!service.runs_inline(&model.digest), "not run yet");
        assert!(!service.runs_inline(&[0; 32]), "not served");
        let x = Tensor::from_f32("features", vec![1, 30], &[0.5; 30]).unwrap();
        let req = fresh_request(model.digest, vec![x], None).unwrap();
        service.compute(&model, req).unwrap();
        let cost = service.costs[&model.digest].nanos();
        assert_eq!(
            service.runs_inline(&model.digest),
            cost < INLINE_MAX.as_nanos() as u64
        );
        service.note_cost(&model.digest, Duration::from_micros(10));
        for _ in 0..4 {
            service.note_cost(&model.digest, Duration::from_millis(20));
        }
        assert!(!service.runs_inline(&model.digest), "slow runs move it off");
    }

    /// `finish` returns only once the receipt is durable in the audit log, with the promise
    /// of its window.
    #[test]
    fn finish_makes_the_receipt_durable_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (service, model) = service(dir.path());
        let x = Tensor::from_f32("features", vec![1, 30], &[0.25; 30]).unwrap();
        let req = fresh_request(model.digest, vec![x], None).unwrap();
        let signed = service.compute(&model, req).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = rt.block_on(service.finish(signed, Leader::Pool)).unwrap();
        assert!(response.promise.is_some());
        let log = scan(&std::fs::read(dir.path().join("audit.qlog")).unwrap()).unwrap();
        assert_eq!(log.records, vec![response.receipt]);
    }
}
