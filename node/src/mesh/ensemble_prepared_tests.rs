//! A member node's side of a prepared job (§15.1): it takes one input, and a job whose input
//! it refused after the checks of §15.3 is gone, never given another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_crypto::secagg::rng::DeterministicRng;
use quorate_protocol::ensemble::aggregator::{Aggregator, Answer, Send, ToMember};
use quorate_protocol::ensemble::{EnsembleParams, Mode};
use quorate_protocol::tensor::Tensor;

use super::*;

const N: usize = 3;

/// Member 0 as a node's service; members 1 and 2 as bare protocol machines.
struct Mesh {
    service: EnsembleService,
    others: Vec<Option<MemberJob>>,
    aggregator: SecretKey,
    _dir: tempfile::TempDir,
}

fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[i as u8 + 1; 32])
}

fn mesh() -> (Mesh, EnsembleParams) {
    let dir = tempfile::tempdir().unwrap();
    let (service, model) = super::tests::member_service(dir.path(), &key(0));
    let aggregator = SecretKey::from_seed(&[7; 32]);
    let params = EnsembleParams::new(
        Mode::Mean,
        [5; 32],
        aggregator.public_key(),
        (0..N).map(|i| key(i).public_key()).collect(),
        vec![model.digest; N],
        2,
        2,
        None,
    )
    .unwrap();
    let mesh = Mesh {
        service,
        others: (0..N).map(|_| None).collect(),
        aggregator,
        _dir: dir,
    };
    (mesh, params)
}

fn features(n: u64) -> Tensor {
    Tensor::from_f32("features", vec![1, n], &vec![0.5; n as usize]).unwrap()
}

impl Mesh {
    fn answer(&mut self, s: Send) -> (u32, Answer) {
        let peer = self.aggregator.public_key();
        let i = s.to as usize;
        let reply = match (i, s.message) {
            (0, ToMember::Start(req)) => {
                let model = self.service.models.onnx(&req.model).unwrap();
                self.service.start(peer, &model, *req)
            }
            (0, ToMember::Round(r)) => self.service.round(&peer, r),
            (_, ToMember::Start(req)) => {
                let run = ModelRun {
                    model: req.model,
                    provider: "CPUExecutionProvider".into(),
                    runtime: "test".into(),
                    issued_at: 1,
                };
                let rng = Box::new(DeterministicRng::from_seed(&[i as u8; 32]));
                let (job, reply) =
                    MemberJob::start(&req, peer, None, key(i), rng, run, 0, 60_000).unwrap();
                self.others[i] = Some(job);
                Ok(reply)
            }
            (_, ToMember::Round(r)) => {
                let job = self.others[i].as_mut().unwrap();
                Ok(job.handle_round(&peer, &r, 1).unwrap().reply)
            }
            (_, ToMember::Input(_)) => panic!("inputs are sent by the test"),
        };
        (s.to, reply.map_or_else(Answer::Refused, Answer::Reply))
    }

    /// Runs rounds 0 and 1 of a prepared job: the machine then waits for its input.
    fn prepare(&mut self, params: &EnsembleParams, job: u8) -> Aggregator {
        let (mut machine, mut sends) =
            Aggregator::new_prepared(params.clone(), [job; 16], vec![2; 32], 1).unwrap();
        while !machine.awaits_input() {
            let answers: Vec<_> = sends.into_iter().map(|s| self.answer(s)).collect();
            for (i, a) in answers {
                machine.handle_answer(i, a);
            }
            assert!(machine.events().is_empty(), "{:?}", machine.events());
            sends = machine.close_round();
        }
        machine
    }
}

/// Member 0's round-2 input of `machine`, carrying `inputs`.
fn input_for_0(machine: &mut Aggregator, inputs: Vec<Tensor>) -> EnsembleInput {
    let salts = vec![[3; 32]; inputs.len()];
    let sends = machine.provide_input(inputs, salts).unwrap();
    match sends.into_iter().find(|s| s.to == 0).map(|s| s.message) {
        Some(ToMember::Input(i)) => *i,
        other => panic!("no input for member 0: {other:?}"),
    }
}

#[test]
fn a_prepared_job_takes_its_input_once_and_logs_the_member_receipt() {
    let (mut mesh, params) = mesh();
    let mut machine = mesh.prepare(&params, 1);
    assert_eq!(mesh.service.open_jobs(), 1);
    let input = input_for_0(&mut machine, vec![features(30)]);
    let peer = mesh.aggregator.public_key();
    let reply = mesh.service.input(&peer, input.clone()).unwrap();
    assert_eq!(reply.round, 2);
    let receipt = reply
        .receipt
        .expect("a round-2 reply carries the member receipt");
    let logged = std::fs::read(mesh._dir.path().join("audit.qlog")).unwrap();
    let records = quorate_protocol::audit_log::scan(&logged).unwrap().records;
    assert_eq!(records.len(), 1, "the member receipt is in the log");
    assert!(!receipt.is_empty());
    // The same input again is a replay: the job keeps its one input.
    let again = mesh.service.input(&peer, input).unwrap_err();
    assert_eq!(again.code, ErrorCode::Replayed);
    assert_eq!(mesh.service.open_jobs(), 1);
}

#[test]
fn an_input_refused_after_the_checks_ends_the_job() {
    let (mut mesh, params) = mesh();
    let mut machine = mesh.prepare(&params, 2);
    let peer = mesh.aggregator.public_key();
    // An input the model cannot take: refused, and the job is gone with it.
    let bad = input_for_0(&mut machine, vec![features(7)]);
    let e = mesh.service.input(&peer, bad.clone()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
    assert_eq!(mesh.service.open_jobs(), 0);
    // So the aggregator cannot try another input on the same keys and shares.
    let mut good = bad;
    good.inputs = vec![features(30)];
    let e = mesh.service.input(&peer, good).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownJob, "{e}");
}
