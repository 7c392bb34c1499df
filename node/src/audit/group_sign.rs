//! Merkle batch signing while requests queue (§12.4.2): payloads queued for the audit log
//! unsigned are signed by the commit that makes them durable, all those of one group under
//! one signature. A group of one gets an ordinary receipt (§4); a larger group one batch
//! receipt each (§5.3), which verifies on its own like any receipt.

use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_protocol::audit_log::record;
use quorate_protocol::receipt::{EncodedPayload, MAX_RECEIPT_LEN, ReceiptError};

use super::Outcome;

/// What an append queues for the next commit.
pub(super) enum Pending {
    /// The record of a receipt signed already.
    Record(Vec<u8>),
    /// A payload to sign in the commit, and the key to sign it with.
    Payload(EncodedPayload, Arc<SecretKey>),
}

/// Records to commit, each with the outcome its waiter reads.
pub(super) type Records = Vec<(Vec<u8>, Arc<Outcome>)>;

/// What a batch receipt adds to its payload at most: the array and integer heads (16 bytes),
/// a path of up to 20 hashes (34 bytes each with their heads) and the signed root (under
/// 300 bytes), with room to spare.
const BATCH_OVERHEAD: usize = 2048;

/// Whether a batch receipt carrying `payload` stays within the receipt size limit (§5.3);
/// a larger payload is signed alone.
pub(super) fn fits_a_batch(payload: &EncodedPayload) -> bool {
    payload.as_bytes().len() + BATCH_OVERHEAD <= MAX_RECEIPT_LEN
}

/// Signs the payloads queued with one key in one group, in order, at a time: one receipt
/// each (`quorate_protocol::batch_receipt::sign_group`).
pub(super) type GroupSigner =
    fn(&[&EncodedPayload], &SecretKey, u64) -> Result<Vec<Vec<u8>>, ReceiptError>;

