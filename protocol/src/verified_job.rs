//! The replicated-job state machine of verified jobs (§14.4, §14.5), sans I/O: which replicas
//! to ask, when to replace one that failed, and when the job is decided. The caller does the
//! networking and feeds results in; the machine never reads a clock, so it can be fuzzed and
//! tested deterministically.

use crate::governance::GovernanceError;
use crate::policy::Policy;
use crate::tensor::Tensor;

/// Most replicas of one job (and most candidates considered).
pub const MAX_REPLICAS: usize = 16;

/// Indices (into `outputs`) of the largest set of pairwise-agreeing results (§14.4); ties go
/// to the set whose smallest index is smallest. Greedy per seed, so always a true clique.
pub fn largest_agreeing_group(policy: &Policy, outputs: &[&[Tensor]]) -> Vec<usize> {
    let agree = agreement_matrix(policy, outputs);
    let mut best: Vec<usize> = Vec::new();
    for seed in 0..outputs.len() {
        let group = grow_group(&agree, seed, &(0..outputs.len()).collect::<Vec<_>>());
        if group.len() > best.len() {
            best = group;
        }
    }
    best
}

/// `m[i][j]`: whether results `i` and `j` agree under `policy`.
pub fn agreement_matrix(policy: &Policy, outputs: &[&[Tensor]]) -> Vec<Vec<bool>> {
    let n = outputs.len();
    let mut m = vec![vec![true; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let a = policy.agree_all(outputs[i], outputs[j]);
            m[i][j] = a;
            m[j][i] = a;
        }
    }
    m
}

/// Starting from `seed`, adds (in index order) every member of `pool` that agrees with all
/// members so far.
fn grow_group(agree: &[Vec<bool>], seed: usize, pool: &[usize]) -> Vec<usize> {
    let mut group = vec![seed];
    for &j in pool {
        if j != seed && group.iter().all(|&g| agree[g][j]) {
            group.push(j);
        }
    }
    group.sort_unstable();
    group
}

/// The results proven wrong (§14.7): `x` is proven wrong when at least `quorum` OTHER results
/// agree pairwise and each of them disagrees with `x`. Sound whatever the inputs: if any one
/// of those witnesses is honest and honest results agree under the policy, `x` disagreeing
/// with it means `x` is not honest. `quorum` is raised to at least 2.
pub fn proven_wrong(policy: &Policy, outputs: &[&[Tensor]], quorum: usize) -> Vec<usize> {
    proven_wrong_by(policy, outputs, quorum, &|_, _| true)
}

/// [`proven_wrong`] where only results `j` with `admits(j, x)` may testify against `x` (the
/// witness scope of mesh governance, §10.6, §14.7): `x` is proven wrong when at least
/// `quorum` other results admitted against it agree pairwise and each disagrees with `x`.
/// `quorum` is raised to at least 2.
pub fn proven_wrong_by(
    policy: &Policy,
    outputs: &[&[Tensor]],
    quorum: usize,
    admits: &dyn Fn(usize, usize) -> bool,
) -> Vec<usize> {
    let quorum = quorum.max(2);
    let agree = agreement_matrix(policy, outputs);
    (0..outputs.len())
        .filter(|&x| {
            let against: Vec<usize> = (0..outputs.len())
                .filter(|&j| j != x && admits(j, x) && !agree[x][j])
                .collect();
            against
                .iter()
                .any(|&seed| grow_group(&agree, seed, &against).len() >= quorum)
        })
        .collect()
}

/// Why a verified job failed (§14.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Replicas or quorum out of range.
    #[error(
        "invalid job: {replicas} replicas with quorum {quorum} (need 1 <= quorum <= replicas <= {MAX_REPLICAS})"
    )]
    Invalid {
        /// Replicas asked for.
        replicas: usize,
        /// Quorum asked for.
        quorum: usize,
    },
    /// Fewer candidates than replicas.
    #[error("{replicas} replicas needed but only {candidates} reachable nodes serve the model")]
    TooFewNodes {
        /// Replicas asked for.
        replicas: usize,
        /// Candidates available.
        candidates: usize,
    },
    /// The job is outside the roster's governance (§10.6): refused before anything is sent.
    #[error("refused before sending: {0}")]
    NotAllowed(#[from] GovernanceError),
    /// No set of `quorum` agreeing results can be formed any more.
    #[error(
        "quorum not reached: the largest agreeing group has {agreeing} of the {quorum} results required ({answered} answered, {failed} failed, no node left to ask)"
    )]
    NoQuorum {
        /// Size of the largest agreeing group.
        agreeing: usize,
        /// Quorum required.
        quorum: usize,
        /// Results received.
        answered: usize,
        /// Replicas that failed.
        failed: usize,
    },
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the job to these candidates (indices into the candidate list).
    Dispatch(Vec<usize>),
    /// Wait for more results.
    Wait,
    /// The job is decided (see [`VerifiedJob::verdict`]).
    Decided,
    /// The job failed.
    Failed(JobError),
}

