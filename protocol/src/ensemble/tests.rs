//! The ensemble machines driven against each other in memory (§15.3): no network, no clock.

use quorate_crypto::secagg::rng::DeterministicRng;
use quorate_crypto::{PublicKey, SecretKey};

use super::aggregator::{Aggregator, AggregatorError, AggregatorJob, Answer, Send, ToMember};
use super::member::{MemberJob, ModelRun, contribution};
use super::*;
use crate::ensemble_audit;
use crate::messages::common::ErrorCode;
use crate::tensor::Tensor;

const N: usize = 5;

pub(super) fn member_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[i as u8 + 1; 32])
}

pub(super) fn aggregator_key() -> SecretKey {
    SecretKey::from_seed(&[99; 32])
}

/// Member `i`'s model output: class 1 gets `0.1 * (i + 1)`.
pub(super) fn probs(i: usize) -> Vec<f32> {
    let p = 0.1 * (i as f32 + 1.0);
    vec![1.0 - p, p]
}

pub(super) fn job(mode: Mode) -> AggregatorJob {
    let params = aggregator::job_params(
        mode,
        [7; 32],
        aggregator_key().public_key(),
        (0..N).map(|i| member_key(i).public_key()).collect(),
        vec![[4; 32]; N],
        2,
        3,
        None,
    )
    .unwrap();
    AggregatorJob {
        params,
        job_id: [1; 16],
        nonce: vec![2; 32],
        inputs: vec![Tensor::from_f32("x", vec![1, 2], &[0.5, 0.5]).unwrap()],
        input_salts: vec![[3; 32]],
    }
}

/// The members' side of the harness: one machine per member, and how each misbehaves.
pub(super) struct Members {
    pub(super) jobs: Vec<Option<MemberJob>>,
    /// Member `i` goes silent instead of answering round `r`.
    pub(super) silent_from: Vec<Option<u8>>,
    /// Member `i` sends its round-2 reply without a receipt, or with a receipt that does
    /// not commit to its masked input.
    bad_receipt: Vec<Option<&'static str>>,
    pub(super) aggregator: PublicKey,
    now: u64,
}

impl Members {
    pub(super) fn new() -> Self {
        Self {
            jobs: (0..N).map(|_| None).collect(),
            silent_from: vec![None; N],
            bad_receipt: vec![None; N],
            aggregator: aggregator_key().public_key(),
            now: 0,
        }
    }

    pub(super) fn answer(&mut self, s: Send) -> (u32, Answer) {
        let i = s.to as usize;
        self.now += 1;
        let round = match &s.message {
            ToMember::Start(_) => 0,
            ToMember::Round(r) => r.round,
            ToMember::Input(_) => 2,
        };
        if self.silent_from[i].is_some_and(|r| round >= r && round < ROUND_ABORT) {
            return (s.to, Answer::Failed("timed out".into()));
        }
        let reply = match s.message {
            ToMember::Start(req) => {
                let mut rng = DeterministicRng::from_seed(&[i as u8; 32]);
                // A prepared start's contribution comes with its input.
                let values = req
                    .inputs
                    .as_ref()
                    .map(|_| contribution(&req.params, &probs(i), &mut rng).unwrap());
                let run = ModelRun {
                    model: req.model,
                    provider: "CPUExecutionProvider".into(),
                    runtime: "test".into(),
                    issued_at: 1,
                };
                let rng = Box::new(DeterministicRng::from_seed(&[i as u8 + 50; 32]));
                let (job, reply) = MemberJob::start(
                    &req,
                    self.aggregator,
                    values,
                    member_key(i),
                    rng,
                    run,
                    self.now,
                    60_000,
                )
                .unwrap();
                self.jobs[i] = Some(job);
                reply
            }
            message => {
                let job = self.jobs[i].as_mut().unwrap();
                let answer = match message {
                    ToMember::Input(input) => {
                        let mut rng = DeterministicRng::from_seed(&[i as u8; 32]);
                        let values = contribution(job.params(), &probs(i), &mut rng).unwrap();
                        job.handle_input(&self.aggregator, &input, values, 1, self.now)
                    }
                    ToMember::Round(r) => job.handle_round(&self.aggregator, &r, self.now),
                    ToMember::Start(_) => unreachable!("matched above"),
                };
                let answer = match answer {
                    Ok(a) => a,
                    Err(refusal) => return (s.to, Answer::Refused(refusal.frame)),
                };
                let mut reply = answer.reply;
                if reply.round == 2 {
                    let envelope = match self.bad_receipt[i] {
                        Some("other masked input") => vec![0xa5; 40],
                        _ => reply.message.clone(),
                    };
                    let payload = job.receipt_payload(&envelope).unwrap();
                    if self.bad_receipt[i] != Some("none") {
                        reply.receipt = Some(payload.sign(&member_key(i)).unwrap());
                    }
                }
                reply
            }
        };
        (s.to, Answer::Reply(reply))
    }
}

