//! The mesh client for Python: `quorate_node`'s `MeshClient` and verified jobs (§11, §14), as
//! `quorate infer` runs them. Tensors cross as (name, dtype, shape, little-endian bytes), which
//! the package turns into numpy arrays.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};
use quorate_node::files::{load_public_key, load_secret_key, read_limited};
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_node::mesh::verified;
use quorate_protocol::ensemble::Mode;
use quorate_protocol::messages::InferRequest;
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::JobKind;
use quorate_protocol::roster::{Entry, MAX_ROSTER_LEN, Role, Roster};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_protocol::verified_job::VerifiedJob;
use serde_json::json;

use crate::MeshError;

/// A tensor as it crosses into or out of Python: name, dtype name, shape, little-endian data.
type RawTensor = (String, String, Vec<u64>, Vec<u8>);

/// What one inference returns: the verdict (JSON text), the accepted outputs, the accepted
/// receipt, every replica's (node name, receipt), and the evidence bundle when replicas
/// disagreed.
type InferResult = (
    String,
    Vec<RawTensor>,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    Option<Vec<u8>>,
);

fn mesh_err(e: impl std::fmt::Display) -> PyErr {
    MeshError::new_err(e.to_string())
}

fn anyhow_err(e: anyhow::Error) -> PyErr {
    MeshError::new_err(format!("{e:#}"))
}

fn to_tensor((name, dtype, shape, data): RawTensor) -> PyResult<Tensor> {
    let dt = DType::from_name(&dtype).ok_or_else(|| {
        MeshError::new_err(format!(
            "input {name:?}: dtype {dtype} is not one of float32, float64, int8, int16, int32, int64, uint8, bool"
        ))
    })?;
    Tensor::new(name, dt, shape, data).map_err(mesh_err)
}

fn from_tensor(t: &Tensor) -> RawTensor {
    (
        t.name().to_string(),
        t.dtype().name().to_string(),
        t.shape().to_vec(),
        t.data().to_vec(),
    )
}

/// A client on a mesh: its key, the roster it checked against the authority's key, and the
/// async runtime its connections live on.
#[pyclass(module = "quorate._native")]
pub struct NativeMesh {
    key: SecretKey,
    roster: Roster,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
}

impl NativeMesh {
    fn client(&self) -> anyhow::Result<MeshClient> {
        MeshClient::new(&self.key, self.roster.clone(), self.timeout)
    }

    fn request(&self, model: Digest32, inputs: Vec<RawTensor>) -> PyResult<InferRequest> {
        let inputs = inputs
            .into_iter()
            .map(to_tensor)
            .collect::<PyResult<Vec<_>>>()?;
        let random = |e: quorate_crypto::random::RandomError| mesh_err(e);
        let input_salts = inputs
            .iter()
            .map(|_| quorate_crypto::random::bytes::<SALT_LEN>().map_err(random))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(InferRequest {
            job_id: quorate_crypto::random::bytes().map_err(random)?,
            nonce: quorate_crypto::random::bytes::<32>()
                .map_err(random)?
                .to_vec(),
            kind: JobKind::Infer,
            model,
            inputs,
            input_salts: Some(input_salts),
            policy: None,
            previous: None,
        })
    }
}

