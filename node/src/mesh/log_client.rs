//! The client's side of the transparency log (§18.11, §18.12): log requests, the check that
//! a reply proves its receipt is in the node's log, and the upgrade of a promise.

use std::time::Duration;

use anyhow::{Context, bail};
use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::messages::{InferResponse, LogRequest, LogResponse, Request, Response};
use quorate_protocol::roster::Entry;
use quorate_protocol::tlog::{self, Promise};
use quorate_verify::tlog::{
    StatementCache, verify_promise, verify_promise_doc, verify_receipt_inclusions_cached,
};

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

/// The statements this process verified last (§18.11.3): replies of one group commit share
/// one statement, and the clients of one process (each connection of a busy application)
/// check its signature once.
static STATEMENTS: std::sync::LazyLock<StatementCache> =
    std::sync::LazyLock::new(|| StatementCache::new(64));

/// The promises this process verified last, with their keys: a promise is the same bytes for
/// every reply of its window, so it is decoded and verified once per window.
static PROMISES: std::sync::Mutex<Vec<(PublicKey, Vec<u8>, Promise)>> =
    std::sync::Mutex::new(Vec::new());

/// The verified promise these bytes hold, under the node's key.
fn promise_of(bytes: &[u8], node: &Entry) -> anyhow::Result<Promise> {
    let lock = || {
        PROMISES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((_, _, p)) = lock()
        .iter()
        .find(|(k, b, _)| *k == node.key && b.as_slice() == bytes)
    {
        return Ok(*p);
    }
    let p = verify_promise_doc(bytes, &node.key)
        .context("the node's promise does not verify under its key (§18.8.4)")?;
    let mut kept = lock();
    if kept.len() >= 16 {
        kept.remove(0);
    }
    kept.push((node.key, bytes.to_vec(), p));
    Ok(p)
}

/// Checks that an inference reply proves its receipt is in the node's log (§18.11.3): an
/// inclusion receipt of the receipt's own leaf in header 394 under the node's key, or a
/// promise signed by the node for that leaf. A reply with neither is refused.
pub fn check_log_proof(
    node: &Entry,
    reply: &InferResponse,
    issued_at: u64,
) -> anyhow::Result<LogProof> {
    if let Some(promise) = &reply.promise {
        let p = promise_of(promise, node)?;
        if !p.covers(issued_at) {
            bail!(
                "the node's promise covers receipts issued in [{}, {}), not this one issued at {issued_at}",
                p.from,
                p.until
            );
        }
        return Ok(LogProof::Promised {
            promise: promise.clone(),
            deadline: p.deadline,
        });
    }
    let inclusions = verify_receipt_inclusions_cached(&reply.receipt, &node.key, &STATEMENTS)
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
        verify_promise(promise, receipt, &inclusion, &node.key)
            .with_context(|| format!("node {:?} did not keep its promise (§18.8.4)", node.name))?;
        Ok(tlog::attach_inclusion_receipts(receipt, &[inclusion])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::signed_receipt as receipt;
    use quorate_crypto::SecretKey;
    use quorate_crypto::merkle::MerkleLog;
    use quorate_protocol::roster::Role;
    use quorate_protocol::tlog::TreeStatement;

    fn entry(key: &SecretKey) -> Entry {
        Entry {
            name: "node-1".into(),
            key: key.public_key(),
            role: Role::Node,
            addresses: vec![],
            models: vec![],
            providers: vec![],
        }
    }

    /// The receipt `of` with the inclusion receipt, signed by `signer`, of leaf `index` in
    /// a log of `receipts`.
    fn proved(of: &[u8], receipts: &[Vec<u8>], index: u64, signer: &SecretKey) -> Vec<u8> {
        let log =
            MerkleLog::from_leaves(receipts.iter().map(|r| tlog::receipt_leaf_hash(r).unwrap()))
                .unwrap();
        let n = log.len();
        let s = TreeStatement::sign(&log, n, 1_700_000_001, signer).unwrap();
        let inc = s
            .inclusion_receipt(index, log.inclusion_proof(index, n).unwrap())
            .unwrap();
        tlog::attach_inclusion_receipts(of, &[inc]).unwrap()
    }

    fn reply(receipt: Vec<u8>, promise: Option<Vec<u8>>) -> InferResponse {
        InferResponse {
            outputs: vec![],
            output_salts: None,
            receipt,
            promise,
        }
    }

    fn promise(from: u64, signer: &SecretKey) -> Vec<u8> {
        Promise {
            log_id: signer.public_key().key_id(),
            from,
            until: from + 5,
            deadline: from + 12,
        }
        .sign(signer)
        .unwrap()
    }

    /// Check 7 of §11.4 refuses every reply that does not prove its own receipt is in the
    /// answering node's log.
    #[test]
    fn a_reply_must_prove_its_own_receipt_in_its_nodes_log() {
        let node = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let e = entry(&node);
        let receipts: Vec<Vec<u8>> = (0..3).map(|i| receipt(i, &node)).collect();

        let good = proved(&receipts[1], &receipts, 1, &node);
        assert_eq!(
            check_log_proof(&e, &reply(good, None), 0).unwrap(),
            LogProof::Included {
                leaf_index: 1,
                tree_size: 3
            }
        );
        // No proof at all.
        assert!(check_log_proof(&e, &reply(receipts[1].clone(), None), 0).is_err());
        // Signed by another key (another node's log).
        let foreign = proved(&receipts[1], &receipts, 1, &other);
        assert!(check_log_proof(&e, &reply(foreign, None), 0).is_err());
        // Another leaf's inclusion receipt attached to this receipt.
        let swapped = proved(&receipts[1], &receipts, 2, &node);
        assert!(check_log_proof(&e, &reply(swapped, None), 0).is_err());
        // A log that does not hold this receipt at all.
        let others: Vec<Vec<u8>> = (10..13).map(|i| receipt(i, &node)).collect();
        let absent = proved(&receipts[1], &others, 1, &node);
        assert!(check_log_proof(&e, &reply(absent, None), 0).is_err());

        // The receipts were issued at 1_700_000_000: a promise for the window holding it.
        let issued = 1_700_000_000;
        let kept = reply(receipts[0].clone(), Some(promise(issued, &node)));
        assert!(matches!(
            check_log_proof(&e, &kept, issued).unwrap(),
            LogProof::Promised { deadline, .. } if deadline == issued + 12
        ));
        // A window that does not hold the receipt's time.
        let elsewhere = reply(receipts[0].clone(), Some(promise(issued + 5, &node)));
        assert!(check_log_proof(&e, &elsewhere, issued).is_err());
        let wrong_key = reply(receipts[0].clone(), Some(promise(issued, &other)));
        assert!(check_log_proof(&e, &wrong_key, issued).is_err());
        assert!(
            check_log_proof(&e, &reply(receipts[0].clone(), Some(vec![0xa0])), issued).is_err()
        );
    }
}