/// Runs the job to its end.
pub(super) fn drive(machine: &mut Aggregator, mut sends: Vec<Send>, members: &mut Members) {
    while !machine.is_finished() {
        let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
        for (i, a) in answers {
            machine.handle_answer(i, a);
        }
        sends = machine.close_round();
    }
}

pub(super) fn audit(done: &aggregator::AggregateResult) -> ensemble_audit::AuditReport {
    let receipts: Vec<Vec<u8>> = done
        .member_receipts
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    ensemble_audit::audit(&done.payload, &done.transcript, &receipts).unwrap()
}

#[test]
fn the_mean_is_exact_when_every_member_answers_and_the_audit_agrees() {
    let (mut machine, sends) = Aggregator::new(job(Mode::Mean), 1).unwrap();
    let mut members = Members::new();
    drive(&mut machine, sends, &mut members);
    assert!(machine.events().is_empty(), "{:?}", machine.events());
    let done = machine.finish(1_700_000_000).unwrap();
    assert_eq!(done.payload.contributors, vec![0, 1, 2, 3, 4]);
    assert!(done.payload.dropped.is_empty());
    // Class 1: (0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5 = 0.3.
    assert!((done.result[1] - 0.3).abs() < 1e-4, "{:?}", done.result);
    assert_eq!(done.member_receipts.len(), N);
    assert_eq!(done.payload.issued_at, 1_700_000_000);
    assert_eq!(audit(&done).contributors, vec![0, 1, 2, 3, 4]);
}

