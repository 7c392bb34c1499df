//! `quorate node` (§12): serves models over QUIC to the members of a signed roster.
//!
//! Every request is decoded strictly, validated against the model before anything runs, and
//! answered with a typed error if it is bad; nothing a peer sends can take the node down.
//! Every receipt is appended to the audit log and fsynced before the reply leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use quorate_crypto::tensor_digest::Digest32;
use quorate_crypto::{PublicKey, SecretKey};
use quorate_protocol::messages::{
    ErrorCode, ErrorFrame, HealthInfo, InferRequest, InferResponse, Request, Response,
};
use quorate_protocol::roster::Roster;

use crate::audit::AuditLog;
use crate::clock::unix_now;
use crate::files::{load_public_key, load_secret_key};
use crate::mesh::config::NodeConfig;
use crate::mesh::misbehave::{Misbehaviour, Mode};
use crate::mesh::reload::{RosterKeeper, read_roster_file};
use quorate_runtime::LoadedModel;
use quorate_runtime::attest::{Committed, JobParams, run_committed};
use quorate_transport::{TlsIdentity, TransportSettings, bind_server};

/// Everything a running node holds.
pub struct NodeState {
    /// Its roster name.
    pub name: String,
    key: SecretKey,
    /// Models by SHA-256.
    pub models: HashMap<Digest32, Arc<LoadedModel>>,
    audit: AuditLog,
    in_flight: AtomicU64,
    capacity: u64,
    max_input_elements: u64,
    shutting_down: AtomicBool,
    test_delay: Duration,
    misbehave: Option<Misbehaviour>,
    /// Per-job SecAgg state of private ensembles (§15.3).
    pub(crate) ensembles: crate::mesh::ensemble::MemberJobs,
    /// Test-only ensemble behaviour.
    pub(crate) ensemble_hooks: crate::mesh::ensemble::TestHooks,
    /// Encrypted inference: qlinear models and server keys (§16).
    pub fhe: Arc<crate::fhe::service::FheService>,
    /// The roster in use and its reload rules (§10.3).
    pub roster: Arc<RosterKeeper>,
}

