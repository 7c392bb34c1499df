//! The mesh client (§11.4): connects to roster members with pinned keys, sends requests and
//! accepts an answer only after checking its receipt.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quorate_crypto::SecretKey;
use quorate_protocol::batch_receipt::AnyReceipt;
use quorate_protocol::messages::{
    ErrorCode, HealthInfo, InferRequest, InferResponse, Request, Response,
    check_infer_response_with,
};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{JobKind, ReceiptPayload};
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor::Tensor;
use quorate_verify::signature_cache::SignatureCache;

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
    /// The compute budget of one request: how long a node may take to answer. The client
    /// waits this long plus network time that follows the measured RTT (§7.6.1); connecting
    /// is bounded separately by the transport's connect timeout (§7.6).
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

/// The address a client endpoint binds (§12.6): the unspecified address of the family of the
/// roster's node addresses, on an ephemeral port, so that the operating system picks the
/// source address of the route to each node (loopback, a LAN, a network namespace). IPv6 is
/// chosen only when every node address is IPv6, since an IPv6 socket may not reach IPv4.
pub fn client_bind_address(roster: &Roster) -> SocketAddr {
    let mut families = roster
        .entries
        .iter()
        .filter(|e| e.role == Role::Node)
        .filter_map(|e| address_of(e).ok())
        .map(|a| a.is_ipv6());
    let all_v6 = families.next() == Some(true) && families.all(|v6| v6);
    if all_v6 {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

/// Pauses a client waits out a `Busy` node for (10 ms doubling: 310 ms in all) (§12.6).
pub const BUSY_RETRIES: usize = 5;

/// The batch roots this process verified last (§12.4.2): the replies of one group commit
/// carry the same signed root, and the clients of one process (each connection of a busy
/// application) check its signature once.
static BATCH_ROOTS: std::sync::LazyLock<SignatureCache> =
    std::sync::LazyLock::new(|| SignatureCache::new(64));

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
        let bind = client_bind_address(&roster);
        // A short idle timeout with frequent keep-alives notices a crashed node within seconds,
        // while a node that is busy computing still acknowledges the pings and stays connected.
        // QUIC never lets the idle timeout fall below three probe timeouts (RFC 9000 §10.1),
        // so on a slow path it grows with the measured RTT (§12.6).
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
        let budget = self.timeout;
        let exchange = async {
            let cached = self.connections.lock().await.get(&node.name).cloned();
            if let Some(conn) = cached {
                match conn.request_within(&bytes, budget).await {
                    Ok(answer) => return Ok(answer),
                    // A connection that went stale is replaced once; a refusal is final.
                    Err(TransportError::Closed(_)) => {
                        self.connections.lock().await.remove(&node.name);
                    }
                    Err(e) => return Err((e, Some(conn.rtt()))),
                }
            }
            // Bounded by the transport's connect timeout (§7.6).
            let conn = self
                .endpoint
                .connect(addr, &node.key)
                .await
                .map_err(|e| (e, None))?;
            let answer = conn.request_within(&bytes, budget).await;
            let rtt = conn.rtt();
            if answer.is_ok() {
                self.connections
                    .lock()
                    .await
                    .insert(node.name.clone(), conn);
            } else {
                conn.close();
            }
            answer.map_err(|e| (e, Some(rtt)))
        };
        let answer = exchange.await.map_err(|(e, rtt)| match (e, rtt) {
            (TransportError::Timeout { after, .. }, Some(rtt)) => anyhow!(
                "node {:?} at {addr} did not answer within {after:.1?} (compute budget {budget:?} \
                 plus network time for a measured RTT of {rtt:.1?}, §7.6.1)",
                node.name
            ),
            (e, _) => anyhow::Error::new(e).context(format!("node {:?} at {addr}", node.name)),
        })?;
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
        let response = self.request(node, &Request::Infer(req.clone())).await?;
        Self::checked_infer(node, req, response)
    }

    /// [`Self::infer`], asking the same node again after a growing pause while it answers
    /// `Busy` (§12.6): a node at its slot limit ran nothing and is worth waiting for; after
    /// [`BUSY_RETRIES`] pauses its answer stands.
    pub async fn infer_patiently(
        &self,
        node: &Entry,
        req: &InferRequest,
    ) -> anyhow::Result<(InferResponse, ReceiptPayload)> {
        let mut pause = Duration::from_millis(10);
        for _ in 0..BUSY_RETRIES {
            match self.request(node, &Request::Infer(req.clone())).await? {
                Response::Error(e) if e.code == ErrorCode::Busy => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                response => return Self::checked_infer(node, req, response),
            }
        }
        self.infer(node, req).await
    }

    fn checked_infer(
        node: &Entry,
        req: &InferRequest,
        response: Response,
    ) -> anyhow::Result<(InferResponse, ReceiptPayload)> {
        match response {
            Response::Infer(r) => {
                // §12.4.2: the replies of one group commit share one signed batch root, which
                // this process checks once; every other step is done for each reply.
                let verify = |r: &AnyReceipt| {
                    let s = r.sign1();
                    match r {
                        AnyReceipt::Batch(_) => {
                            BATCH_ROOTS.verify(&node.key, &s.to_be_signed, &s.signature)
                        }
                        AnyReceipt::Single(_) => s.verify(&node.key).map(drop),
                    }
                    .map_err(|e| e.to_string())
                };
                let payload =
                    check_infer_response_with(req, &r, &node.key, &verify).with_context(|| {
                        format!(
                            "node {:?} returned a result that fails verification",
                            node.name
                        )
                    })?;
                crate::mesh::log_client::check_log_proof(node, &r, payload.issued_at)
                    .with_context(|| {
                        format!("node {:?} did not prove its receipt is logged", node.name)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_protocol::governance::Governance;

    fn roster(addresses: &[&str]) -> Roster {
        let key = SecretKey::generate().unwrap().public_key();
        let entry = |i: usize, a: &str| Entry {
            name: format!("node-{i}"),
            key,
            role: Role::Node,
            addresses: vec![a.to_string()],
            models: vec![],
            providers: vec![],
        };
        Roster {
            governance: Governance::default(),
            mesh: "m".into(),
            serial: 1,
            issued_at: 0,
            expires_at: 1,
            entries: addresses
                .iter()
                .enumerate()
                .map(|(i, a)| entry(i, a))
                .collect(),
        }
    }

    #[test]
    fn the_client_binds_the_unspecified_address_of_the_nodes_family() {
        let v4 = client_bind_address(&roster(&["10.1.2.3:4433", "127.0.0.1:9"]));
        assert_eq!(v4, "0.0.0.0:0".parse::<SocketAddr>().unwrap());
        let v6 = client_bind_address(&roster(&["[fd00::1]:4433", "[::1]:9"]));
        assert_eq!(v6, "[::]:0".parse::<SocketAddr>().unwrap());
        // Mixed or empty: IPv4, which reaches IPv4 nodes for sure.
        let mixed = client_bind_address(&roster(&["[fd00::1]:4433", "10.0.0.1:9"]));
        assert!(mixed.ip().is_unspecified() && mixed.is_ipv4());
        assert!(client_bind_address(&roster(&[])).is_ipv4());
    }
}