#[pymethods]
impl NativeMesh {
    /// Loads the client's key, verifies the roster against the authority's key (as every
    /// `quorate` client command does) and starts the runtime.
    #[new]
    fn new(roster: PathBuf, admin: PathBuf, key: PathBuf, timeout: f64) -> PyResult<Self> {
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(MeshError::new_err(
                "timeout must be a positive number of seconds",
            ));
        }
        let key = load_secret_key(&key).map_err(anyhow_err)?;
        let admin = load_public_key(&admin).map_err(anyhow_err)?;
        let bytes = read_limited(&roster, MAX_ROSTER_LEN as u64).map_err(anyhow_err)?;
        let roster = Roster::verify(&bytes, &admin, quorate_node::clock::unix_now())
            .map_err(|e| MeshError::new_err(format!("roster {}: {e}", roster.display())))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(mesh_err)?;
        Ok(Self {
            key,
            roster,
            rt,
            timeout: Duration::from_secs_f64(timeout),
        })
    }

    /// The nodes of the roster: (name, role, key id, addresses).
    fn nodes(&self) -> Vec<(String, String, String, Vec<String>)> {
        self.roster
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.role.name().to_string(),
                    e.key.key_id().to_string(),
                    e.addresses.clone(),
                )
            })
            .collect()
    }

    /// A private ensemble (`quorate ensemble`, §15): `members` as (node name, model digest or
    /// None for the node's own model); `local_models` the digests of the .onnx files at hand,
    /// which break a tie when a node serves several models of its own.
    #[pyo3(signature = (members, local_models, inputs, mode, classes, threshold, dp))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of `Mesh.ensemble`
    fn ensemble(
        &self,
        py: Python<'_>,
        members: Vec<(String, Option<[u8; 32]>)>,
        local_models: Vec<[u8; 32]>,
        inputs: Vec<RawTensor>,
        mode: String,
        classes: u32,
        threshold: Option<u32>,
        dp: Option<(f64, f64)>,
    ) -> PyResult<EnsembleResult> {
        let mode = match mode.as_str() {
            "mean" => Mode::Mean,
            "votes" => Mode::Votes,
            m => {
                return Err(MeshError::new_err(format!(
                    "mode {m:?} is not mean or votes"
                )));
            }
        };
        let (entries, models) = self.resolve_members(&members, &local_models)?;
        let n = entries.len() as u32;
        let spec = EnsembleSpec {
            mode,
            members: entries,
            models,
            inputs: inputs
                .into_iter()
                .map(to_tensor)
                .collect::<PyResult<Vec<_>>>()?,
            classes,
            threshold: threshold.unwrap_or(n / 2 + 1),
            dp,
        };
        let o = py
            .detach(|| {
                self.rt.block_on(async {
                    let client = self.client()?;
                    let o = ensemble_client::run(&client, &self.key, &spec, &|_| {}).await;
                    client.close();
                    o
                })
            })
            .map_err(anyhow_err)?;
        let name = |i: &u32| {
            spec.members
                .get(*i as usize)
                .map_or("?".to_string(), |e| e.name.clone())
        };
        let summary = json!({
            "job_id": hex::encode(o.payload.job_id),
            "mode": mode.name(),
            "result": o.result,
            "contributors": o.payload.contributors.iter().map(name).collect::<Vec<_>>(),
            "dropped": o.payload.dropped.iter().map(name).collect::<Vec<_>>(),
            "events": o.events,
            "epsilon_calibrated": o.epsilon.map(|e| e.0),
            "epsilon_achieved": o.epsilon.map(|e| e.1),
        });
        Ok((
            summary.to_string(),
            o.receipt,
            o.transcript,
            o.member_receipts,
        ))
    }

    /// One inference (`quorate infer`): on `node`, or on the least-loaded node serving the
    /// model; with `replicas` > 1 a verified job (§14) under `policy`, accepted only when
    /// `quorum` replicas agree. Every receipt is checked before anything is returned.
    #[pyo3(signature = (model, inputs, replicas, policy, quorum, node))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of `Mesh.infer`
    fn infer(
        &self,
        py: Python<'_>,
        model: [u8; 32],
        inputs: Vec<RawTensor>,
        replicas: usize,
        policy: String,
        quorum: Option<usize>,
        node: Option<String>,
    ) -> PyResult<InferResult> {
        if replicas == 0 {
            return Err(MeshError::new_err("replicas must be at least 1"));
        }
        if replicas > 1 && node.is_some() {
            return Err(MeshError::new_err(
                "node= picks one node; it does not go with replicas > 1",
            ));
        }
        let mut req = self.request(model, inputs)?;
        if replicas == 1 {
            return py.detach(|| self.infer_one(req, node)).map_err(anyhow_err);
        }
        let policy = Policy::parse(&policy).map_err(mesh_err)?;
        req.policy = Some(policy.digest().map_err(mesh_err)?);
        let quorum = quorum.unwrap_or(VerifiedJob::majority(replicas));
        py.detach(|| self.infer_verified(req, policy, replicas, quorum))
    }
}

impl NativeMesh {
    fn infer_one(&self, req: InferRequest, node: Option<String>) -> anyhow::Result<InferResult> {
        let (entry, response) = self.rt.block_on(async {
            let client = self.client()?;
            let entry = match &node {
                Some(name) => client
                    .roster
                    .by_name(name)
                    .ok_or_else(|| anyhow::anyhow!("no node {name:?} in the roster"))?
                    .clone(),
                None => {
                    let (nodes, _) = client.candidates(&req.model).await;
                    nodes.into_iter().next().ok_or_else(|| {
                        anyhow::anyhow!(
                            "no reachable node serves model sha256:{}",
                            hex::encode(req.model)
                        )
                    })?
                }
            };
            let result = client.infer(&entry, &req).await;
            client.close();
            let (response, _) = result?;
            anyhow::Ok((entry, response))
        })?;
        let verdict = json!({
            "job_id": hex::encode(req.job_id),
            "model": hex::encode(req.model),
            "replicas": 1,
            "quorum": 1,
            "accepted": true,
            "accepted_from": entry.name,
            "agreeing": [entry.name],
            "disagreeing": [],
            "proven_wrong": [],
            "failed": [],
        });
        Ok((
            verdict.to_string(),
            response.outputs.iter().map(from_tensor).collect(),
            response.receipt.clone(),
            vec![(entry.name.clone(), response.receipt)],
            None,
        ))
    }