/// Closing the unmasking round agrees keys only when a member shared its keys and then
/// sent no masked input (§9.5.5); no other close does.
#[test]
fn only_unmasking_after_a_lost_masked_input_agrees_keys() {
    for (silent, agrees) in [(None, false), (Some(2), true), (Some(3), false)] {
        let (mut machine, mut sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
        let mut members = Members::new();
        members.silent_from[1] = silent;
        let mut seen = Vec::new();
        while !machine.is_finished() {
            let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
            for (i, a) in answers {
                machine.handle_answer(i, a);
            }
            seen.push((machine.round(), machine.closing_agrees_keys()));
            sends = machine.close_round();
        }
        let expected: Vec<(u8, bool)> = (0..=4).map(|r| (r, r == 4 && agrees)).collect();
        assert_eq!(seen, expected, "member 1 silent from {silent:?}");
        assert!(!machine.closing_agrees_keys(), "finished");
        assert!(machine.finish(1).is_ok());
    }
}

#[test]
fn the_sum_is_exact_with_dropouts_and_names_them() {
    let (mut machine, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    // Member 1 is gone before its masked input; member 3 after it, before unmasking.
    members.silent_from[1] = Some(2);
    members.silent_from[3] = Some(3);
    drive(&mut machine, sends, &mut members);
    let done = machine.finish(1).unwrap();
    // Member 3's masked input is in the sum: SecAgg recovers it from the others' shares.
    assert_eq!(done.payload.contributors, vec![0, 2, 3, 4]);
    assert_eq!(done.payload.dropped, vec![1]);
    // Votes: members 0..=3 vote class 0 (p < 0.5), member 4 has p = 0.5 and the arg-max
    // of [0.5, 0.5] is the last maximum.
    let expected: Vec<f64> = {
        let mut v = [0.0; 2];
        for i in [0usize, 2, 3, 4] {
            let p = probs(i);
            let best = if p[1] >= p[0] { 1 } else { 0 };
            v[best] += 1.0;
        }
        v.to_vec()
    };
    assert_eq!(done.result, expected);
    assert_eq!(
        done.member_receipts
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![0, 2, 3, 4]
    );
    audit(&done);
}

#[test]
fn the_job_aborts_cleanly_below_the_threshold_and_members_take_the_notice() {
    let (mut machine, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    for i in [0, 1, 2] {
        members.silent_from[i] = Some(1);
    }
    let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let mut sends = machine.close_round();
    // Round 1 goes out; only two members answer it.
    assert_eq!(machine.round(), 1);
    let answers: Vec<_> = sends.drain(..).map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let notices = machine.close_round();
    assert_eq!(machine.round(), ROUND_ABORT);
    assert!(!notices.is_empty());
    for s in notices {
        let (i, answer) = members.answer(s);
        let Answer::Reply(r) = answer else {
            panic!("member {i} refused the abort notice: {answer:?}");
        };
        assert_eq!(r.round, ROUND_ABORT);
    }
    assert!(machine.close_round().is_empty());
    assert!(machine.is_finished());
    assert!(matches!(
        machine.finish(1),
        Err(AggregatorError::Aborted { .. })
    ));
}

#[test]
fn a_reply_for_another_round_or_job_is_ignored() {
    let (mut machine, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        let a = match (i, a) {
            (0, Answer::Reply(mut r)) => {
                r.round = 1;
                Answer::Reply(r)
            }
            (1, Answer::Reply(mut r)) => {
                r.job_id = [9; 16];
                Answer::Reply(r)
            }
            (_, a) => a,
        };
        machine.handle_answer(i, a);
    }
    let ignored: Vec<u32> = machine.events().iter().map(|(i, _)| *i).collect();
    assert_eq!(ignored, vec![0, 1]);
    let sends = machine.close_round();
    // Members 0 and 1 are out from round 0 on: nobody sends them round 1.
    assert!(sends.iter().all(|s| s.to >= 2));
    drive(&mut machine, sends, &mut members);
    let done = machine.finish(1).unwrap();
    assert_eq!(done.payload.contributors, vec![2, 3, 4]);
}

#[test]
fn a_masked_input_without_a_matching_member_receipt_is_left_out_of_the_sum() {
    let (mut machine, sends) = Aggregator::new(job(Mode::Mean), 1).unwrap();
    let mut members = Members::new();
    members.bad_receipt[2] = Some("none");
    members.bad_receipt[4] = Some("other masked input");
    drive(&mut machine, sends, &mut members);
    let refused: Vec<u32> = machine
        .events()
        .iter()
        .filter(|(_, e)| e.starts_with("masked input refused in round 2"))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(refused, vec![2, 4]);
    let done = machine.finish(1).unwrap();
    assert_eq!(done.payload.contributors, vec![0, 1, 3]);
    // (0.1 + 0.2 + 0.4) / 3.
    assert!(
        (done.result[1] - 0.7 / 3.0).abs() < 1e-4,
        "{:?}",
        done.result
    );
    audit(&done);
}

/// A member that answered round 0 and holds the aggregator's round-1 messages.
fn member_at_round_1() -> (MemberJob, Vec<Send>, Members) {
    let (mut machine, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let round1 = machine.close_round();
    let job = members.jobs[0].take().unwrap();
    (job, round1, members)
}

/// The round message addressed to member `to`.
pub(super) fn round_for(sends: &[Send], to: u32) -> EnsembleRound {
    match sends.iter().find(|s| s.to == to).map(|s| &s.message) {
        Some(ToMember::Round(r)) => r.clone(),
        other => panic!("no round message for member {to}: {other:?}"),
    }
}

#[test]
fn a_member_answers_only_the_peer_that_started_the_job() {
    let (mut job, round1, members) = member_at_round_1();
    let mine = round_for(&round1, 0);
    let co_member = member_key(3).public_key();
    let refused = job.handle_round(&co_member, &mine, 5).unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::NotAllowed);
    assert!(!refused.finished, "a forged round must not end the job");
    // The aggregator's own message is still answered afterwards.
    let answer = job.handle_round(&members.aggregator, &mine, 6).unwrap();
    assert_eq!(answer.reply.round, 1);
    assert!(!answer.reply.message.is_empty());
}

#[test]
fn a_member_refuses_rounds_out_of_order_and_replays() {
    let (mut job, round1, members) = member_at_round_1();
    let agg = members.aggregator;
    let mine = round_for(&round1, 0);
    // A round-1 message labelled round 2.
    let mut relabelled = mine.clone();
    relabelled.round = 2;
    let refused = job.handle_round(&agg, &relabelled, 5).unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::WrongRound);
    // A real round-1 message labelled as an abort notice.
    let mut as_abort = mine.clone();
    as_abort.round = ROUND_ABORT;
    assert_eq!(
        job.handle_round(&agg, &as_abort, 5).unwrap_err().frame.code,
        ErrorCode::WrongRound
    );
    assert_eq!(job.next_round(), 1);
    job.handle_round(&agg, &mine, 6).unwrap();
    assert_eq!(job.next_round(), 2);
    // The same round again is a replay.
    let replay = job.handle_round(&agg, &mine, 7).unwrap_err();
    assert_eq!(replay.frame.code, ErrorCode::Replayed);
}

#[test]
fn a_member_refuses_a_later_round_before_the_expected_one() {
    // Drive everything to round 2, but hold back member 0's round-1 message.
    let (mut machine, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let round1 = machine.close_round();
    let held = members.jobs[0].take().unwrap();
    members.silent_from[0] = Some(1);
    let answers: Vec<_> = round1.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let round2 = machine.close_round();
    assert_eq!(machine.round(), 2);
    let mut job = held;
    let other = round_for(&round2, round2[0].to);
    let refused = job
        .handle_round(&members.aggregator, &other, 10)
        .unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::WrongRound);
    assert!(
        refused.frame.message.contains("expected round 1"),
        "{}",
        refused.frame
    );
}

#[test]
fn a_new_job_uses_the_one_scale_rule_and_its_noise_is_what_members_accept() {
    for mode in [Mode::Mean, Mode::Votes] {
        let p = aggregator::job_params(
            mode,
            [7; 32],
            aggregator_key().public_key(),
            (0..N).map(|i| member_key(i).public_key()).collect(),
            vec![[4; 32]; N],
            2,
            3,
            Some((1.0, 1e-6)),
        )
        .unwrap();
        assert_eq!(p.scale_bits, mode.scale_bits());
        assert!(mode.check_scale_bits(p.scale_bits).is_ok());
        crate::ensemble_dp::check_noise(&p).unwrap();
    }
    assert!(Mode::Mean.check_scale_bits(0).is_err());
    assert!(Mode::Mean.check_scale_bits(31).is_err());
    assert!(Mode::Votes.check_scale_bits(16).is_err());
}

#[test]
fn a_member_refuses_a_start_from_another_peer_than_the_named_aggregator() {
    let (_, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let ToMember::Start(req) = &sends[0].message else {
        panic!("round 0 is a start request");
    };
    let co_member = member_key(3).public_key();
    let refused = MemberJob::start(
        req,
        co_member,
        Some(vec![0, 1]),
        member_key(0),
        Box::new(DeterministicRng::from_seed(&[0; 32])),
        ModelRun {
            model: req.model,
            provider: "CPUExecutionProvider".into(),
            runtime: "test".into(),
            issued_at: 1,
        },
        0,
        60_000,
    )
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotAllowed);
}