/// Signs the payloads of a group with `sign_group`, those queued with one key together, at
/// time `now`. Returns the records to commit with their outcomes (each payload's receipt set
/// in `signed`), and the outcomes of payloads that could not be signed (`sign_failed` set),
/// which are not committed.
pub(super) fn sign_pending(
    pending: Vec<(Pending, Arc<Outcome>)>,
    now: u64,
    sign_group: GroupSigner,
) -> (Records, Vec<Arc<Outcome>>) {
    let mut records = Vec::with_capacity(pending.len());
    let mut payloads = Vec::new();
    for (entry, outcome) in pending {
        match entry {
            Pending::Record(r) => records.push((r, outcome)),
            Pending::Payload(p, key) => payloads.push((p, key, outcome)),
        }
    }
    let mut failed = Vec::new();
    while let Some((_, key, _)) = payloads.first() {
        let key = key.clone();
        let (same, rest): (Vec<_>, Vec<_>) = payloads
            .into_iter()
            .partition(|(_, k, _)| Arc::ptr_eq(k, &key));
        payloads = rest;
        let refs: Vec<&EncodedPayload> = same.iter().map(|(p, _, _)| p).collect();
        // A signer that returned another number of receipts than payloads would leave some
        // waiters with neither a receipt nor an error: the group fails instead.
        let signed = sign_group(&refs, &key, now).and_then(|receipts| {
            if receipts.len() == refs.len() {
                Ok(receipts)
            } else {
                Err(ReceiptError::Payload(format!(
                    "{} receipts for {} payloads",
                    receipts.len(),
                    refs.len()
                )))
            }
        });
        match signed {
            Ok(receipts) => {
                for (receipt, (_, _, outcome)) in receipts.into_iter().zip(same) {
                    records.push((record(&receipt), outcome.clone()));
                    let _ = outcome.signed.set(receipt);
                }
            }
            Err(e) => {
                tracing::error!(
                    receipts = same.len(),
                    "cannot sign a group of receipts: {e}"
                );
                for (_, _, outcome) in same {
                    let _ = outcome.sign_failed.set(e.to_string());
                    failed.push(outcome);
                }
            }
        }
    }
    (records, failed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::{AppendError, AuditLog, Leader};
    use crate::test_support::payload;
    use quorate_protocol::audit_log::scan;
    use quorate_protocol::batch_receipt::{AnyReceipt, parse_any};

    /// A fresh log in a temporary folder, and a key.
    fn fresh_log() -> (tempfile::TempDir, Arc<AuditLog>, Arc<SecretKey>) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(&dir.path().join("a.qlog")).unwrap();
        (dir, Arc::new(log), Arc::new(SecretKey::from_seed(&[6; 32])))
    }

    /// Payloads appended at once by many tasks come back as receipts that each verify alone
    /// under the node's key and attest exactly their own payload; the log holds exactly those
    /// receipts, and at least one commit signed several of them under one root.
    #[test]
    fn queued_payloads_are_signed_per_group_and_logged_as_returned() {
        let (dir, log, key) = fresh_log();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut batched = 0;
        let mut returned = Vec::new();
        // Bursts of 32 appends: while one commit runs, the others gather into the next.
        for burst in 0..4u8 {
            let jobs = (0..32u8).map(|i| {
                let log = log.clone();
                let key = key.clone();
                let p = payload(burst * 32 + i);
                rt.spawn(async move {
                    let r = log
                        .append_payload_async(p.encode().unwrap(), key, Leader::Pool)
                        .await
                        .unwrap();
                    (p, r)
                })
            });
            let jobs: Vec<_> = jobs.collect();
            for j in jobs {
                let (p, r) = rt.block_on(j).unwrap();
                let parsed = parse_any(&r).unwrap();
                assert_eq!(parsed.payload(), &p);
                parsed.sign1().verify(&key.public_key()).unwrap();
                if let AnyReceipt::Batch(b) = parsed {
                    assert!(b.root.size >= 2);
                    batched += 1;
                }
                returned.push(r);
            }
        }
        assert!(batched > 0, "no commit signed a batch");
        let bytes = std::fs::read(dir.path().join("a.qlog")).unwrap();
        let mut logged: Vec<Vec<u8>> = scan(&bytes).unwrap().records;
        logged.sort();
        returned.sort();
        assert_eq!(logged, returned);
    }

    /// Signs as the node does, except that a group under the key of seed 7 fails to sign,
    /// and one under the key of seed 8 comes back a receipt short.
    fn failing_for_seeds_7_and_8(
        payloads: &[&EncodedPayload],
        key: &SecretKey,
        now: u64,
    ) -> Result<Vec<Vec<u8>>, ReceiptError> {
        let seed = |b: u8| SecretKey::from_seed(&[b; 32]).public_key();
        if key.public_key() == seed(7) {
            return Err(ReceiptError::Payload("injected signing failure".into()));
        }
        let mut receipts = quorate_protocol::batch_receipt::sign_group(payloads, key, now)?;
        if key.public_key() == seed(8) {
            receipts.pop();
        }
        Ok(receipts)
    }

    /// A group whose signing fails, or yields a receipt short, fails exactly the appends
    /// queued under its key, each with a signing error and none left waiting; the payloads
    /// queued under another key in the same commits are signed and logged, nothing of the
    /// failed ones reaches the log, and the log goes on taking appends afterwards.
    #[test]
    fn a_group_that_cannot_be_signed_fails_only_its_own_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(&dir.path().join("a.qlog")).unwrap();
        log.sign_group = failing_for_seeds_7_and_8;
        let log = Arc::new(log);
        let keys = [6u8, 7, 8].map(|b| Arc::new(SecretKey::from_seed(&[b; 32])));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let mut good = Vec::new();
        for burst in 0..4u8 {
            let jobs: Vec<_> = (0..30u8)
                .map(|i| {
                    let (log, key) = (log.clone(), keys[usize::from(i % 3)].clone());
                    let p = payload(burst * 30 + i);
                    rt.spawn(async move {
                        let appended = tokio::time::timeout(
                            std::time::Duration::from_secs(30),
                            log.append_payload_async(
                                p.encode().unwrap(),
                                key.clone(),
                                Leader::Pool,
                            ),
                        )
                        .await
                        .expect("an append was left waiting");
                        (i % 3, p, key, appended)
                    })
                })
                .collect();
            for j in jobs {
                match rt.block_on(j).unwrap() {
                    (0, p, key, Ok(r)) => {
                        let parsed = parse_any(&r).unwrap();
                        assert_eq!(parsed.payload(), &p);
                        parsed.sign1().verify(&key.public_key()).unwrap();
                        good.push(r);
                    }
                    (1 | 2, _, _, Err(AppendError::Signing(_))) => {}
                    (k, _, _, other) => panic!("key {k}: {:?}", other.map(|r| r.len())),
                }
            }
        }
        let after = payload(200);
        let r = rt
            .block_on(log.append_payload_async(
                after.encode().unwrap(),
                keys[0].clone(),
                Leader::Pool,
            ))
            .unwrap();
        good.push(r);
        let bytes = std::fs::read(dir.path().join("a.qlog")).unwrap();
        let mut logged = scan(&bytes).unwrap().records;
        logged.sort();
        good.sort();
        assert_eq!(logged, good);
    }

    /// A payload too large for a batch receipt is signed alone, and still logged.
    #[test]
    fn a_payload_too_large_for_a_batch_is_signed_alone() {
        let (dir, log, key) = fresh_log();
        let mut big = payload(1);
        big.nonce = vec![1; 64];
        big.runtime = "r".repeat(MAX_RECEIPT_LEN - 1500);
        let encoded = big.encode().unwrap();
        assert!(!fits_a_batch(&encoded));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let r = rt
            .block_on(log.append_payload_async(encoded, key.clone(), Leader::Pool))
            .unwrap();
        assert_eq!(r, big.sign(&key).unwrap());
        let bytes = std::fs::read(dir.path().join("a.qlog")).unwrap();
        assert_eq!(scan(&bytes).unwrap().records, vec![r]);
    }
}
