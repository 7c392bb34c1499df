//! `quorate node` (§12): serves models over QUIC to the members of a signed roster.
//!
//! Every request is decoded strictly, validated against the model before anything runs, and
//! answered with a typed error if it is bad; nothing a peer sends can take the node down.
//! Every receipt is appended to the audit log and fsynced before the reply leaves.

use crate::metrics::{self, Metrics, Sample, Sampled, request_kind};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{PublicKey, SecretKey};
use quorate_protocol::ensemble::{EnsembleInput, EnsembleReply, EnsembleRound, EnsembleStart};
use quorate_protocol::fhe::{FheRequest, FheResponse};
use quorate_protocol::messages::{
    ErrorCode, ErrorFrame, HealthInfo, InferRequest, InferResponse, MessageError, Request, Response,
};
use quorate_protocol::roster::Roster;
use quorate_runtime::LoadedModel;

use crate::audit::{AuditLog, Leader};
use crate::clock::unix_now;
use crate::fhe::service::FheService;
use crate::files::{load_public_key, load_secret_key};
use crate::mesh::admission::Admission;
use crate::mesh::config::NodeConfig;
use crate::mesh::ensemble::{EnsembleService, RoundNow};
use crate::mesh::infer_service::{GovernanceView, InferService};
use crate::mesh::log_service::LogService;
use crate::mesh::models::Models;
use crate::mesh::reload::{RosterKeeper, read_roster_file};
use quorate_transport::{TlsIdentity, TransportSettings, bind_server};

/// Frames up to this size are decoded on the network thread that received them.
const DECODE_INLINE_MAX: usize = 64 << 10;

/// Everything a running node holds: its identity, roster, admission control and one service
/// per job family, each handed only what it needs.
pub struct NodeState {
    /// Its roster name.
    pub name: String,
    key: Arc<SecretKey>,
    /// The ONNX models it serves.
    pub models: Arc<Models>,
    admission: Arc<Admission>,
    infer: Arc<InferService>,
    ensemble: Arc<EnsembleService>,
    /// Log requests and witnessed peer heads (§18.12).
    pub log: Arc<LogService>,
    /// Encrypted inference: qlinear models and server keys (§16).
    pub fhe: Arc<FheService>,
    // Handed to the FHE service and sampled by the metrics; the other services hold their
    // own handle.
    audit: Arc<AuditLog>,
    /// The roster in use and its reload rules (§10.3).
    pub roster: Arc<RosterKeeper>,
    /// What operators see (§12.7).
    pub metrics: Arc<Metrics>,
}

impl NodeState {
    /// Loads key, roster, models and audit log as the configuration says.
    pub fn load(cfg: &NodeConfig) -> anyhow::Result<Self> {
        let key = load_secret_key(&cfg.key)?;
        let admin = load_public_key(&cfg.admin)?;
        let roster_bytes = read_roster_file(&cfg.roster)
            .map_err(|e| anyhow::anyhow!("cannot load the roster: {e}"))?;
        let roster = Roster::verify(&roster_bytes, &admin, unix_now())
            .with_context(|| format!("roster {}", cfg.roster.display()))?;
        let me = roster
            .by_name(&cfg.name)
            .with_context(|| format!("node {:?} is not in the roster", cfg.name))?;
        anyhow::ensure!(
            me.key == key.public_key(),
            "the roster lists a different key for {:?} than {} holds",
            cfg.name,
            cfg.key.display()
        );
        let providers = cfg.provider_list()?;
        let models = Models::load(&cfg.models, &cfg.name, cfg.intra_threads, &providers)?;
        let models = Arc::new(models);
        let fhe = FheService::load(&cfg.models, &cfg.name, cfg.fhe_max_keys)?;
        let (audit, n) = AuditLog::open(&cfg.audit_log)?;
        tracing::info!(
            node = %cfg.name,
            receipts = n,
            "audit log {} holds {n} receipt{}",
            cfg.audit_log.display(),
            if n == 1 { "" } else { "s" }
        );
        let audit = Arc::new(audit);
        // §18.11.2: leaves are proved against the heads signed before a restart.
        let adopted = audit.adopt_head_history();
        tracing::debug!(node = %cfg.name, heads = adopted, "head history read back");
        if let Ok(kept) = std::fs::read(audit.head_path())
            && !audit.adopt_kept_head(&key, &kept)
        {
            tracing::warn!(node = %cfg.name, "{} is not a head of this log; ignored", audit.head_path().display());
        }
        let key = Arc::new(key);
        let roster = Arc::new(RosterKeeper::new(
            &cfg.name,
            key.public_key(),
            admin,
            &cfg.roster,
            roster,
            roster_bytes,
        ));
        let governance: GovernanceView = {
            let roster = roster.clone();
            Arc::new(move || roster.governance())
        };
        let infer = InferService::new(
            key.clone(),
            audit.clone(),
            models.clone(),
            governance,
            cfg.log_replies,
        )
        .signing_in_groups(cfg.sign_in_groups);
        // Test harness only: the `test_*` keys exist in `test-util` builds alone.
        #[cfg(feature = "test-util")]
        let infer = crate::mesh::misbehave::configure_infer(infer, cfg)?;
        #[cfg(feature = "test-util")]
        let hooks = crate::mesh::misbehave::ensemble_hooks(cfg);
        #[cfg(not(feature = "test-util"))]
        let hooks = crate::mesh::ensemble::TestHooks::default();
        #[allow(unused_mut)]
        let mut log = LogService::new(key.clone(), audit.clone(), roster.clone());
        #[cfg(feature = "test-util")]
        {
            log.split_view_for = cfg.test_split_view_for.clone();
        }
        Ok(Self {
            log: Arc::new(log),
            name: cfg.name.clone(),
            infer: Arc::new(infer),
            ensemble: Arc::new(EnsembleService::new(
                key.clone(),
                audit.clone(),
                models.clone(),
                roster.clone(),
                hooks,
            )),
            admission: Arc::new(Admission::new(cfg.max_concurrent, cfg.max_input_elements)),
            metrics: Arc::new(Metrics::new(audit.fsync_histogram())),
            fhe: Arc::new(fhe),
            key,
            models,
            audit,
            roster,
        })
    }

