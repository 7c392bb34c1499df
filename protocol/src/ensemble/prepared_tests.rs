//! Prepared jobs (§15.1): rounds 0 and 1 run before the client's input exists, and round 2
//! carries it. The result is the one a job started with its input gives; a member takes one
//! input, only from the job's aggregator, only in round 2; an aggregator machine takes one.

use super::aggregator::{Aggregator, Answer, Send, ToMember};
use super::member::MemberJob;
use super::tests::{Members, audit, drive, job, round_for};
use super::*;
use crate::messages::common::ErrorCode;
use crate::tensor::Tensor;

/// A prepared machine and its start requests, for the inputs of [`job`].
fn prepared(mode: Mode) -> (Aggregator, Vec<Send>) {
    let j = job(mode);
    Aggregator::new_prepared(j.params, j.job_id, j.nonce, 1).unwrap()
}

fn client_input() -> (Vec<Tensor>, Vec<[u8; 32]>) {
    let j = job(Mode::Mean);
    (j.inputs, j.input_salts)
}

/// Answers `sends` and closes the round.
fn exchange(machine: &mut Aggregator, sends: Vec<Send>, members: &mut Members) -> Vec<Send> {
    let answers: Vec<_> = sends.into_iter().map(|s| members.answer(s)).collect();
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    machine.close_round()
}

/// Runs rounds 0 and 1 of a prepared job: the machine then holds round 2 for the input.
fn through_round_1(mode: Mode) -> (Aggregator, Members) {
    let (mut machine, starts) = prepared(mode);
    let mut members = Members::new();
    for s in &starts {
        let ToMember::Start(req) = &s.message else {
            panic!("round 0 is a start request");
        };
        assert!(req.inputs.is_none() && req.input_salts.is_empty());
    }
    let round1 = exchange(&mut machine, starts, &mut members);
    assert!(!machine.awaits_input());
    let held = exchange(&mut machine, round1, &mut members);
    assert!(held.is_empty(), "round 2 went out without the input");
    assert!(machine.awaits_input() && machine.round() == 2);
    (machine, members)
}

fn input_for(sends: &[Send], to: u32) -> EnsembleInput {
    match sends.iter().find(|s| s.to == to).map(|s| &s.message) {
        Some(ToMember::Input(i)) => (**i).clone(),
        other => panic!("no input for member {to}: {other:?}"),
    }
}

#[test]
fn a_prepared_job_gives_the_result_of_a_job_started_with_its_input() {
    for mode in [Mode::Mean, Mode::Votes] {
        let (mut at_once, sends) = Aggregator::new(job(mode), 1).unwrap();
        drive(&mut at_once, sends, &mut Members::new());
        let at_once = at_once.finish(7).unwrap();

        let (mut machine, mut members) = through_round_1(mode);
        // Closing again while the input is awaited sends nothing and loses nothing.
        assert!(machine.close_round().is_empty() && machine.awaits_input());
        let (inputs, salts) = client_input();
        let round2 = machine.provide_input(inputs, salts).unwrap();
        assert_eq!(round2.len(), 5);
        assert!(
            round2
                .iter()
                .all(|s| matches!(s.message, ToMember::Input(_)))
        );
        let sends = exchange(&mut machine, round2, &mut members);
        drive(&mut machine, sends, &mut members);
        assert!(machine.events().is_empty(), "{:?}", machine.events());
        let done = machine.finish(7).unwrap();
        assert_eq!(done.result, at_once.result);
        assert_eq!(done.payload.inputs, at_once.payload.inputs);
        assert_eq!(done.payload.contributors, vec![0, 1, 2, 3, 4]);
        assert_eq!(audit(&done).contributors, vec![0, 1, 2, 3, 4]);
        // The same member receipts: each commits to the salted input and its masked vector.
        assert_eq!(done.member_receipts, at_once.member_receipts);
    }
}

/// An input given before round 1 closes rides on round 2 when it goes out.
#[test]
fn an_input_given_early_goes_out_with_round_2() {
    let (mut machine, starts) = prepared(Mode::Votes);
    let mut members = Members::new();
    let round1 = exchange(&mut machine, starts, &mut members);
    let (inputs, salts) = client_input();
    assert!(machine.provide_input(inputs, salts).unwrap().is_empty());
    let round2 = exchange(&mut machine, round1, &mut members);
    assert!(
        round2
            .iter()
            .all(|s| matches!(s.message, ToMember::Input(_)))
    );
    let sends = exchange(&mut machine, round2, &mut members);
    drive(&mut machine, sends, &mut members);
    assert!(machine.finish(1).is_ok());
}

/// A machine takes one input, and only when prepared; an input needs one salt per tensor.
#[test]
fn an_aggregator_takes_one_input_and_only_for_a_prepared_job() {
    let (inputs, salts) = client_input();
    let (mut started, _) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    assert!(
        started
            .provide_input(inputs.clone(), salts.clone())
            .is_err()
    );
    let (mut machine, _) = through_round_1(Mode::Votes);
    assert!(machine.provide_input(inputs.clone(), vec![]).is_err());
    assert!(machine.provide_input(vec![], vec![]).is_err());
    assert!(
        machine.awaits_input(),
        "a refused input leaves the job waiting"
    );
    assert_eq!(
        machine
            .provide_input(inputs.clone(), salts.clone())
            .unwrap()
            .len(),
        5
    );
    assert!(
        machine.provide_input(inputs, salts).is_err(),
        "a second input"
    );
}