/// One taken request slot; released however the request ends.
struct InFlight(Arc<NodeState>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
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
        let mut models = HashMap::new();
        let mut misbehave_only = None;
        let mut entries: Vec<_> = std::fs::read_dir(&cfg.models)
            .with_context(|| format!("cannot read models folder {}", cfg.models.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
            .collect();
        entries.sort();
        for path in entries {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let (model, passed_over) =
                LoadedModel::with_providers(&bytes, cfg.intra_threads, &providers)
                    .with_context(|| format!("model {}", path.display()))?;
            for why in passed_over {
                eprintln!(
                    "quorate node {}: {}: provider passed over: {why}",
                    cfg.name,
                    path.display()
                );
            }
            eprintln!(
                "quorate node {}: serving {} sha256:{} on {}",
                cfg.name,
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                hex::encode(model.digest),
                model.provider
            );
            if cfg.test_misbehave_model.as_deref() == path.file_name().and_then(|n| n.to_str()) {
                misbehave_only = Some(model.digest);
            }
            models.insert(model.digest, Arc::new(model));
        }
        let fhe = crate::fhe::service::FheService::load(&cfg.models, &cfg.name, cfg.fhe_max_keys)?;
        let (audit, n) = AuditLog::open(&cfg.audit_log)?;
        eprintln!(
            "quorate node {}: audit log {} holds {n} receipts",
            cfg.name,
            cfg.audit_log.display()
        );
        let roster = RosterKeeper::new(
            &cfg.name,
            key.public_key(),
            admin,
            &cfg.roster,
            roster,
            roster_bytes,
        );
        Ok(Self {
            name: cfg.name.clone(),
            key,
            models,
            audit,
            in_flight: AtomicU64::new(0),
            capacity: cfg.max_concurrent,
            max_input_elements: cfg.max_input_elements,
            shutting_down: AtomicBool::new(false),
            test_delay: Duration::from_millis(cfg.test_delay_ms),
            misbehave: cfg
                .test_misbehave
                .as_deref()
                .map(Mode::parse)
                .transpose()?
                .map(|m| Misbehaviour::new(m, misbehave_only)),
            ensembles: crate::mesh::ensemble::MemberJobs::new(),
            ensemble_hooks: crate::mesh::ensemble::TestHooks {
                exit_at_round: cfg.test_exit_at_round,
                tamper_masked: cfg.test_tamper_masked.clone(),
            },
            fhe: Arc::new(fhe),
            roster: Arc::new(roster),
        })
    }

    /// Answers one request frame; never fails, every problem is a typed error response.
    pub async fn handle(self: Arc<Self>, _peer: PublicKey, bytes: Vec<u8>) -> Vec<u8> {
        // §10.3: no request is served under an expired roster, nor by a node the current
        // roster no longer lists with its key.
        if let Some(why) = self.roster.refusal(unix_now()) {
            return Response::Error(ErrorFrame::new(ErrorCode::NoValidRoster, why))
                .encode()
                .unwrap_or_default();
        }
        let request = Request::decode(&bytes);
        // Test-only (§14 harness): a misbehaving node may answer with other bytes entirely.
        let lie = match (&self.misbehave, &request) {
            (Some(m), Ok(Request::Infer(r))) if m.applies_to(&r.model) => m.replace_response(),
            _ => None,
        };
        if let Some(lie) = lie {
            return lie;
        }
        let response = match request {
            Err(e) => Response::Error(ErrorFrame::new(ErrorCode::BadRequest, e.to_string())),
            Ok(Request::Health) => Response::Health(self.health()),
            Ok(Request::Infer(req)) => match self.clone().infer(req).await {
                Ok(r) => Response::Infer(r),
                Err(e) => Response::Error(e),
            },
            Ok(Request::Fhe(req)) => match self.clone().fhe(req).await {
                Ok(r) => Response::Fhe(r),
                Err(e) => Response::Error(e),
            },
            Ok(req) => crate::mesh::ensemble::dispatch(self.clone(), req).await,
        };
        let encoded = response.encode().unwrap_or_else(|e| {
            Response::Error(ErrorFrame::new(ErrorCode::Internal, e.to_string()))
                .encode()
                .unwrap_or_default()
        });
        if let (Some(m), Response::Infer(_)) = (&self.misbehave, &response) {
            m.remember_response(&encoded);
        }
        encoded
    }

    /// Refuses new work once shutdown began (§12.5).
    pub(crate) fn accepting(&self) -> Result<(), ErrorFrame> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ErrorFrame::new(
                ErrorCode::ShuttingDown,
                "node is shutting down",
            ));
        }
        Ok(())
    }

    /// This node's identity key.
    pub(crate) fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// A copy of the identity key (for a SecAgg client, which owns its key).
    pub(crate) fn clone_key(&self) -> anyhow::Result<SecretKey> {
        Ok(SecretKey::from_pem(&self.key.to_pem()?)?)
    }

    /// Appends a receipt to the audit log (§12.4).
    pub(crate) fn append_audit(&self, receipt: &[u8]) -> anyhow::Result<()> {
        self.audit.append(receipt)
    }

    fn health(&self) -> HealthInfo {
        let mut models: Vec<(Digest32, String)> = self
            .models
            .iter()
            .map(|(d, m)| (*d, m.provider.clone()))
            .chain(self.fhe.models.keys().map(|d| (*d, "tfhe".to_string())))
            .collect();
        models.sort();
        HealthInfo {
            version: format!("quorate {}", env!("CARGO_PKG_VERSION")),
            models: models.iter().map(|(d, _)| *d).collect(),
            providers: models.into_iter().map(|(_, p)| p).collect(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            capacity: self.capacity,
        }
    }

    async fn infer(self: Arc<Self>, req: InferRequest) -> Result<InferResponse, ErrorFrame> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ErrorFrame::new(
                ErrorCode::ShuttingDown,
                "node is shutting down",
            ));
        }
        let busy = self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity;
        let slot = InFlight(self.clone());
        if busy {
            return Err(ErrorFrame::new(
                ErrorCode::Busy,
                format!("all {} slots busy", self.capacity),
            ));
        }
        let model = self.models.get(&req.model).cloned().ok_or_else(|| {
            ErrorFrame::new(
                ErrorCode::UnknownModel,
                format!("no model sha256:{}", hex::encode(req.model)),
            )
        })?;
        tokio::task::spawn_blocking(move || {
            let state = &slot.0;
            std::thread::sleep(state.test_delay);
            state.infer_blocking(&model, req)
        })
        .await
        .unwrap_or_else(|_| {
            Err(ErrorFrame::new(
                ErrorCode::Internal,
                "inference task failed",
            ))
        })
    }

    /// Encrypted inference (§16), on a blocking thread under a request slot.
    async fn fhe(
        self: Arc<Self>,
        req: quorate_protocol::fhe::FheRequest,
    ) -> Result<quorate_protocol::fhe::FheResponse, ErrorFrame> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ErrorFrame::new(
                ErrorCode::ShuttingDown,
                "node is shutting down",
            ));
        }
        let busy = self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity;
        let slot = InFlight(self.clone());
        if busy {
            return Err(ErrorFrame::new(
                ErrorCode::Busy,
                format!("all {} slots busy", self.capacity),
            ));
        }
        #[cfg(feature = "fhe")]
        {
            tokio::task::spawn_blocking(move || {
                let state = &slot.0;
                state.fhe.handle(req, &state.key, &state.audit)
            })
            .await
            .unwrap_or_else(|_| {
                Err(ErrorFrame::new(
                    ErrorCode::Internal,
                    "encrypted inference task failed",
                ))
            })
        }
        #[cfg(not(feature = "fhe"))]
        {
            drop((slot, req));
            Err(ErrorFrame::new(
                ErrorCode::UnknownModel,
                "this node was built without the fhe feature",
            ))
        }
    }

    fn infer_blocking(
        &self,
        model: &LoadedModel,
        req: InferRequest,
    ) -> Result<InferResponse, ErrorFrame> {
        if let Some(t) = req
            .inputs
            .iter()
            .find(|t| t.len() as u64 > self.max_input_elements)
        {
            return Err(ErrorFrame::new(
                ErrorCode::TooLarge,
                format!(
                    "input {:?} has {} elements; this node accepts at most {}",
                    t.name(),
                    t.len(),
                    self.max_input_elements
                ),
            ));
        }
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
        let mut attested = run_committed(model, inputs, &job, unix_now()).map_err(internal)?;
        if let Some(m) = self
            .misbehave
            .as_ref()
            .filter(|m| m.applies_to(&model.digest))
        {
            m.tamper(&mut attested);
        }
        let receipt = attested
            .payload
            .sign(&self.key)
            .map_err(|e| internal(e.into()))?;
        // §12.4: durable before the reply leaves.
        self.audit.append(&receipt).map_err(internal)?;
        Ok(InferResponse {
            output_salts: job
                .salted
                .then(|| attested.outputs.iter().filter_map(|c| c.salt).collect()),
            outputs: attested.outputs.into_iter().map(|c| c.tensor).collect(),
            receipt,
        })
    }
}

/// Runs a node until SIGINT or SIGTERM, then drains in-flight requests and exits.
pub async fn serve(cfg: NodeConfig) -> anyhow::Result<()> {
    let state = Arc::new(NodeState::load(&cfg)?);
    let identity = Arc::new(TlsIdentity::from_secret_key(&state.key)?);
    let pinned = state.roster.pinned().clone();
    let settings = TransportSettings {
        request_timeout: Duration::from_secs(cfg.request_timeout_secs),
        max_request_len: cfg.max_request_bytes,
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
            eprintln!(
                "quorate node {}: cannot handle SIGHUP ({e}); the roster is reloaded only when its file changes",
                state.name
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
    shutdown_signal().await;
    eprintln!(
        "quorate node {}: shutting down, finishing in-flight requests",
        state.name
    );
    state.shutting_down.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while state.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give replies already computed a moment to leave before closing connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    endpoint.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    serving.abort();
    watching.abort();
    eprintln!("quorate node {}: stopped", state.name);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
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