    /// Answers one request frame from the authenticated `peer`; never fails, every problem is
    /// a typed error response.
    pub async fn handle(self: Arc<Self>, peer: PublicKey, bytes: Vec<u8>) -> Vec<u8> {
        // §10.3: no request is served under an expired roster, nor by a node the current
        // roster no longer lists with its key.
        let started = std::time::Instant::now();
        if let Some(why) = self.roster.refusal(unix_now()) {
            self.metrics.refused(ErrorCode::NoValidRoster);
            return Response::Error(ErrorFrame::new(ErrorCode::NoValidRoster, why))
                .encode()
                .unwrap_or_default();
        }
        // §17.8: decoding is bounded (§17.2), and a large frame is decoded off the network
        // threads so that it does not hold up the requests of other peers.
        let request = if bytes.len() > DECODE_INLINE_MAX {
            tokio::task::spawn_blocking(move || Request::decode(&bytes))
                .await
                .unwrap_or_else(|_| Err(MessageError("decoding task failed".into())))
        } else {
            Request::decode(&bytes)
        };
        // Test harness only (§14 harness): a misbehaving node may answer with other bytes
        // entirely.
        #[cfg(feature = "test-util")]
        let misbehave = self.infer.misbehave.as_ref();
        #[cfg(feature = "test-util")]
        if let Some(lie) = match (misbehave, &request) {
            (Some(m), Ok(Request::Infer(r))) if m.applies_to(&r.model) => m.replace_response(),
            _ => None,
        } {
            return lie;
        }
        let kind = request_kind(&request);
        // One arm per request kind, no catch-all: a new kind does not compile until it is
        // served. Every job kind goes through the one admission control.
        let response = match request {
            Err(e) => Response::Error(ErrorFrame::new(ErrorCode::BadRequest, e.to_string())),
            Ok(Request::Health) => Response::Health(self.health()),
            Ok(Request::Infer(req)) => {
                let job = self.admission.check_inputs(&req.inputs).and_then(|()| {
                    let model = self.infer.model(&req.model)?;
                    self.infer.check_governance(&req)?;
                    Ok((model, req))
                });
                self.infer_job(job)
                    .await
                    .map_or_else(Response::Error, Response::Infer)
            }
            Ok(Request::EnsembleStart(req)) => self
                .ensemble_start(peer, req)
                .await
                .map_or_else(Response::Error, Response::Ensemble),
            Ok(Request::EnsembleRound(req)) => self
                .ensemble_round(peer, req)
                .await
                .map_or_else(Response::Error, Response::Ensemble),
            Ok(Request::EnsembleInput(req)) => self
                .ensemble_input(peer, req)
                .await
                .map_or_else(Response::Error, Response::Ensemble),
            Ok(Request::Fhe(req)) => {
                let job = self.fhe_job(peer, req);
                self.admitted(job)
                    .await
                    .map_or_else(Response::Error, Response::Fhe)
            }
            // A log request costs at most one signature: no job slot, so monitors are
            // answered while the node is at capacity (§18.12).
            Ok(Request::Log(req)) => {
                let log = self.log.clone();
                tokio::task::spawn_blocking(move || log.handle(&peer, req))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ErrorFrame::new(ErrorCode::Internal, "log task failed"))
                    })
                    .map_or_else(Response::Error, Response::Log)
            }
        };
        let took = started.elapsed();
        self.metrics.observe(kind, &response, took);
        // §12.8: one event per request at debug; no job ids, digests or data at any level.
        tracing::debug!(
            kind,
            outcome = %metrics::outcome_name(&response),
            micros = took.as_micros() as u64,
            peer = %peer.key_id(),
            "request answered"
        );
        let encoded = response.encode().unwrap_or_else(|e| {
            Response::Error(ErrorFrame::new(ErrorCode::Internal, e.to_string()))
                .encode()
                .unwrap_or_default()
        });
        #[cfg(feature = "test-util")]
        if let (Some(m), Response::Infer(_)) = (misbehave, &response) {
            m.remember_response(&encoded);
        }
        encoded
    }

    /// Runs a job that passed its checks under a job slot, off the async threads (model runs,
    /// signatures, Shamir and TFHE all block).
    async fn admitted<T, F>(&self, job: Result<F, ErrorFrame>) -> Result<T, ErrorFrame>
    where
        F: FnOnce() -> Result<T, ErrorFrame> + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.admission.admit()?;
        let job = job?;
        tokio::task::spawn_blocking(move || {
            let answer = job();
            drop(slot);
            answer
        })
        .await
        .unwrap_or_else(|_| Err(ErrorFrame::new(ErrorCode::Internal, "job task failed")))
    }

    /// An inference job that passed its checks, under a job slot (§12.3): computed on this
    /// async thread when its model is quick (no hand-over to the blocking pool and back),
    /// in the blocking pool otherwise; then its receipt made durable without holding a
    /// thread (the group commit wakes this task, §12.4).
    async fn infer_job(
        &self,
        job: Result<(Arc<LoadedModel>, InferRequest), ErrorFrame>,
    ) -> Result<InferResponse, ErrorFrame> {
        let slot = self.admission.admit()?;
        let (model, req) = job?;
        let signed = if self.infer.runs_inline(&model.digest) {
            self.infer.compute(&model, req)?
        } else {
            let infer = self.infer.clone();
            tokio::task::spawn_blocking(move || infer.compute(&model, req))
                .await
                .unwrap_or_else(|_| Err(ErrorFrame::new(ErrorCode::Internal, "job task failed")))?
        };
        let leader = commit_leader(self.admission.in_flight());
        let answer = self.infer.finish(signed, leader).await;
        drop(slot);
        answer
    }

    /// Runs a quick job on this async thread under a job slot (§12.3), released on return.
    fn admitted_here<T>(&self, job: impl FnOnce() -> T) -> Result<T, ErrorFrame> {
        let _slot = self.admission.admit()?;
        Ok(job())
    }

    /// An ensemble start (§15.3) that passed its checks, under a job slot: answered on this
    /// async thread when its model and recent starts are quick, in the blocking pool otherwise.
    async fn ensemble_start(
        &self,
        peer: PublicKey,
        req: EnsembleStart,
    ) -> Result<EnsembleReply, ErrorFrame> {
        let ensemble = self.ensemble.clone();
        let model = self
            .admission
            .check_inputs(req.inputs.as_deref().unwrap_or_default())
            .and_then(|()| ensemble.prepare_start(&peer, &req));
        // A prepared start runs no model (§15.1).
        let quick = req.inputs.is_none() || self.infer.runs_inline(&req.model);
        match model {
            Ok(model) if quick && ensemble.runs_inline(0) => {
                self.admitted_here(|| ensemble.start(peer, &model, req))?
            }
            model => {
                self.admitted(model.map(|model| move || ensemble.start(peer, &model, req)))
                    .await
            }
        }
    }

    /// An ensemble round (§15.3) under a job slot: on this async thread when the round does no
    /// key agreement, secret sharing or disk write and its recent answers were quick, and its
    /// job is not busy with another request; in the blocking pool otherwise.
    async fn ensemble_round(
        &self,
        peer: PublicKey,
        req: EnsembleRound,
    ) -> Result<EnsembleReply, ErrorFrame> {
        let ensemble = self.ensemble.clone();
        let req = if ensemble.runs_inline(req.round) {
            match self.admitted_here(|| ensemble.try_round_now(&peer, req))? {
                RoundNow::Answered(answer) => return answer,
                RoundNow::Busy(req) => req,
            }
        } else {
            req
        };
        self.admitted(Ok(move || ensemble.round(&peer, req))).await
    }

    /// Round 2 of a prepared ensemble job with its input (§15.1, §15.3), under a job slot in
    /// the blocking pool: it runs the model, masks the output and makes the member receipt
    /// durable. The input is bounded before anything else looks at it.
    async fn ensemble_input(
        &self,
        peer: PublicKey,
        req: EnsembleInput,
    ) -> Result<EnsembleReply, ErrorFrame> {
        let ensemble = self.ensemble.clone();
        let job = self
            .admission
            .check_inputs(&req.inputs)
            .map(|()| move || ensemble.input(&peer, req));
        self.admitted(job).await
    }

    /// An encrypted-inference job (§16), or a refusal when built without TFHE.
    #[allow(clippy::type_complexity)]
    fn fhe_job(
        &self,
        peer: PublicKey,
        req: FheRequest,
    ) -> Result<impl FnOnce() -> Result<FheResponse, ErrorFrame> + Send + 'static, ErrorFrame> {
        #[cfg(feature = "fhe")]
        {
            let (fhe, key, audit) = (self.fhe.clone(), self.key.clone(), self.audit.clone());
            Ok(move || fhe.handle(&peer, req, &key, &audit))
        }
        #[cfg(not(feature = "fhe"))]
        {
            drop((peer, req));
            Err::<fn() -> Result<FheResponse, ErrorFrame>, _>(ErrorFrame::new(
                ErrorCode::UnknownModel,
                "this node was built without the fhe feature",
            ))
        }
    }

    /// Ensemble jobs this node holds state for (for tests).
    pub fn ensemble_jobs(&self) -> usize {
        self.ensemble.open_jobs()
    }

    fn health(&self) -> HealthInfo {
        let mut models: Vec<(Digest32, String)> = self
            .models
            .providers()
            .chain(self.fhe.models.keys().map(|d| (*d, "tfhe".to_string())))
            .collect();
        models.sort();
        HealthInfo {
            version: format!("quorate {}", env!("CARGO_PKG_VERSION")),
            models: models.iter().map(|(d, _)| *d).collect(),
            providers: models.into_iter().map(|(_, p)| p).collect(),
            in_flight: self.admission.in_flight(),
            capacity: self.admission.capacity(),
        }
    }
}

