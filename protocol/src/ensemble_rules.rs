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

use std::collections::{HashMap, VecDeque};

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
pub fn input_digest(inputs: &[crate::tensor::Tensor]) -> Digest32 {
    let mut bytes = Vec::new();
    for t in inputs {
        bytes.extend_from_slice(&crate::receipt::Commitment::to(t, None).digest);
    }
    quorate_crypto::tensor_digest::sha256(&bytes)
}

/// The recent ensemble jobs a member took part in, for the repeated-input rule (M1): the
/// distinct member sets per input, each with the number of the last job that used it, so
/// that a start compares its set only with those on the same input (a set used again is
/// remembered once, from its last use); and the jobs in the order they came, for the age
/// limit and the bound.
pub struct RecentInputs {
    /// `(input, job number, when)`, oldest first.
    order: VecDeque<(Digest32, u64, u64)>,
    by_input: HashMap<Digest32, Vec<(Vec<PublicKey>, u64)>>,
    next: u64,
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
            order: VecDeque::new(),
            by_input: HashMap::new(),
            next: 0,
        }
    }

    /// Jobs remembered (a job whose member set was used again later counts until it ages out).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no job is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Forgets the oldest job, and its member set unless a later job used it.
    fn forget_oldest(&mut self) {
        let Some((input, number, _)) = self.order.pop_front() else {
            return;
        };
        if let Some(sets) = self.by_input.get_mut(&input) {
            sets.retain(|(_, last)| *last != number);
            if sets.is_empty() {
                self.by_input.remove(&input);
            }
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
            .order
            .front()
            .is_some_and(|(_, _, at)| now_ms.saturating_sub(*at) > RECENT_INPUT_TTL_MS)
        {
            self.forget_oldest();
        }
        let difference = |seen: &[PublicKey]| {
            seen.iter().filter(|k| !members.contains(k)).count()
                + members.iter().filter(|k| !seen.contains(k)).count()
        };
        for (seen, _) in self.by_input.get(&input).into_iter().flatten() {
            let differ = difference(seen);
            if differ > 0 && differ < threshold as usize {
                return Err(refuse(
                    ErrorCode::NotAllowed,
                    format!(
                        "this input was aggregated recently over a member set that differs from this one by {differ} member(s), fewer than the threshold {threshold}: the two sums would isolate them"
                    ),
                ));
            }
        }
        if self.order.len() >= RECENT_INPUTS {
            self.forget_oldest();
        }
        let number = self.next;
        self.next += 1;
        self.order.push_back((input, number, now_ms));
        let sets = self.by_input.entry(input).or_default();
        match sets.iter_mut().find(|(seen, _)| difference(seen) == 0) {
            Some((_, last)) => *last = number,
            None => sets.push((members.to_vec(), number)),
        }
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

    #[test]
    fn a_set_used_again_is_remembered_once_from_its_last_use() {
        let mut r = RecentInputs::new();
        let abc = [key(1), key(2), key(3)];
        for t in 0..100 {
            r.check_and_record([9; 32], &abc, 2, t).unwrap();
        }
        assert_eq!(r.by_input[&[9; 32]].len(), 1, "one distinct set");
        // A day after the first use but not after the last, it is still remembered.
        let e = r
            .check_and_record([9; 32], &abc[..2], 2, 50 + RECENT_INPUT_TTL_MS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAllowed);
        // A day after the last use it is forgotten, and so is every job of it.
        r.check_and_record([9; 32], &abc[..2], 2, 100 + RECENT_INPUT_TTL_MS)
            .unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_oldest_jobs_are_forgotten_at_the_bound_and_only_they() {
        let mut r = RecentInputs::new();
        let abc = [key(1), key(2), key(3)];
        // Two jobs on input 9, then enough on other inputs to reach the bound.
        r.check_and_record([9; 32], &abc, 2, 0).unwrap();
        r.check_and_record([9; 32], &[key(1), key(4), key(5)], 2, 1)
            .unwrap();
        for i in 0..RECENT_INPUTS - 2 {
            let mut input = [0u8; 32];
            input[..8].copy_from_slice(&(i as u64).to_le_bytes());
            r.check_and_record(input, &abc, 2, 2).unwrap();
        }
        assert_eq!(r.len(), RECENT_INPUTS);
        // Still remembered: a set one member short of either job on input 9 is refused.
        assert!(r.check_and_record([9; 32], &abc[..2], 2, 3).is_err());
        // One more job pushes out the first on input 9, not the second.
        r.check_and_record([7; 32], &abc, 2, 3).unwrap();
        assert_eq!(r.len(), RECENT_INPUTS);
        assert!(
            r.check_and_record([9; 32], &[key(1), key(4)], 2, 4)
                .is_err(),
            "the second is still remembered"
        );
        r.check_and_record([9; 32], &abc[..2], 2, 5)
            .expect("the first job on input 9 is forgotten");
    }
}
