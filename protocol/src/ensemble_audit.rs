//! Offline audit of an aggregate receipt (§15.5): replay the signed SecAgg transcript
//! through a fresh server state machine, compare its result with what the aggregator
//! signed, and check every contributor's member receipt.
//!
//! The replay recomputes exactly what an honest aggregator would have output from the same
//! signed client messages, so an aggregator that lies about the contributors, the dropouts
//! or the sum is caught; an aggregator cannot forge a member's envelope (each is signed by
//! the member's identity key, §9.8.2).

use std::sync::Arc;

use quorate_crypto::tensor_digest::Digest32;

use crate::ensemble::aggregator::{ROUND_MS, close_round};
use crate::ensemble::member_receipt::{MemberBinding, check_member_receipt, masked_input_of};
use crate::ensemble::{
    AggregatePayload, TranscriptEntry, decode_transcript, receipt_digest, transcript_digest,
};
use crate::receipt::{self, JobKind};
use crate::secagg::messages::{Limits, decode_client_message};
use crate::secagg::{Outcome, Server};

/// Why an aggregate does not hold up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The transcript file is not the one the aggregate receipt commits to.
    #[error("the transcript does not match the digest in the aggregate receipt")]
    TranscriptDigest,
    /// The transcript could not be decoded.
    #[error("transcript: {0}")]
    Transcript(String),
    /// A transcript message was refused by the replaying server (bad signature, wrong
    /// round, replayed, malformed).
    #[error("transcript message {index} (member {member}, round {round}) refused: {reason}")]
    Refused {
        /// Position in the transcript.
        index: usize,
        /// Claimed sender.
        member: u32,
        /// Claimed round.
        round: u8,
        /// The server's reason.
        reason: String,
    },
    /// Replaying the transcript does not produce a sum.
    #[error("replaying the transcript aborts: {0}")]
    ReplayAborted(String),
    /// The aggregator's contributor or dropout list differs from the replay's.
    #[error(
        "the aggregator lies about contributors: it signed {claimed:?}, the transcript gives {actual:?}"
    )]
    Contributors {
        /// Signed list.
        claimed: Vec<u32>,
        /// Replayed list.
        actual: Vec<u32>,
    },
    /// The dropout list is not the complement of the contributors.
    #[error("the dropout list {0:?} is not the complement of the contributors")]
    Dropped(Vec<u32>),
    /// The job's parameters break a rule every member checks (§15.2, §15.6): noise that
    /// does not give the stated ε, or models other than those the parameters list.
    #[error("the job's parameters are not ones members accept: {0}")]
    Params(String),
    /// The aggregator's sum differs from the replay's.
    #[error("the aggregator lies about the result: the signed sum differs from the transcript's")]
    Sum,
    /// A contributor's member receipt is missing or does not match.
    #[error("member {member}: {problem}")]
    Member {
        /// Member index.
        member: u32,
        /// What is wrong.
        problem: String,
    },
}

/// What an audit established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Contributors confirmed by the replay and by their member receipts.
    pub contributors: Vec<u32>,
    /// Dropped members.
    pub dropped: Vec<u32>,
    /// Transcript messages replayed.
    pub messages: usize,
}

/// What a replay outputs: contributors, dropped members, sum.
pub type Replayed = (Vec<u32>, Vec<u32>, Vec<u64>);

/// Replays a transcript through a fresh server; returns (contributors, dropped, sum).
pub fn replay(
    payload: &AggregatePayload,
    entries: &[TranscriptEntry],
) -> Result<Replayed, AuditError> {
    let cfg = Arc::new(payload.params.round_config());
    let mut server =
        Server::new(cfg, 0, ROUND_MS, 1).map_err(|e| AuditError::ReplayAborted(e.to_string()))?;
    let mut now = 0u64;
    for round in 0..=4u8 {
        for (index, e) in entries.iter().enumerate().filter(|(_, e)| e.round == round) {
            // The envelope's own sender and round must be the ones the entry claims.
            let limits = Limits::of(&payload.params.round_config());
            let m =
                decode_client_message(&e.envelope, &limits).map_err(|err| AuditError::Refused {
                    index,
                    member: e.member,
                    round,
                    reason: err.to_string(),
                })?;
            if m.sender != e.member || m.round as u8 != round || server.round() as u8 != round {
                return Err(AuditError::Refused {
                    index,
                    member: e.member,
                    round,
                    reason: "sender or round does not match the entry or the replay".into(),
                });
            }
            server
                .handle_message(&e.envelope, now)
                .map_err(|err| AuditError::Refused {
                    index,
                    member: e.member,
                    round,
                    reason: err.to_string(),
                })?;
        }
        // Close the round as the aggregator did once every live member had answered.
        now = close_round(&mut server, round, now);
        let _ = server.poll_transmit();
        if server.outcome().is_some() {
            break;
        }
    }
    match server.outcome() {
        Some(Outcome::Sum(a)) => Ok((a.contributors.clone(), a.dropped.clone(), a.sum.clone())),
        Some(Outcome::Aborted { round, reason }) => Err(AuditError::ReplayAborted(format!(
            "round {round:?}: {reason}"
        ))),
        None => Err(AuditError::ReplayAborted(
            "the transcript ends before the unmasking round".into(),
        )),
    }
}