/// Member 0's round-2 input, with the other members' rounds answered.
fn member_0_at_input() -> (MemberJob, EnsembleInput, Members) {
    let (mut machine, mut members) = through_round_1(Mode::Votes);
    let (inputs, salts) = client_input();
    let round2 = machine.provide_input(inputs, salts).unwrap();
    let job = members.jobs[0].take().expect("member 0 holds the job");
    (job, input_for(&round2, 0), members)
}

fn values() -> Vec<u64> {
    vec![0, 1]
}

#[test]
fn a_member_takes_the_input_of_a_prepared_job_once_and_only_from_its_aggregator() {
    let (mut job, input, members) = member_0_at_input();
    let agg = members.aggregator;
    // From a co-member: refused, the job kept.
    let co = super::tests::member_key(3).public_key();
    let refused = job.handle_input(&co, &input, values(), 1, 5).unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::NotAllowed);
    assert!(!refused.finished);
    // Round 2 as a plain round, without the input: refused, the job kept.
    let plain = EnsembleRound {
        job_id: input.job_id,
        round: 2,
        message: input.message.clone(),
    };
    let refused = job.handle_round(&agg, &plain, 5).unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::WrongRound);
    assert!(!refused.finished);
    // The aggregator's input is answered with a masked input.
    let answer = job
        .handle_input(&agg, &input, values(), 1_800_000_000, 6)
        .unwrap();
    assert_eq!(answer.reply.round, 2);
    let payload = job.receipt_payload(&answer.reply.message).unwrap();
    assert_eq!(
        payload.inputs,
        salted_commitments(&input.inputs, &input.input_salts)
    );
    // A second input is a replay and changes nothing.
    let again = job
        .handle_input(&agg, &input, vec![1, 0], 1, 7)
        .unwrap_err();
    assert_eq!(again.frame.code, ErrorCode::Replayed);
    assert!(!again.finished);
    assert_eq!(job.next_round(), 3);
}

/// The client's input for job 1, carrying the server message `message`.
fn input_carrying(message: Vec<u8>) -> EnsembleInput {
    let (inputs, input_salts) = client_input();
    EnsembleInput {
        job_id: [1; 16],
        message,
        inputs,
        input_salts,
    }
}

#[test]
fn a_member_refuses_an_input_out_of_round_or_for_a_job_started_with_one() {
    // Before round 1 was answered.
    let (mut machine, starts) = prepared(Mode::Votes);
    let mut members = Members::new();
    let round1 = exchange(&mut machine, starts, &mut members);
    let mut early = members.jobs[0].take().unwrap();
    let input = input_carrying(round_for(&round1, 0).message);
    let refused = early
        .handle_input(&members.aggregator, &input, values(), 1, 3)
        .unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::WrongRound);
    assert!(!refused.finished);
    assert_eq!(early.next_round(), 1);

    // A job started with its input has no input round.
    let (mut started, sends) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    let mut members = Members::new();
    let round1 = exchange(&mut started, sends, &mut members);
    let round2 = exchange(&mut started, round1, &mut members);
    let mut with_input = members.jobs[0].take().unwrap();
    let input = input_carrying(round_for(&round2, 0).message);
    let refused = with_input
        .handle_input(&members.aggregator, &input, values(), 1, 9)
        .unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::WrongRound);
    assert!(!refused.finished);
}

/// Once a member took an input, any refusal ends the job: a prepared job never masks a
/// second input.
#[test]
fn a_member_ends_a_prepared_job_whose_input_round_fails() {
    let (mut job, mut input, members) = member_0_at_input();
    input.message = vec![0xa0];
    let refused = job
        .handle_input(&members.aggregator, &input, values(), 1, 5)
        .unwrap_err();
    assert!(refused.finished, "{}", refused.frame);
    // An output outside the job's encoding ends it too.
    let (mut job, input, members) = member_0_at_input();
    let refused = job
        .handle_input(&members.aggregator, &input, vec![0, 1, 2], 1, 5)
        .unwrap_err();
    assert_eq!(refused.frame.code, ErrorCode::InvalidInput);
    assert!(refused.finished);
}

/// A reply to a prepared job's input is an ordinary round-2 answer to the machine.
#[test]
fn a_refused_input_leaves_that_member_out_of_the_sum() {
    let (mut machine, mut members) = through_round_1(Mode::Votes);
    let (inputs, salts) = client_input();
    let round2 = machine.provide_input(inputs, salts).unwrap();
    let mut answers: Vec<_> = round2.into_iter().map(|s| members.answer(s)).collect();
    answers[2].1 = Answer::Refused(crate::messages::common::ErrorFrame::new(
        ErrorCode::InvalidInput,
        "the model refused the input",
    ));
    for (i, a) in answers {
        machine.handle_answer(i, a);
    }
    let sends = machine.close_round();
    drive(&mut machine, sends, &mut members);
    let done = machine.finish(1).unwrap();
    assert_eq!(done.payload.contributors, vec![0, 1, 3, 4]);
    assert_eq!(done.payload.dropped, vec![2]);
}

/// A prepared job given up before its input frees every member's state at once.
#[test]
fn an_abandoned_prepared_job_frees_its_members() {
    let (machine, mut members) = through_round_1(Mode::Votes);
    let notices = machine.abandon();
    assert_eq!(notices.len(), 5);
    for s in notices {
        let ToMember::Round(r) = &s.message else {
            panic!("an abort notice is a round message");
        };
        assert_eq!(r.round, ROUND_ABORT);
        let job = members.jobs[s.to as usize].as_mut().unwrap();
        let answer = job.handle_round(&members.aggregator, r, 9).unwrap();
        assert!(answer.finished, "member {} kept the job", s.to);
    }
    // Only a job waiting for its input is abandoned this way.
    let (started, _) = Aggregator::new(job(Mode::Votes), 1).unwrap();
    assert!(started.abandon().is_empty());
}
