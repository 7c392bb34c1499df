//! The client's side of the transparency log (§18.11, §18.12): log requests, the check that
//! a reply proves its receipt is in the node's log, and the upgrade of a promise.

use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::messages::{InferResponse, LogRequest, LogResponse, Request, Response};
use quorate_protocol::roster::Entry;
use quorate_protocol::tlog::{self, Promise};
use quorate_verify::tlog::{verify_promise, verify_receipt_inclusions};

use crate::clock::unix_now;
use crate::mesh::client::MeshClient;

/// What a reply proved about its receipt's place in the node's log (§18.11.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogProof {
    /// The receipt carries a verified inclusion receipt in header 394.
    Included {
        /// The leaf's index.
        leaf_index: u64,
        /// The size of the tree the node signed.
        tree_size: u64,
    },
    /// The node promised inclusion by `deadline` (Unix seconds); upgrade with
    /// [`MeshClient::upgrade_promise`].
    Promised {
        /// The signed promise.
        promise: Vec<u8>,
        /// Its deadline.
        deadline: u64,
    },
}

/// Checks that an inference reply proves its receipt is in the node's log (§18.11.3): an
/// inclusion receipt of the receipt's own leaf in header 394 under the node's key, or a
/// promise signed by the node for that leaf. A reply with neither is refused.
pub fn check_log_proof(node: &Entry, reply: &InferResponse) -> anyhow::Result<LogProof> {
    if let Some(promise) = &reply.promise {
        let p = Promise::parse(promise).context("the node's promise does not decode")?;
        p.sign1
            .verify(&node.key)
            .context("the node's promise is not signed by its key")?;
        let leaf = tlog::receipt_leaf_hash(&reply.receipt)?;
        if p.body.leaf_hash != leaf {
            bail!("the node's promise is for another receipt");
        }
        return Ok(LogProof::Promised {
            promise: promise.clone(),
            deadline: p.body.deadline,
        });
    }
    let inclusions = verify_receipt_inclusions(&reply.receipt, &node.key)
        .context("the receipt's inclusion receipt does not verify (§18.8.2)")?;
    match inclusions.first() {
        Some(i) => Ok(LogProof::Included {
            leaf_index: i.leaf_index,
            tree_size: i.tree_size,
        }),
        None => bail!(
            "the reply proves no inclusion of its receipt in the node's log: neither an inclusion receipt nor a promise (§18.11.3)"
        ),
    }
}

impl MeshClient {
    async fn log_request(&self, node: &Entry, req: LogRequest) -> anyhow::Result<LogResponse> {
        match self.request(node, &Request::Log(req)).await? {
            Response::Log(r) => Ok(r),
            Response::Error(e) => bail!("node {:?}: {e}", node.name),
            _ => bail!(
                "node {:?} answered a log request with something else",
                node.name
            ),
        }
    }

    /// The node's latest signed tree head and the peer heads it witnessed (§18.12). Neither
    /// is verified here.
    pub async fn log_head(&self, node: &Entry) -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
        match self.log_request(node, LogRequest::Head).await? {
            LogResponse::Head { head, witnessed } => Ok((head, witnessed)),
            LogResponse::Proof(_) => {
                bail!("node {:?} answered a head request with a proof", node.name)
            }
        }
    }

    /// The inclusion receipt of `leaf` (§18.12), not verified here.
    pub async fn log_prove(
        &self,
        node: &Entry,
        leaf: Digest32,
        tree_size: Option<u64>,
    ) -> anyhow::Result<Vec<u8>> {
        let req = LogRequest::Prove {
            leaf_hash: leaf,
            tree_size,
        };
        match self.log_request(node, req).await? {
            LogResponse::Proof(p) => Ok(p),
            LogResponse::Head { .. } => {
                bail!("node {:?} answered a proof request with a head", node.name)
            }
        }
    }

    /// The consistency receipt between two sizes (§18.12), not verified here.
    pub async fn log_consistency(
        &self,
        node: &Entry,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<Vec<u8>> {
        match self
            .log_request(node, LogRequest::Consistency { old_size, new_size })
            .await?
        {
            LogResponse::Proof(p) => Ok(p),
            LogResponse::Head { .. } => {
                bail!("node {:?} answered a proof request with a head", node.name)
            }
        }
    }

    /// Upgrades a promise (§18.6): waits until its deadline has passed, asks the node for the
    /// inclusion receipt of the receipt's leaf, checks that it keeps the promise (§18.8.4)
    /// and returns the receipt carrying it in header 394, to be stored in place of the bare
    /// one. A node that cannot prove the leaf by the deadline broke its promise.
    pub async fn upgrade_promise(
        &self,
        node: &Entry,
        receipt: &[u8],
        promise: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let p = Promise::parse(promise).context("the promise does not decode")?;
        let wait = (p.body.deadline + 1).saturating_sub(unix_now());
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let leaf = tlog::receipt_leaf_hash(receipt)?;
        let inclusion = self.log_prove(node, leaf, None).await.with_context(|| {
            format!(
                "node {:?} broke its promise (§18.6): it cannot prove the receipt is in its log after the deadline {}",
                node.name, p.body.deadline
            )
        })?;
        verify_promise(promise, &inclusion, &node.key)
            .with_context(|| format!("node {:?} did not keep its promise (§18.8.4)", node.name))?;
        Ok(tlog::attach_inclusion_receipts(receipt, &[inclusion])?)
    }
}
