//! The mesh client (§11.4): connects to roster members with pinned keys, sends requests and
//! accepts an answer only after checking its receipt.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quorate_crypto::SecretKey;
use quorate_protocol::messages::{
    HealthInfo, InferRequest, InferResponse, Request, Response, check_infer_response,
};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{JobKind, ReceiptPayload};
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor::Tensor;

use quorate_transport::{
    MeshEndpoint, PeerConnection, TlsIdentity, TransportError, TransportSettings, bind_client,
};

/// A client of the mesh.
pub struct MeshClient {
    endpoint: MeshEndpoint,
    /// Open connections by node name, reused across requests (one stream per request).
    connections: tokio::sync::Mutex<HashMap<String, PeerConnection>>,
    /// The verified roster.
    pub roster: Roster,
    /// Time allowed for one request, connection included.
    pub timeout: Duration,
}

/// The address of a node entry.
pub fn address_of(entry: &Entry) -> anyhow::Result<SocketAddr> {
    let text = entry
        .addresses
        .first()
        .with_context(|| format!("roster entry {:?} has no address", entry.name))?;
    text.to_socket_addrs()
        .with_context(|| format!("cannot resolve {text} of {:?}", entry.name))?
        .next()
        .with_context(|| format!("{text} of {:?} resolves to nothing", entry.name))
}

impl MeshClient {
    /// Binds a client endpoint with `key`, which must be in the roster.
    pub fn new(key: &SecretKey, roster: Roster, timeout: Duration) -> anyhow::Result<Self> {
        if roster.by_key(&key.public_key()).is_none() {
            bail!(
                "key {} is not in the roster: the nodes would refuse it; ask the roster authority to add it",
                key.public_key().key_id()
            );
        }
        let identity = Arc::new(TlsIdentity::from_secret_key(key)?);
        let bind: SocketAddr = "127.0.0.1:0".parse()?;
        // A short idle timeout with frequent keep-alives notices a crashed node within seconds,
        // while a node that is busy computing still acknowledges the pings and stays connected.
        let settings = TransportSettings {
            idle_timeout: Duration::from_secs(5),
            keep_alive: Some(Duration::from_secs(1)),
            ..TransportSettings::default()
        };
        let endpoint = bind_client(bind, identity, settings)?;
        Ok(Self {
            endpoint,
            connections: tokio::sync::Mutex::default(),
            roster,
            timeout,
        })
    }

    /// Sends one request to a node and decodes the response.
    pub async fn request(&self, node: &Entry, request: &Request) -> anyhow::Result<Response> {
        if node.role != Role::Node {
            bail!("{:?} is a client, not a node", node.name);
        }
        let addr = address_of(node)?;
        let bytes = request.encode()?;
        let exchange = async {
            let cached = self.connections.lock().await.get(&node.name).cloned();
            if let Some(conn) = cached {
                match conn.request(&bytes, self.timeout).await {
                    Ok(answer) => return Ok(answer),
                    // A connection that went stale is replaced once; a refusal is final.
                    Err(TransportError::Closed(_)) => {
                        self.connections.lock().await.remove(&node.name);
                    }
                    Err(e) => return Err(e),
                }
            }
            let conn = self.endpoint.connect(addr, &node.key).await?;
            let answer = conn.request(&bytes, self.timeout).await;
            if answer.is_ok() {
                self.connections
                    .lock()
                    .await
                    .insert(node.name.clone(), conn);
            } else {
                conn.close();
            }
            answer
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "node {:?} at {addr} did not answer within {:?}",
                    node.name,
                    self.timeout
                )
            })?
            .with_context(|| format!("node {:?} at {addr}", node.name))?;
        Response::decode(&answer)
            .with_context(|| format!("node {:?} sent a malformed response", node.name))
    }

    /// Asks a node for its health.
    pub async fn health(&self, node: &Entry) -> anyhow::Result<HealthInfo> {
        match self.request(node, &Request::Health).await? {
            Response::Health(h) => Ok(h),
            Response::Error(e) => bail!("node {:?}: {e}", node.name),
            _ => bail!(
                "node {:?} answered a health request with something else",
                node.name
            ),
        }
    }

    /// Runs an inference on a node and checks the receipt before returning anything.
    pub async fn infer(
        &self,
        node: &Entry,
        req: &InferRequest,
    ) -> anyhow::Result<(InferResponse, ReceiptPayload)> {
        match self.request(node, &Request::Infer(req.clone())).await? {
            Response::Infer(r) => {
                let payload = check_infer_response(req, &r, &node.key).with_context(|| {
                    format!(
                        "node {:?} returned a result that fails verification",
                        node.name
                    )
                })?;
                Ok((r, payload))
            }
            Response::Error(e) => Err(anyhow!("node {:?} refused the job: {e}", node.name)),
            _ => bail!(
                "node {:?} answered an inference with something else",
                node.name
            ),
        }
    }

    /// The nodes serving `model`, least loaded first (by a health request to each; nodes that
    /// do not answer are left out, with the reasons returned).
    pub async fn candidates(&self, model: &[u8; 32]) -> (Vec<Entry>, Vec<String>) {
        let serving: Vec<Entry> = self.roster.serving(model).cloned().collect();
        let checks = serving
            .iter()
            .map(|e| async move { (e.clone(), self.health(e).await) });
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (entry, health) in futures_util::future::join_all(checks).await {
            match health {
                Ok(h) if h.models.contains(model) => {
                    ok.push((h.in_flight as f64 / h.capacity.max(1) as f64, entry))
                }
                Ok(_) => failed.push(format!(
                    "{}: does not serve the model although the roster says so",
                    entry.name
                )),
                Err(e) => failed.push(format!("{}: {e:#}", entry.name)),
            }
        }
        ok.sort_by(|a, b| a.0.total_cmp(&b.0));
        (ok.into_iter().map(|(_, e)| e).collect(), failed)
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        if let Ok(conns) = self.connections.try_lock() {
            for c in conns.values() {
                c.close();
            }
        }
        self.endpoint.close();
    }
}

/// A fresh inference request (§11.3): a random job id and nonce, one random input salt per
/// input (§3.3), and the digest of `policy` when the job is verified (§14.1).
pub fn fresh_request(
    model: [u8; 32],
    inputs: Vec<Tensor>,
    policy: Option<&Policy>,
) -> anyhow::Result<InferRequest> {
    let input_salts = inputs
        .iter()
        .map(|_| quorate_crypto::random::bytes::<{ quorate_crypto::tensor_digest::SALT_LEN }>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InferRequest {
        job_id: quorate_crypto::random::bytes()?,
        nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
        kind: JobKind::Infer,
        model,
        inputs,
        input_salts: Some(input_salts),
        policy: policy.map(Policy::digest).transpose()?,
        previous: None,
    })
}