/// The state of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Not asked.
    Idle,
    /// Asked, no answer yet.
    Pending,
    /// Answered with verified outputs.
    Answered(Vec<Tensor>),
    /// Failed (error, timeout, bad receipt…), with the reason.
    Failed(String),
}

/// The decision on a verified job (§14.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Candidates whose results form the accepted agreeing group (at least the quorum).
    pub agreeing: Vec<usize>,
    /// Candidates that answered with results outside the group.
    pub disagreeing: Vec<usize>,
    /// Candidates whose answers disagree with at least `quorum` agreeing others: provable.
    pub proven_wrong: Vec<usize>,
    /// Candidates that failed, with reasons.
    pub failed: Vec<(usize, String)>,
}

/// A replicated job over a fixed, ordered candidate list (preferred first).
#[derive(Debug, Clone)]
pub struct VerifiedJob {
    policy: Policy,
    replicas: usize,
    quorum: usize,
    slots: Vec<Slot>,
    verdict: Option<Verdict>,
    failed: Option<JobError>,
}

impl VerifiedJob {
    /// Plans a job; the returned step dispatches the first `replicas` candidates.
    pub fn new(
        policy: Policy,
        replicas: usize,
        quorum: usize,
        candidates: usize,
    ) -> Result<(Self, Step), JobError> {
        if quorum == 0 || quorum > replicas || replicas > MAX_REPLICAS {
            return Err(JobError::Invalid { replicas, quorum });
        }
        if candidates < replicas {
            return Err(JobError::TooFewNodes {
                replicas,
                candidates,
            });
        }
        let mut job = Self {
            policy,
            replicas,
            quorum,
            slots: vec![Slot::Idle; candidates.min(MAX_REPLICAS * 4)],
            verdict: None,
            failed: None,
        };
        let first: Vec<usize> = (0..replicas).collect();
        for &i in &first {
            job.slots[i] = Slot::Pending;
        }
        Ok((job, Step::Dispatch(first)))
    }

    /// The default quorum for `replicas`: a strict majority.
    pub fn majority(replicas: usize) -> usize {
        replicas / 2 + 1
    }

    /// The slots, one per candidate.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The verdict, once decided.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Records verified outputs from candidate `i`. Answers from candidates not pending are
    /// ignored (a late answer from a replaced replica changes nothing).
    pub fn on_result(&mut self, i: usize, outputs: Vec<Tensor>) -> Step {
        if self.slots.get(i) == Some(&Slot::Pending) {
            self.slots[i] = Slot::Answered(outputs);
        }
        self.advance()
    }

    /// Records that candidate `i` failed; a replacement is dispatched if one is left.
    pub fn on_failure(&mut self, i: usize, reason: impl Into<String>) -> Step {
        if self.slots.get(i) == Some(&Slot::Pending) {
            self.slots[i] = Slot::Failed(reason.into());
        }
        self.advance()
    }

    fn count(&self, f: impl Fn(&Slot) -> bool) -> usize {
        self.slots.iter().filter(|s| f(s)).count()
    }

