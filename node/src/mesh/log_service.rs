//! Log requests (§18.12) and the heads of peers a node witnesses (§18.11.6): the node answers
//! with its latest head, inclusion and consistency receipts, and the latest head of each
//! peer it fetched, so that monitors can compare what each node was shown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorate_crypto::{PublicKey, SecretKey};
use quorate_protocol::messages::{ErrorFrame, LogRequest, LogResponse};
#[cfg(feature = "test-util")]
use quorate_protocol::tlog::TreeHead;

use crate::audit::AuditLog;
use crate::clock::unix_now;
use crate::mesh::client::MeshClient;
use crate::mesh::reload::RosterKeeper;

/// The log side of a node.
pub struct LogService {
    key: Arc<SecretKey>,
    audit: Arc<AuditLog>,
    roster: Arc<RosterKeeper>,
    /// The latest verified head of each peer, by roster name.
    witnessed: Mutex<BTreeMap<String, Witnessed>>,
    /// Test harness only: the roster member shown another history (§18.7).
    #[cfg(feature = "test-util")]
    pub(crate) split_view_for: Option<String>,
}

/// A peer's head as fetched.
struct Witnessed {
    size: u64,
    issued_at: u64,
    bytes: Vec<u8>,
}

impl LogService {
    /// The log service of the node holding `key` and `audit`, under `roster`.
    pub fn new(key: Arc<SecretKey>, audit: Arc<AuditLog>, roster: Arc<RosterKeeper>) -> Self {
        Self {
            key,
            audit,
            roster,
            witnessed: Mutex::default(),
            #[cfg(feature = "test-util")]
            split_view_for: None,
        }
    }

    /// Answers a log request from `peer` (blocking for the time of one signature).
    pub fn handle(&self, peer: &PublicKey, req: LogRequest) -> Result<LogResponse, ErrorFrame> {
        let key = &self.key;
        match req {
            LogRequest::Head => {
                let head = self.audit.latest_head(key, unix_now())?;
                #[cfg(feature = "test-util")]
                let head = self.maybe_split(peer, head);
                #[cfg(not(feature = "test-util"))]
                let _ = peer;
                let witnessed = self
                    .witnessed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .map(|w| w.bytes.clone())
                    .collect();
                Ok(LogResponse::Head { head, witnessed })
            }
            LogRequest::Prove {
                leaf_hash,
                tree_size,
            } => Ok(LogResponse::Proof(
                self.audit.prove(key, &leaf_hash, tree_size)?,
            )),
            LogRequest::Consistency { old_size, new_size } => Ok(LogResponse::Proof(
                self.audit
                    .consistency(key, old_size, new_size, unix_now())?,
            )),
        }
    }

    /// Keeps `head` as the latest of peer `name` if it verifies under `key` and is not older
    /// than the one kept; returns whether it was kept.
    pub fn witness(&self, name: &str, key: &PublicKey, head: Vec<u8>) -> bool {
        let Ok(h) = quorate_verify::tlog::verify_tree_head(&head, key) else {
            return false;
        };
        let mut seen = self
            .witnessed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen
            .get(name)
            .is_some_and(|w| (w.issued_at, w.size) > (h.issued_at, h.size))
        {
            return false;
        }
        seen.insert(
            name.to_string(),
            Witnessed {
                size: h.size,
                issued_at: h.issued_at,
                bytes: head,
            },
        );
        true
    }

    /// Test harness only: a head of the same size over another root for the peer named in
    /// `test_split_view_for`, signed with the node's key: a split view (§18.7).
    #[cfg(feature = "test-util")]
    fn maybe_split(&self, peer: &PublicKey, head: Vec<u8>) -> Vec<u8> {
        let target = self.split_view_for.as_deref();
        if target.is_none() || self.roster.name_of(peer).as_deref() != target {
            return head;
        }
        let Ok(real) = TreeHead::parse(&head) else {
            return head;
        };
        let fork = TreeHead {
            root: quorate_crypto::tensor_digest::sha256(&real.body.root),
            ..real.body
        };
        fork.sign(&self.key).unwrap_or(head)
    }
}

/// Fetches every other node's head every `every` and keeps those that verify (§18.11.6).
/// Failures are logged at debug and tried again at the next round.
pub async fn gossip(service: Arc<LogService>, me: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let roster = service.roster.roster();
        let client = match MeshClient::new(&service.key, roster.clone(), Duration::from_secs(5)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %me, "cannot gossip heads: {e:#}");
                continue;
            }
        };
        let peers = roster.nodes().filter(|e| e.name != me);
        for peer in peers {
            match client.log_head(peer).await {
                Ok((head, _)) => {
                    if !service.witness(&peer.name, &peer.key, head) {
                        tracing::debug!(node = %me, peer = %peer.name, "peer head not kept");
                    }
                }
                Err(e) => tracing::debug!(node = %me, peer = %peer.name, "no head: {e:#}"),
            }
        }
        client.close();
    }
}
