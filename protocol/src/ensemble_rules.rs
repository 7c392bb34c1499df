//! What a member checks before it runs its model for a private ensemble (§15.2, §17): the
//! rules that keep one member's output from being isolated by an aggregator that picks the
//! members, the parameters or the inputs. Pure: the roster, the peer and the time are handed
//! in by the node.
//!
//! - The job was started by the aggregator the parameters name, and only that peer's rounds
//!   are answered (H2).
//! - Every member is a distinct node of the current roster serving the model listed for it,
//!   and the member count and threshold meet the roster's governance (H1).
//! - Noise parameters are exactly those their stated (ε, δ) require (M2).
//! - The same input is not aggregated again over a member set that differs from a recent
//!   one by fewer than the threshold (M1): the difference of two such sums would reveal
//!   fewer than `t` members' outputs.

use std::collections::VecDeque;

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;

use crate::ensemble::EnsembleStart;
use crate::ensemble_dp;
use crate::messages::common::{ErrorCode, ErrorFrame};
use crate::roster::{Role, Roster};

/// Jobs remembered for the repeated-input rule.
pub const RECENT_INPUTS: usize = 4096;
/// How long a job is remembered for the repeated-input rule, in milliseconds (24 hours).
pub const RECENT_INPUT_TTL_MS: u64 = 24 * 3600 * 1000;

fn refuse(code: ErrorCode, why: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, why)
}

/// §17 (H2): a job is served only when the authenticated `peer` that started it is the
/// aggregator its parameters name; the member machine binds the job to that peer.
pub fn check_aggregator(start: &EnsembleStart, peer: &PublicKey) -> Result<(), ErrorFrame> {
    if *peer != start.params.aggregator {
        return Err(refuse(
            ErrorCode::NotAllowed,
            "the job names another aggregator than the peer that sent it",
        ));
    }
    Ok(())
}

/// Checks an [`EnsembleStart`] received by the member with key `me` from the authenticated
/// `peer`, under the current `roster` (§15.2, §17).
pub fn check_start(
    start: &EnsembleStart,
    me: &PublicKey,
    peer: &PublicKey,
    roster: &Roster,
) -> Result<(), ErrorFrame> {
    let p = &start.params;
    if p.members.get(start.index as usize) != Some(me) {
        return Err(refuse(
            ErrorCode::BadRequest,
            format!("member {} of the job is not this node's key", start.index),
        ));
    }
    check_aggregator(start, peer)?;
    for (i, (key, model)) in p.members.iter().zip(&p.models).enumerate() {
        let entry = roster
            .by_key(key)
            .filter(|e| e.role == Role::Node)
            .ok_or_else(|| {
                refuse(
                    ErrorCode::NotAllowed,
                    format!(
                        "member {i} (key {}) is not a node of the roster",
                        key.key_id()
                    ),
                )
            })?;
        if !entry.models.contains(model) {
            return Err(refuse(
                ErrorCode::NotAllowed,
                format!(
                    "member {i} ({}) does not serve model sha256:{} in the roster",
                    entry.name,
                    hex::encode(model)
                ),
            ));
        }
    }
    roster
        .governance
        .check_ensemble(p.members.len() as u32, p.threshold)
        .map_err(|e| refuse(ErrorCode::NotAllowed, e.to_string()))?;
    ensemble_dp::check_noise(p).map_err(|e| refuse(ErrorCode::NotAllowed, e))?;
    Ok(())
}

/// The input digest the repeated-input rule keys on: the plain commitments of the inputs,
/// in order. Kept in the member's memory only; never sent.
pub fn input_digest(start: &EnsembleStart) -> Digest32 {
    let mut bytes = Vec::new();
    for t in &start.inputs {
        bytes.extend_from_slice(&crate::receipt::Commitment::to(t, None).digest);
    }
    quorate_crypto::tensor_digest::sha256(&bytes)
}

struct Seen {
    input: Digest32,
    members: Vec<PublicKey>,
    at_ms: u64,
}

/// The recent ensemble jobs a member took part in, for the repeated-input rule (M1).
pub struct RecentInputs {
    seen: VecDeque<Seen>,
}

impl Default for RecentInputs {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentInputs {
    /// An empty memory.
    pub fn new() -> Self {
        Self {
            seen: VecDeque::new(),
        }
    }

    /// Refuses a job on `input` whose member set differs from a remembered job's on the same
    /// input by at least one and fewer than `threshold` members; otherwise remembers it.
    /// `now_ms` is any monotonic clock in milliseconds.
    pub fn check_and_record(
        &mut self,
        input: Digest32,
        members: &[PublicKey],
        threshold: u32,
        now_ms: u64,
    ) -> Result<(), ErrorFrame> {
        while self
            .seen
            .front()
            .is_some_and(|s| now_ms.saturating_sub(s.at_ms) > RECENT_INPUT_TTL_MS)
        {
            self.seen.pop_front();
        }
        for s in self.seen.iter().filter(|s| s.input == input) {
            let differ = s.members.iter().filter(|k| !members.contains(k)).count()
                + members.iter().filter(|k| !s.members.contains(k)).count();
            if differ > 0 && differ < threshold as usize {
                return Err(refuse(
                    ErrorCode::NotAllowed,
                    format!(
                        "this input was aggregated recently over a member set that differs from this one by {differ} member(s), fewer than the threshold {threshold}: the two sums would isolate them"
                    ),
                ));
            }
        }
        if self.seen.len() >= RECENT_INPUTS {
            self.seen.pop_front();
        }
        self.seen.push_back(Seen {
            input,
            members: members.to_vec(),
            at_ms: now_ms,
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    fn key(i: u8) -> PublicKey {
        SecretKey::from_seed(&[i; 32]).public_key()
    }

    #[test]
    fn the_same_input_over_a_set_missing_one_member_is_refused() {
        let mut r = RecentInputs::new();
        let abc = [key(1), key(2), key(3)];
        r.check_and_record([9; 32], &abc, 2, 0).unwrap();
        // The same set again reveals nothing new.
        r.check_and_record([9; 32], &abc, 2, 10).unwrap();
        // One member left out: the difference of the sums is that member's output.
        let e = r.check_and_record([9; 32], &abc[..2], 2, 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAllowed);
        // Another input is unaffected, and so is a set differing by at least t members.
        r.check_and_record([8; 32], &abc[..2], 2, 30).unwrap();
        r.check_and_record([9; 32], &[key(1), key(4), key(5)], 2, 40)
            .unwrap();
        // After a day the job is forgotten.
        r.check_and_record([9; 32], &abc[..2], 2, 41 + RECENT_INPUT_TTL_MS)
            .unwrap();
    }
}