    fn answered(&self) -> Vec<(usize, &[Tensor])> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Answered(o) => Some((i, o.as_slice())),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self) -> Step {
        if self.verdict.is_some() {
            return Step::Decided;
        }
        if let Some(e) = &self.failed {
            return Step::Failed(e.clone());
        }
        let pending = self.count(|s| matches!(s, Slot::Pending));
        let answered = self.answered();
        // Keep `replicas` results coming: replace every failure while candidates remain.
        let missing = self.replicas.saturating_sub(answered.len() + pending);
        let idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i] == Slot::Idle)
            .take(missing)
            .collect();
        if !idle.is_empty() {
            for &i in &idle {
                self.slots[i] = Slot::Pending;
            }
            return Step::Dispatch(idle);
        }
        if pending > 0 {
            return Step::Wait;
        }
        let outputs: Vec<&[Tensor]> = answered.iter().map(|(_, o)| *o).collect();
        let group = largest_agreeing_group(&self.policy, &outputs);
        if group.len() >= self.quorum {
            let agreeing: Vec<usize> = group.iter().map(|&g| answered[g].0).collect();
            let verdict = Verdict {
                disagreeing: answered
                    .iter()
                    .map(|(i, _)| *i)
                    .filter(|i| !agreeing.contains(i))
                    .collect(),
                proven_wrong: proven_wrong(&self.policy, &outputs, self.quorum)
                    .into_iter()
                    .map(|g| answered[g].0)
                    .collect(),
                agreeing,
                failed: self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| match s {
                        Slot::Failed(r) => Some((i, r.clone())),
                        _ => None,
                    })
                    .collect(),
            };
            self.verdict = Some(verdict);
            return Step::Decided;
        }
        // No quorum among the results: ask one more node as a tie-breaker if any is left.
        if let Some(i) = self.slots.iter().position(|s| *s == Slot::Idle) {
            self.slots[i] = Slot::Pending;
            return Step::Dispatch(vec![i]);
        }
        let e = JobError::NoQuorum {
            agreeing: group.len(),
            quorum: self.quorum,
            answered: answered.len(),
            failed: self.count(|s| matches!(s, Slot::Failed(_))),
        };
        self.failed = Some(e.clone());
        Step::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(x: f32) -> Vec<Tensor> {
        vec![Tensor::from_f32("y", vec![1], &[x]).unwrap()]
    }

    #[test]
    fn majority_accepts_and_names_the_outlier() {
        let (mut job, step) = VerifiedJob::new(Policy::Exact, 3, 2, 3).unwrap();
        assert_eq!(step, Step::Dispatch(vec![0, 1, 2]));
        assert_eq!(job.on_result(0, out(1.0)), Step::Wait);
        assert_eq!(job.on_result(2, out(5.0)), Step::Wait);
        assert_eq!(job.on_result(1, out(1.0)), Step::Decided);
        let v = job.verdict().unwrap();
        assert_eq!(v.agreeing, vec![0, 1]);
        assert_eq!(v.disagreeing, vec![2]);
        assert_eq!(v.proven_wrong, vec![2]);
    }

    #[test]
    fn failures_are_replaced_then_quorum_fails_clearly() {
        let (mut job, _) = VerifiedJob::new(Policy::Exact, 2, 2, 3).unwrap();
        assert_eq!(job.on_failure(0, "timeout"), Step::Dispatch(vec![2]));
        assert_eq!(job.on_result(1, out(1.0)), Step::Wait);
        // A late answer from the replaced replica is ignored.
        assert_eq!(job.on_result(0, out(1.0)), Step::Wait);
        match job.on_result(2, out(2.0)) {
            Step::Failed(JobError::NoQuorum { agreeing: 1, .. }) => {}
            s => panic!("{s:?}"),
        }
        assert!(job.verdict().is_none());
    }

    #[test]
    fn a_tie_asks_one_more_node() {
        let (mut job, _) = VerifiedJob::new(Policy::Exact, 2, 2, 3).unwrap();
        job.on_result(0, out(1.0));
        assert_eq!(job.on_result(1, out(2.0)), Step::Dispatch(vec![2]));
        assert_eq!(job.on_result(2, out(2.0)), Step::Decided);
        assert_eq!(job.verdict().unwrap().agreeing, vec![1, 2]);
    }

    #[test]
    fn invalid_plans_are_refused() {
        assert!(VerifiedJob::new(Policy::Exact, 3, 4, 5).is_err());
        assert!(VerifiedJob::new(Policy::Exact, 3, 0, 5).is_err());
        assert!(matches!(
            VerifiedJob::new(Policy::Exact, 3, 2, 2),
            Err(JobError::TooFewNodes { .. })
        ));
    }

    #[test]
    fn conviction_needs_quorum_of_agreeing_witnesses() {
        let a = out(1.0);
        let b = out(2.0);
        let c = out(3.0);
        // One witness is never enough.
        assert!(proven_wrong(&Policy::Exact, &[&a, &b], 1).is_empty());
        // Two agreeing witnesses convict the third.
        assert_eq!(proven_wrong(&Policy::Exact, &[&a, &a, &b], 2), vec![2]);
        // Three mutually disagreeing results convict nobody.
        assert!(proven_wrong(&Policy::Exact, &[&a, &b, &c], 2).is_empty());
    }
}