    fn infer_verified(
        &self,
        req: InferRequest,
        policy: Policy,
        replicas: usize,
        quorum: usize,
    ) -> PyResult<InferResult> {
        let outcome = self
            .rt
            .block_on(async {
                let client = self.client()?;
                let (candidates, _) = client.candidates(&req.model).await;
                let progress = |_: &str| {};
                let outcome = verified::run(
                    &client, req, policy, replicas, quorum, candidates, &progress,
                )
                .await;
                client.close();
                outcome.map_err(|e| anyhow::anyhow!("verified job not accepted: {e}"))
            })
            .map_err(anyhow_err)?;
        let accepted = outcome
            .accepted()
            .ok_or_else(|| MeshError::new_err("the verdict has no agreeing replica"))?;
        let v = &outcome.verdict;
        let names = |list: &[usize]| list.iter().map(|&i| outcome.name(i)).collect::<Vec<_>>();
        let verdict = json!({
            "job_id": hex::encode(outcome.request.job_id),
            "model": hex::encode(outcome.request.model),
            "policy": outcome.policy.describe(),
            "policy_digest": outcome.request.policy.map(hex::encode),
            "replicas": outcome.answers.iter().filter(|a| a.is_some()).count(),
            "quorum": outcome.quorum,
            "accepted": true,
            "accepted_from": outcome.name(v.agreeing[0]),
            "agreeing": names(&v.agreeing),
            "disagreeing": names(&v.disagreeing),
            "proven_wrong": v.proven_wrong.iter().map(|&i| json!({
                "name": outcome.name(i),
                "kid": outcome.candidates[i].key.key_id().to_string(),
            })).collect::<Vec<_>>(),
            "failed": v.failed.iter().map(|(i, r)| json!({"name": outcome.name(*i), "reason": r})).collect::<Vec<_>>(),
        });
        let receipts = outcome
            .answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.as_ref()
                    .map(|a| (outcome.name(i).to_string(), a.response.receipt.clone()))
            })
            .collect();
        let bundle = outcome
            .bundle()
            .map(|b| b.encode())
            .transpose()
            .map_err(mesh_err)?;
        Ok((
            verdict.to_string(),
            accepted.response.outputs.iter().map(from_tensor).collect(),
            accepted.response.receipt.clone(),
            receipts,
            bundle,
        ))
    }
}

/// What a private ensemble returns: a summary (JSON text), the aggregate receipt, the
/// transcript and every member's (name, receipt): what `quorate ensemble` writes to its folder.
type EnsembleResult = (String, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

impl NativeMesh {
    /// The members and their models, as `quorate ensemble --members` resolves them.
    fn resolve_members(
        &self,
        members: &[(String, Option<[u8; 32]>)],
        local_models: &[[u8; 32]],
    ) -> PyResult<(Vec<Entry>, Vec<Digest32>)> {
        let mut entries: Vec<Entry> = Vec::new();
        for (name, _) in members {
            let e = self
                .roster
                .by_name(name)
                .ok_or_else(|| MeshError::new_err(format!("no member {name:?} in the roster")))?;
            if e.role != Role::Node {
                return Err(MeshError::new_err(format!("{name:?} is not a node")));
            }
            if entries.iter().any(|x| x.name == e.name) {
                return Err(MeshError::new_err(format!(
                    "member {name:?} is listed twice"
                )));
            }
            entries.push(e.clone());
        }
        let mut digests = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(d) = members[i].1 {
                digests.push(d);
                continue;
            }
            let mut own: Vec<&Digest32> = e
                .models
                .iter()
                .filter(|m| {
                    entries
                        .iter()
                        .enumerate()
                        .all(|(j, o)| j == i || !o.models.contains(m))
                })
                .collect();
            if own.len() > 1 {
                own.retain(|d| local_models.contains(d));
            }
            match own.as_slice() {
                [d] => digests.push(**d),
                _ => {
                    return Err(MeshError::new_err(format!(
                        "{}: the roster lists {} models for it alone; name one as {{\"{}\": MODEL}}",
                        e.name,
                        own.len(),
                        e.name
                    )));
                }
            }
        }
        Ok((entries, digests))
    }
}

/// Adds the mesh client to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeMesh>()
}
