//! The soak's traffic (§12.9): valid jobs that must all be answered with a receipt that
//! verifies, and hostile traffic that must all be refused, while the nodes keep serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::commands::calibrate::xorshift;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::{MeshClient, address_of, fresh_request};
use quorate_node::mesh::verified;
use quorate_protocol::ensemble::EnsembleRound;
use quorate_protocol::messages::{
    ErrorCode, Request, Response, check_infer_response, common::ErrorFrame,
};
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::Entry;
use quorate_protocol::tensor::Tensor;
use quorate_transport::{
    MeshEndpoint, PeerConnection, TlsIdentity, TransportSettings, bind_client,
};

/// Failures kept word for word; beyond these only counted.
const KEPT_FAILURES: usize = 20;
/// Strangers (keys outside the roster) in one handshake flood.
const FLOOD: usize = 16;
/// Tries of a valid job answered `Busy` before it counts as unanswered.
const BUSY_TRIES: usize = 50;

/// What the traffic did, counted as it happens.
#[derive(Default)]
pub struct Tally {
    /// Valid jobs sent.
    pub valid: AtomicU64,
    /// Valid jobs answered with a receipt that verifies (verified jobs: decided).
    pub answered: AtomicU64,
    /// `Busy` answers to valid jobs (each retried).
    pub busy: AtomicU64,
    /// Hostile messages and handshakes sent.
    pub hostile: AtomicU64,
    /// Hostile traffic handled as the spec says: refused, or (replays) answered as a job of
    /// its own.
    pub handled: AtomicU64,
    /// Hostile messages sent, by kind (in the order of [`KIND_NAMES`]).
    pub by_kind: [AtomicU64; 6],
    /// Hostile connections whose handshake timed out and that were made again from a new
    /// port (see [`send_raw`]); printed in the summary.
    pub fresh_port_handshakes: AtomicU64,
    /// Everything that went wrong: a valid job not answered, hostile traffic accepted.
    pub failures: AtomicU64,
    kept: Mutex<Vec<String>>,
    /// Per node name: the SHA-256 of every receipt it returned.
    receipts: Mutex<HashMap<String, Vec<[u8; 32]>>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut kept) = self.kept.lock()
            && kept.len() < KEPT_FAILURES
        {
            kept.push(what);
        }
    }

    /// Keeps the digest of the receipt as the node's log holds it: without the inclusion
    /// receipt its reply added in header 394 (§18.1). A receipt that is not a COSE_Sign1
    /// is kept as it is, and then found in no log.
    fn keep_receipt(&self, node: &str, receipt: &[u8]) {
        let leaf = quorate_protocol::tlog::leaf_bytes(receipt).unwrap_or_else(|_| receipt.to_vec());
        if let Ok(mut r) = self.receipts.lock() {
            r.entry(node.to_string()).or_default().push(sha256(&leaf));
        }
    }

    /// The first failures, word for word.
    pub fn kept_failures(&self) -> Vec<String> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Receipt digests by node name.
    pub fn receipts(&self) -> HashMap<String, Vec<[u8; 32]>> {
        self.receipts.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// What every worker shares.
pub struct Traffic {
    /// The client (a roster member).
    pub client: MeshClient,
    /// Its key, for the raw connections of the hostile workers.
    pub client_key: SecretKey,
    /// The nodes.
    pub nodes: Vec<Entry>,
    /// The model every node serves and an input it takes.
    pub model: [u8; 32],
    /// That input.
    pub input: Tensor,
    /// The nodes' request limit (§12.1), for the oversized frames.
    pub max_request_bytes: usize,
    /// Counters.
    pub tally: Tally,
    /// Set when the soak is over.
    pub stop: AtomicBool,
}

impl Traffic {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// One valid worker: plain jobs on each node in turn and, with three nodes or more, every
/// fourth job a verified job (R = 3, quorum 2, §14.4) across them.
pub async fn valid_worker(t: Arc<Traffic>, worker: usize) {
    let n = t.nodes.len();
    let mut k = worker;
    while t.running() {
        k += 1;
        t.tally.valid.fetch_add(1, Ordering::Relaxed);
        let answered = if n >= 3 && k.is_multiple_of(4) {
            verified_job(&t, k).await
        } else {
            plain_job(&t, &t.nodes[k % n]).await
        };
        match answered {
            Ok(()) => {
                t.tally.answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => t.tally.fail(format!("valid job not answered: {e:#}")),
        }
    }
}

async fn plain_job(t: &Traffic, node: &Entry) -> anyhow::Result<()> {
    let req = fresh_request(t.model, vec![t.input.clone()], None)?;
    let request = Request::Infer(req.clone());
    for _ in 0..BUSY_TRIES {
        match t.client.request(node, &request).await? {
            Response::Infer(r) => {
                check_infer_response(&req, &r, &node.key)?;
                t.tally.keep_receipt(&node.name, &r.receipt);
                return Ok(());
            }
            Response::Error(ErrorFrame {
                code: ErrorCode::Busy,
                ..
            }) => {
                t.tally.busy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => anyhow::bail!("{}: answered {other:?}", node.name),
        }
    }
    anyhow::bail!("{}: busy {BUSY_TRIES} times in a row", node.name)
}

/// A verified job; one that fails only because nodes answered `Busy` (§12.3) is sent again,
/// as a client told "retry later" does, and counted as busy.
async fn verified_job(t: &Traffic, k: usize) -> anyhow::Result<()> {
    let policy = Policy::Default;
    let mut candidates = t.nodes.clone();
    candidates.rotate_left(k % t.nodes.len());
    let mut tries = 0;
    let outcome = loop {
        let req = fresh_request(t.model, vec![t.input.clone()], Some(&policy))?;
        match verified::run(&t.client, req, policy, 3, 2, candidates.clone(), &|_| {}).await {
            Ok(outcome) => break outcome,
            Err(failed)
                if tries + 1 < BUSY_TRIES
                    && !failed.failures.is_empty()
                    && failed.failures.iter().all(|(_, why)| why.contains("Busy:")) =>
            {
                tries += 1;
                t.tally.busy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(failed) => return Err(failed.into()),
        }
    };
    anyhow::ensure!(
        outcome.accepted().is_some(),
        "verified job not accepted: {:?}",
        outcome.verdict
    );
    for (i, a) in outcome.answers.iter().enumerate() {
        if let Some(a) = a {
            t.tally.keep_receipt(outcome.name(i), &a.response.receipt);
        }
    }
    Ok(())
}

/// The kinds of hostile traffic, sent in turn.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Random bytes as a request frame.
    Garbage,
    /// A valid inference request cut short.
    Truncated,
    /// A frame one byte over the node's request limit.
    Oversized,
    /// An ensemble round for a job the node never started (§15.3).
    WrongRound,
    /// A valid request sent twice, word for word: each answered as a job of its own (an
    /// inference is idempotent, §11.3) with a receipt that verifies, both in the audit log.
    Replay,
    /// A burst of handshakes from keys outside the roster (§7.3).
    StrangerFlood,
}

/// The kinds' names, for the report.
pub const KIND_NAMES: [&str; 6] = [
    "garbage",
    "truncated",
    "oversized",
    "wrong_round",
    "replay",
    "stranger_handshake",
];

const KINDS: [Hostile; 6] = [
    Hostile::Garbage,
    Hostile::Truncated,
    Hostile::Oversized,
    Hostile::WrongRound,
    Hostile::Replay,
    Hostile::StrangerFlood,
];

/// One hostile worker: each kind in turn against each node in turn, on a raw connection of
/// the roster client (authenticated, not trusted), reconnecting when the node closes it.
pub async fn hostile_worker(t: Arc<Traffic>, worker: usize) {
    let settings = TransportSettings::default();
    let endpoint = match TlsIdentity::from_secret_key(&t.client_key)
        .map_err(anyhow::Error::from)
        .and_then(|id| Ok(bind_client(any_port(), Arc::new(id), settings)?))
    {
        Ok(e) => e,
        Err(e) => {
            t.tally.fail(format!("hostile worker cannot bind: {e:#}"));
            return;
        }
    };
    let mut conns: HashMap<usize, PeerConnection> = HashMap::new();
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64 ^ worker as u64);
    let mut k = worker;
    while t.running() {
        k += 1;
        let node_ix = k % t.nodes.len();
        let kind_ix = (k / t.nodes.len()) % KINDS.len();
        let kind = KINDS[kind_ix];
        let sent = if matches!(kind, Hostile::StrangerFlood) {
            FLOOD as u64
        } else {
            1
        };
        t.tally.by_kind[kind_ix].fetch_add(sent, Ordering::Relaxed);
        let node = &t.nodes[node_ix];
        let outcome = match kind {
            Hostile::StrangerFlood => stranger_flood(&t, node).await,
            _ => {
                let frame = match hostile_frame(&t, kind, &mut next) {
                    Ok(f) => f,
                    Err(e) => {
                        t.tally
                            .fail(format!("cannot build a {kind:?} frame: {e:#}"));
                        continue;
                    }
                };
                t.tally.hostile.fetch_add(1, Ordering::Relaxed);
                let mut result = Ok(());
                // A replay sends a frame the node has answered already, word for word.
                let sends = if matches!(kind, Hostile::Replay) {
                    2
                } else {
                    1
                };
                for _ in 0..sends {
                    result = result.and(
                        send_raw(&t, &endpoint, &mut conns, node_ix, node, &frame)
                            .await
                            .and_then(|answer| judge(&t.tally, kind, node, &frame, answer)),
                    );
                }
                result.map(|()| 1)
            }
        };
        match outcome {
            Ok(refused) => {
                t.tally.handled.fetch_add(refused, Ordering::Relaxed);
            }
            Err(e) => t
                .tally
                .fail(format!("{kind:?} against {}: {e:#}", node.name)),
        }
    }
    for c in conns.values() {
        c.close();
    }
    endpoint.close();
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn hostile_frame(
    t: &Traffic,
    kind: Hostile,
    next: &mut impl FnMut() -> u64,
) -> anyhow::Result<Vec<u8>> {
    let valid = || -> anyhow::Result<Vec<u8>> {
        Ok(Request::Infer(fresh_request(t.model, vec![t.input.clone()], None)?).encode()?)
    };
    Ok(match kind {
        Hostile::Garbage => {
            let len = 1 + (next() % 4096) as usize;
            (0..len).map(|_| next() as u8).collect()
        }
        Hostile::Truncated => {
            let mut f = valid()?;
            let cut = 1 + (next() as usize % (f.len() - 1));
            f.truncate(cut);
            f
        }
        Hostile::Oversized => vec![0xa0; t.max_request_bytes + 1],
        Hostile::WrongRound => Request::EnsembleRound(EnsembleRound {
            job_id: quorate_crypto::random::bytes()?,
            round: 1 + (next() % 4) as u8,
            message: (0..64).map(|_| next() as u8).collect(),
        })
        .encode()?,
        Hostile::Replay | Hostile::StrangerFlood => valid()?,
    })
}

/// Sends `frame` on the cached connection to node `ix` (made anew if the node closed it).
/// `Ok(None)` is a stream or connection the node closed instead of answering.
///
/// A handshake that times out is tried once more from a new port, and counted: rarely, under
/// full load, a reconnect from the worker's port after the node reset an oversized frame's
/// stream has been seen never to complete (not yet explained); a node that does not complete
/// the handshake from a new port either fails the soak.
async fn send_raw(
    t: &Traffic,
    endpoint: &MeshEndpoint,
    conns: &mut HashMap<usize, PeerConnection>,
    ix: usize,
    node: &Entry,
    frame: &[u8],
) -> anyhow::Result<Option<Vec<u8>>> {
    let conn = match conns.entry(ix) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let addr = address_of(node)?;
            let conn = match endpoint.connect(addr, &node.key).await {
                Err(quorate_transport::TransportError::Timeout { .. }) => {
                    t.tally
                        .fresh_port_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                    let id = Arc::new(TlsIdentity::from_secret_key(&t.client_key)?);
                    let fresh = bind_client(any_port(), id, TransportSettings::default())?;
                    // The connection keeps its endpoint alive.
                    fresh.connect(addr, &node.key).await?
                }
                other => other?,
            };
            e.insert(conn)
        }
    };
    match conn.request(frame, Duration::from_secs(30)).await {
        Ok(answer) => Ok(Some(answer)),
        Err(e) => {
            // The node may reset the stream or close the connection of a peer that sent a
            // frame over its limit: that is a refusal, and the next frame reconnects.
            if let Some(c) = conns.remove(&ix) {
                c.close();
            }
            if matches!(e, quorate_transport::TransportError::Timeout { .. }) {
                anyhow::bail!("the node neither answered nor closed within 30 s: {e}");
            }
            Ok(None)
        }
    }
}

/// Whether the node answered a hostile frame as the spec says.
fn judge(
    tally: &Tally,
    kind: Hostile,
    node: &Entry,
    frame: &[u8],
    answer: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let response = match answer {
        // Only an over-limit frame may be refused by closing the stream (§7.6).
        None if matches!(kind, Hostile::Oversized) => return Ok(()),
        None => anyhow::bail!("the node closed the stream instead of answering"),
        Some(bytes) => Response::decode(&bytes)?,
    };
    match (kind, response) {
        (Hostile::Replay, Response::Infer(r)) => {
            let Ok(Request::Infer(req)) = Request::decode(frame) else {
                anyhow::bail!("the replayed frame does not decode");
            };
            check_infer_response(&req, &r, &node.key)?;
            tally.keep_receipt(&node.name, &r.receipt);
            Ok(())
        }
        // A node at its concurrency limit answers `Busy` before looking further (§12.3):
        // nothing was run or released, which is a refusal of any kind.
        (_, Response::Error(e)) if e.code == ErrorCode::Busy => Ok(()),
        (Hostile::Replay, other) => anyhow::bail!("a replayed valid request got {other:?}"),
        (_, Response::Error(e)) => {
            let expected: &[ErrorCode] = match kind {
                Hostile::Garbage | Hostile::Truncated => &[ErrorCode::BadRequest],
                Hostile::Oversized => &[ErrorCode::TooLarge, ErrorCode::BadRequest],
                Hostile::WrongRound => &[
                    ErrorCode::UnknownJob,
                    ErrorCode::NotAllowed,
                    ErrorCode::BadRequest,
                ],
                Hostile::Replay | Hostile::StrangerFlood => &[],
            };
            anyhow::ensure!(
                expected.contains(&e.code),
                "refused with {:?} ({}), expected one of {expected:?}",
                e.code,
                e.message
            );
            Ok(())
        }
        (_, other) => anyhow::bail!("a hostile frame was answered: {other:?}"),
    }
}

/// `FLOOD` strangers at once, each with a fresh key outside the roster, each trying a valid
/// request: every one must be refused. Returns how many were.
async fn stranger_flood(t: &Traffic, node: &Entry) -> anyhow::Result<u64> {
    let addr = address_of(node)?;
    let frame = Request::Infer(fresh_request(t.model, vec![t.input.clone()], None)?).encode()?;
    let attempts = (0..FLOOD).map(|_| {
        let frame = frame.clone();
        let key = node.key;
        async move {
            let stranger = SecretKey::generate()?;
            let id = Arc::new(TlsIdentity::from_secret_key(&stranger)?);
            let endpoint = bind_client(any_port(), id, TransportSettings::default())?;
            let answered = match endpoint.connect(addr, &key).await {
                Ok(conn) => {
                    let r = conn.request(&frame, Duration::from_secs(30)).await;
                    conn.close();
                    r.ok()
                }
                Err(_) => None,
            };
            endpoint.close();
            anyhow::Ok(answered)
        }
    });
    t.tally.hostile.fetch_add(FLOOD as u64, Ordering::Relaxed);
    let mut refused = 0;
    for r in futures_util::future::join_all(attempts).await {
        match r? {
            None => refused += 1,
            Some(bytes) => match Response::decode(&bytes) {
                // A node may answer a stranger only with an error, never a result.
                Ok(Response::Error(_)) => refused += 1,
                other => anyhow::bail!("a stranger's request was answered: {other:?}"),
            },
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_protocol::messages::InferResponse;
    use quorate_protocol::roster::Role;

    fn node() -> Entry {
        Entry {
            name: "node-1".into(),
            key: SecretKey::generate().unwrap().public_key(),
            role: Role::Node,
            addresses: vec!["127.0.0.1:1".into()],
            models: vec![],
            providers: vec![],
        }
    }

    fn error(code: ErrorCode) -> Option<Vec<u8>> {
        Some(
            Response::Error(ErrorFrame::new(code, "x"))
                .encode()
                .unwrap(),
        )
    }

    #[test]
    fn a_hostile_frame_answered_with_a_result_is_a_failure() {
        let answer = Response::Infer(InferResponse {
            outputs: vec![],
            output_salts: None,
            receipt: vec![1, 2, 3],
            promise: None,
        })
        .encode()
        .unwrap();
        for kind in [Hostile::Garbage, Hostile::Truncated, Hostile::WrongRound] {
            let verdict = judge(&Tally::default(), kind, &node(), b"", Some(answer.clone()));
            assert!(verdict.is_err(), "{kind:?} answered with a result passed");
        }
    }

    #[test]
    fn refusals_pass_only_with_the_codes_the_spec_gives() {
        let t = Tally::default();
        let n = node();
        assert!(judge(&t, Hostile::Garbage, &n, b"", error(ErrorCode::BadRequest)).is_ok());
        assert!(judge(&t, Hostile::Garbage, &n, b"", error(ErrorCode::Busy)).is_ok());
        assert!(judge(&t, Hostile::Garbage, &n, b"", error(ErrorCode::Internal)).is_err());
        assert!(
            judge(
                &t,
                Hostile::WrongRound,
                &n,
                b"",
                error(ErrorCode::UnknownJob)
            )
            .is_ok()
        );
        assert!(judge(&t, Hostile::WrongRound, &n, b"", error(ErrorCode::Replayed)).is_err());
        // Only an over-limit frame may be refused by closing the stream.
        assert!(judge(&t, Hostile::Oversized, &n, b"", None).is_ok());
        assert!(judge(&t, Hostile::Truncated, &n, b"", None).is_err());
    }

    #[test]
    fn a_replay_must_be_answered_with_a_receipt_for_that_request() {
        let t = Tally::default();
        let n = node();
        let req = fresh_request([7; 32], vec![], None).unwrap();
        let frame = Request::Infer(req).encode().unwrap();
        // A receipt that does not verify (garbage bytes) fails the replay.
        let forged = Response::Infer(InferResponse {
            outputs: vec![],
            output_salts: None,
            receipt: vec![0xa0],
            promise: None,
        })
        .encode()
        .unwrap();
        assert!(judge(&t, Hostile::Replay, &n, &frame, Some(forged)).is_err());
        assert!(
            judge(
                &t,
                Hostile::Replay,
                &n,
                &frame,
                error(ErrorCode::BadRequest)
            )
            .is_err()
        );
        assert!(t.receipts().is_empty());
    }
}