/// Runs a node until SIGINT or SIGTERM, then drains in-flight requests and exits.
pub async fn serve(cfg: NodeConfig) -> anyhow::Result<()> {
    crate::logging::init(cfg.log_format, cfg.log_level);
    let state = Arc::new(NodeState::load(&cfg)?);
    let identity = Arc::new(TlsIdentity::from_secret_key(&state.key)?);
    let pinned = state.roster.pinned().clone();
    let settings = TransportSettings {
        request_timeout: Duration::from_secs(cfg.request_timeout_secs),
        max_request_len: cfg.max_request_bytes,
        max_in_flight_bytes: cfg.max_in_flight_bytes,
        ..TransportSettings::default()
    };
    let endpoint = bind_server(cfg.listen, identity, pinned, settings)?;
    // §10.3: no new connection is accepted under an expired roster or by a revoked node.
    {
        let keeper = state.roster.clone();
        endpoint.set_admission(Arc::new(move || match keeper.refusal(unix_now()) {
            Some(why) => Err(why),
            None => Ok(()),
        }));
    }
    // SIGHUP reloads the roster (§12.1); the handler is installed before the node says it
    // is listening, so a SIGHUP never meets the default action (termination).
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                node = %state.name,
                "cannot handle SIGHUP ({e}); the roster is reloaded only when its file changes"
            );
            None
        }
    };
    let poll = (cfg.roster_reload_secs > 0).then(|| Duration::from_secs(cfg.roster_reload_secs));
    let watching = tokio::spawn(crate::mesh::reload::watch(
        state.roster.clone(),
        endpoint.clone(),
        poll,
        hangup,
    ));
    let _metrics_task = match cfg.metrics_listen {
        None => None,
        Some(listen) => {
            let sampled: Sampled = {
                let state = state.clone();
                Arc::new(move || {
                    let roster = state.roster.roster();
                    let left = i64::try_from(roster.expires_at).unwrap_or(i64::MAX)
                        - i64::try_from(unix_now()).unwrap_or(i64::MAX);
                    Sample {
                        in_flight: state.admission.in_flight(),
                        audit_bytes: state.audit.durable_len(),
                        roster_serial: roster.serial,
                        roster_expiry_secs: left,
                    }
                })
            };
            let (bound, task) = metrics::serve(listen, state.metrics.clone(), sampled).await?;
            // stderr: the first line on stdout is the readiness line below.
            tracing::info!(node = %state.name, "metrics on http://{bound}/metrics");
            Some(task)
        }
    };
    // §12.5: SIGINT and SIGTERM are caught from before the readiness line, so a node stopped
    // as soon as it is ready shuts down gracefully rather than being killed by the default
    // action.
    let stop = shutdown_signal();
    // §18.11.2: the first head is on disk before the node says it is ready, so `LOG.head`
    // exists even for a node killed before its first interval ends.
    {
        let state = state.clone();
        tokio::task::spawn_blocking(move || write_head(&state)).await?;
    }
    let addr = endpoint.local_addr()?;
    println!(
        "quorate node {} listening on {addr} with {} models",
        state.name,
        state.models.len()
    );
    let serving = {
        let endpoint = endpoint.clone();
        let state = state.clone();
        tokio::spawn(async move {
            endpoint
                .serve(move |peer, bytes| state.clone().handle(peer, bytes))
                .await
        })
    };
    let heads = tokio::spawn(sign_heads(state.clone()));
    let gossip = (cfg.gossip_secs > 0).then(|| {
        tokio::spawn(crate::mesh::log_service::gossip(
            state.log.clone(),
            state.name.clone(),
            Duration::from_secs(cfg.gossip_secs),
        ))
    });
    stop.await;
    tracing::info!(
        node = %state.name,
        in_flight = state.admission.in_flight(),
        "shutting down, finishing in-flight requests"
    );
    state.admission.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while state.admission.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give replies already computed a moment to leave before closing connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    endpoint.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    serving.abort();
    watching.abort();
    heads.abort();
    if let Some(g) = gossip {
        g.abort();
    }
    // A last head over everything logged, so the log's final state is signed (§18.11.2).
    write_head(&state);
    tracing::info!(node = %state.name, "stopped");
    Ok(())
}

