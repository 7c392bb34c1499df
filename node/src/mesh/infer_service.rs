//! The infer service (§11.3): run a model on checked inputs, commit and sign, and make the
//! receipt durable before the reply leaves (§12.4). Handed what it needs — the key, the audit
//! log, the models, a view of the current roster's governance — so it reaches into nothing
//! else of the node.

use std::sync::Arc;
#[cfg(feature = "test-util")]
use std::time::Duration;

use quorate_crypto::SecretKey;
use quorate_protocol::governance::Governance;
use quorate_protocol::messages::{ErrorCode, ErrorFrame, InferRequest, InferResponse};
use quorate_protocol::tlog;
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::{Committed, JobParams, run_committed};

use crate::audit::{AuditLog, HEAD_INTERVAL_SECS};
use crate::clock::unix_now;
use crate::mesh::config::LogReplies;
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
    promises: PromiseWindow,
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
        Self {
            key,
            audit,
            models,
            governance,
            replies,
            promises: PromiseWindow::default(),
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

    /// Runs one request (blocking: call it off the async threads).
    pub fn handle(
        &self,
        model: &LoadedModel,
        req: InferRequest,
    ) -> Result<InferResponse, ErrorFrame> {
        #[cfg(feature = "test-util")]
        std::thread::sleep(self.test_delay);
        let salts = req.input_salts.clone();
        let ordered_names: Vec<String> = req.inputs.iter().map(|t| t.name().to_string()).collect();
        let checked = model
            .check_inputs(req.inputs.clone())
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
            nonce: req.nonce.clone(),
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
        let receipt = attested
            .payload
            .sign(&self.key)
            .map_err(|e| internal(e.into()))?;
        let (receipt, promise) = self.log(receipt, attested.payload.issued_at)?;
        Ok(InferResponse {
            output_salts: job
                .salted
                .then(|| attested.outputs.iter().filter_map(|c| c.salt).collect()),
            outputs: attested.outputs.into_iter().map(|c| c.tensor).collect(),
            receipt,
            promise,
        })
    }

    /// Makes the receipt durable before the reply leaves (§12.4) and proves it is in the log
    /// (§18.11.3): the receipt with its inclusion receipt in header 394, or the receipt as
    /// signed and a promise.
    fn log(
        &self,
        receipt: Vec<u8>,
        issued_at: u64,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), ErrorFrame> {
        #[cfg(feature = "test-util")]
        let omit = self.omit_from_log;
        #[cfg(not(feature = "test-util"))]
        let omit = false;
        let internal = |e: String| ErrorFrame::new(ErrorCode::Internal, e);
        match self.replies {
            LogReplies::Inclusion => {
                let inclusion = if omit {
                    None
                } else {
                    self.audit.append_proved(&receipt)?
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
                    self.audit.append(&receipt)?;
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