/// Audits an aggregate (its signature already checked by the caller) against its
/// transcript and the member receipts found (any order; signatures are checked here
/// against the member keys in the parameters).
pub fn audit(
    payload: &AggregatePayload,
    transcript: &[u8],
    member_receipts: &[Vec<u8>],
) -> Result<AuditReport, AuditError> {
    // §15.6, §17: the noise must be what the stated (ε, δ) requires, as members check.
    crate::ensemble_dp::check_noise(&payload.params).map_err(AuditError::Params)?;
    if payload.models != payload.params.models {
        return Err(AuditError::Params(
            "the receipt's member models differ from those the parameters list".into(),
        ));
    }
    if transcript_digest(transcript) != payload.transcript {
        return Err(AuditError::TranscriptDigest);
    }
    let entries = decode_transcript(transcript).map_err(|e| AuditError::Transcript(e.0))?;
    let (contributors, dropped, sum) = replay(payload, &entries)?;
    if contributors != payload.contributors {
        return Err(AuditError::Contributors {
            claimed: payload.contributors.clone(),
            actual: contributors,
        });
    }
    if dropped != payload.dropped {
        return Err(AuditError::Dropped(payload.dropped.clone()));
    }
    if sum != payload.sum {
        return Err(AuditError::Sum);
    }
    let params_digest = payload.params.digest();
    let limits = Limits::of(&payload.params.round_config());
    // Member receipts by signer index.
    let mut by_member: Vec<Option<(Vec<u8>, receipt::ReceiptPayload)>> =
        vec![None; payload.params.members.len()];
    for bytes in member_receipts {
        let Ok(r) = receipt::parse(bytes) else {
            continue;
        };
        if r.payload.kind != JobKind::EnsembleMember || r.payload.job_id != payload.job_id {
            continue;
        }
        let Some(i) = payload
            .params
            .members
            .iter()
            .position(|k| k.key_id() == r.kid() && r.sign1.verify(k).is_ok())
        else {
            continue;
        };
        by_member[i] = Some((bytes.clone(), r.payload));
    }
    for (i, slot) in by_member.iter().enumerate() {
        let u = i as u32;
        let problem = |p: &str| AuditError::Member {
            member: u,
            problem: p.to_string(),
        };
        let contributed = contributors.contains(&u);
        let Some((bytes, p)) = slot else {
            if contributed {
                return Err(problem("contributor without a valid member receipt"));
            }
            continue;
        };
        if !contributed {
            return Err(problem(
                "signed a member receipt for its masked input but is listed as dropped",
            ));
        }
        let masked = entries
            .iter()
            .filter(|e| e.member == u && e.round == 2)
            .find_map(|e| masked_input_of(&e.envelope, &limits))
            .ok_or_else(|| problem("no masked input in the transcript"))?;
        let binding = MemberBinding {
            job_id: &payload.job_id,
            nonce: &payload.nonce,
            model: &payload.models[i],
            params: &params_digest,
            inputs: &payload.inputs,
        };
        check_member_receipt(p, &binding, &masked).map_err(|e| problem(&e.to_string()))?;
        let listed: Option<&Digest32> = payload
            .member_receipts
            .iter()
            .find(|(m, _)| *m == u)
            .map(|(_, d)| d);
        if listed != Some(&receipt_digest(bytes)) {
            return Err(problem("receipt digest is not the one the aggregate lists"));
        }
    }
    Ok(AuditReport {
        contributors,
        dropped,
        messages: entries.len(),
    })
}