/// How often a node with new leaves signs a tree head (§18.11.2).
const HEAD_INTERVAL: Duration = Duration::from_secs(crate::audit::HEAD_INTERVAL_SECS);

/// Signs a tree head every [`HEAD_INTERVAL`] while the audit log has new records.
async fn sign_heads(state: Arc<NodeState>) {
    let mut tick = tokio::time::interval(HEAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || write_head(&state)).await;
    }
}

/// Signs a head if the log grew since the last one and writes the latest head beside the log,
/// atomically, unless the file holds it already (one signed on request is written too); a
/// failure is logged and tried again at the next interval.
fn write_head(state: &NodeState) {
    match state.audit.head_to_keep(&state.key, unix_now()) {
        Ok(None) => {}
        Ok(Some((size, head))) => {
            let path = state.audit.head_path();
            match crate::files::write_atomic(&path, &head, 0o644) {
                Ok(()) => state.audit.head_kept(size),
                Err(e) => {
                    tracing::warn!(node = %state.name, "cannot write the tree head {}: {e:#}", path.display())
                }
            }
        }
        Err(e) => tracing::warn!(node = %state.name, "cannot sign a tree head: {e:#}"),
    }
}

/// Waits for SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// returned future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match streams {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Who leads the group commit of an inference job (§12.3). A job alone in the node
/// (`in_flight` counts its own slot) leads it on its own async thread, saving the hand-overs
/// to the blocking pool and back, when the runtime has another thread to serve the network
/// meanwhile. With other jobs in flight, or a runtime of one thread, the pool leads, so that
/// no request waits behind an `fdatasync`.
fn commit_leader(in_flight: u64) -> Leader {
    let spare_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.metrics().num_workers() > 1);
    if in_flight == 1 && spare_thread {
        Leader::Caller
    } else {
        Leader::Pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a job alone in the node, on a runtime with a thread to spare, leads its commit.
    #[test]
    fn a_lone_job_leads_its_commit_only_with_a_thread_to_spare() {
        let two = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        assert_eq!(two.block_on(async { commit_leader(1) }), Leader::Caller);
        assert_eq!(two.block_on(async { commit_leader(2) }), Leader::Pool);
        let one = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(one.block_on(async { commit_leader(1) }), Leader::Pool);
        let single = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(single.block_on(async { commit_leader(1) }), Leader::Pool);
        assert_eq!(commit_leader(1), Leader::Pool, "outside any runtime");
    }
}
