//! Red team, private ensembles (§15, §17): each test performs one attack of the security
//! review against real `quorate node` processes over QUIC (or the offline audit) and shows
//! it no longer succeeds. Named after the finding; the last ones attack prepared jobs
//! (§15.1, §17.12), whose input comes in round 2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quorate_cli::local::LocalMesh;
use quorate_crypto::SecretKey;
use quorate_node::files::load_secret_key;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::ensemble_client::{self, EnsembleOutcome, EnsembleSpec};
use quorate_protocol::ensemble::{
    EnsembleInput, EnsembleParams, EnsembleRound, EnsembleStart, Mode, NoiseParams, ROUND_ABORT,
};
use quorate_protocol::ensemble_audit::{AuditError, audit};
use quorate_protocol::messages::{ErrorCode, ErrorFrame, Request, Response};
use quorate_protocol::receipt::{self, Commitment};
use quorate_protocol::roster::Entry;
use quorate_protocol::secagg::messages::{AbortCode, ServerBody, encode_server_message};
use quorate_protocol::tensor::Tensor;
use quorate_tests::bundled::{hospital, models, sample};
use quorate_tests::{quorate_bin, rt};

fn mesh(dir: &std::path::Path, extra: &dyn Fn(usize) -> String) -> LocalMesh {
    LocalMesh::start_with_each(dir, 5, &models(), &quorate_bin(), extra).unwrap()
}

fn node(mesh: &LocalMesh, i: usize) -> Entry {
    mesh.roster.by_name(&format!("node-{i}")).unwrap().clone()
}

/// A mesh client holding `key` (the client's, or a node's when a co-member attacks).
fn client(mesh: &LocalMesh, key: &SecretKey) -> MeshClient {
    MeshClient::new(key, mesh.roster.clone(), Duration::from_secs(10)).unwrap()
}

fn node_key(mesh: &LocalMesh, i: usize) -> SecretKey {
    load_secret_key(&mesh.dir.join(format!("keys/node-{i}.key"))).unwrap()
}

fn params(
    aggregator: &SecretKey,
    members: Vec<quorate_crypto::PublicKey>,
    models: Vec<[u8; 32]>,
    threshold: u32,
) -> EnsembleParams {
    EnsembleParams::new(
        Mode::Mean,
        [5; 32],
        aggregator.public_key(),
        members,
        models,
        2,
        threshold,
        None,
    )
    .unwrap()
}

fn start(p: &EnsembleParams, index: u32, job: u8) -> EnsembleStart {
    EnsembleStart {
        job_id: [job; 16],
        nonce: vec![2; 32],
        model: p.models[index as usize],
        inputs: Some(vec![sample()]),
        params: p.clone(),
        index,
        input_salts: vec![[9; 32]],
    }
}

fn refusal(r: anyhow::Result<Response>) -> ErrorFrame {
    match r.unwrap() {
        Response::Error(e) => e,
        other => panic!("the attack succeeded: the node answered {other:?}"),
    }
}

fn spec(mesh: &LocalMesh, members: &[usize], threshold: u32) -> EnsembleSpec {
    EnsembleSpec {
        mode: Mode::Mean,
        members: members.iter().map(|&i| node(mesh, i)).collect(),
        models: members.iter().map(|&i| hospital(i)).collect(),
        inputs: vec![sample()],
        classes: 2,
        threshold,
        dp: None,
    }
}

fn run(mesh: &LocalMesh, spec: &EnsembleSpec) -> Result<EnsembleOutcome, String> {
    rt().block_on(async {
        let c = client(mesh, &mesh.client_key);
        let o = ensemble_client::run(&c, &mesh.client_key, spec, &|_| {})
            .await
            .map_err(|e| format!("{e:#}"));
        c.close();
        o
    })
}

#[test]
fn attack_h1_aggregator_pads_the_member_list_with_a_key_it_made_up() {
    // The aggregator names node-1 and node-2 with a key S of its own making and would play
    // S itself with input 0: the sum would then reveal the honest members' outputs.
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|_| String::new());
    let made_up = SecretKey::from_seed(&[0x5e; 32]).public_key();
    let p = params(
        &mesh.client_key,
        vec![node(&mesh, 1).key, made_up, node(&mesh, 2).key],
        vec![hospital(1), hospital(1), hospital(2)],
        2,
    );
    rt().block_on(async {
        let c = client(&mesh, &mesh.client_key);
        let e = refusal(
            c.request(&node(&mesh, 1), &Request::EnsembleStart(start(&p, 0, 1)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(e.message.contains("not a node of the roster"), "{e}");
        // Two real members are below the roster's governance (at least 3, §10.6).
        let p2 = params(
            &mesh.client_key,
            vec![node(&mesh, 1).key, node(&mesh, 2).key],
            vec![hospital(1), hospital(2)],
            2,
        );
        let e = refusal(
            c.request(&node(&mesh, 1), &Request::EnsembleStart(start(&p2, 0, 2)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(e.message.contains("below the roster's minimum"), "{e}");
        // A real node listed with a model the roster does not list for it.
        let p3 = params(
            &mesh.client_key,
            vec![node(&mesh, 1).key, node(&mesh, 2).key, node(&mesh, 3).key],
            vec![hospital(1), hospital(2), hospital(1)],
            2,
        );
        let e = refusal(
            c.request(&node(&mesh, 1), &Request::EnsembleStart(start(&p3, 0, 3)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(e.message.contains("does not serve"), "{e}");
        c.close();
    });
}

#[test]
fn attack_h2_a_co_member_impersonates_the_aggregator() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|_| String::new());
    let members: Vec<_> = (1..=3).map(|i| node(&mesh, i).key).collect();
    let p = params(
        &mesh.client_key,
        members,
        (1..=3).map(hospital).collect(),
        2,
    );
    let victim = node(&mesh, 1);
    rt().block_on(async {
        let aggregator = client(&mesh, &mesh.client_key);
        match aggregator
            .request(&victim, &Request::EnsembleStart(start(&p, 0, 7)))
            .await
            .unwrap()
        {
            Response::Ensemble(r) => assert_eq!(r.round, 0),
            other => panic!("the real aggregator's start was refused: {other:?}"),
        }
        // Co-member node-2 connects with its own (roster) key and sends the victim a forged
        // round 1 for the victim's job, to collect its ShareKeys.
        let co_member = client(&mesh, &node_key(&mesh, 2));
        let digest = p.round_config().digest();
        let forged = encode_server_message(
            &digest,
            &ServerBody::Keys {
                members: vec![0, 1],
                envelopes: vec![],
                reveals: None,
            },
        );
        let round = |round: u8, message: Vec<u8>| {
            Request::EnsembleRound(EnsembleRound {
                job_id: [7; 16],
                round,
                message,
            })
        };
        let e = refusal(co_member.request(&victim, &round(1, forged)).await);
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(e.message.contains("only its aggregator"), "{e}");
        // A forged abort notice from the co-member does not kill the victim's job...
        let abort = encode_server_message(
            &digest,
            &ServerBody::Abort {
                code: AbortCode::Cancelled,
            },
        );
        let e = refusal(
            co_member
                .request(&victim, &round(ROUND_ABORT, abort.clone()))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        // ...which is still open for the real aggregator, who may abort it.
        match aggregator
            .request(&victim, &round(ROUND_ABORT, abort))
            .await
            .unwrap()
        {
            Response::Ensemble(r) => assert_eq!(r.round, ROUND_ABORT),
            other => panic!("the job did not survive the forged abort: {other:?}"),
        }
        // A start sent by the co-member that names the client as aggregator is refused too:
        // the job would otherwise be bound to the co-member.
        let e = refusal(
            co_member
                .request(&victim, &Request::EnsembleStart(start(&p, 0, 8)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(e.message.contains("another aggregator"), "{e}");
        co_member.close();
        aggregator.close();
    });
}

#[test]
fn attack_m1_the_same_input_twice_leaves_one_member_out() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|_| String::new());
    let first = run(&mesh, &spec(&mesh, &[1, 2, 3, 4], 3)).unwrap();
    assert_eq!(first.payload.contributors, vec![0, 1, 2, 3]);
    // The same input over the same members minus node-4: the difference of the two sums
    // would be node-4's output. The members who took part in both refuse.
    let second = run(&mesh, &spec(&mesh, &[1, 2, 3], 2));
    let why = second.err().expect("the second job went through");
    assert!(why.contains("aggregated recently"), "{why}");
    // The same members again reveal nothing new and are served.
    run(&mesh, &spec(&mesh, &[1, 2, 3, 4], 3)).unwrap();
}

#[test]
fn attack_m2_a_stated_epsilon_with_no_noise_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|_| String::new());
    let members: Vec<_> = (1..=3).map(|i| node(&mesh, i).key).collect();
    let mut p = params(
        &mesh.client_key,
        members,
        (1..=3).map(hospital).collect(),
        2,
    );
    // ε = 1 stated, but μ = 0 and bound = 0: the sum would carry no noise at all.
    p.noise = Some(NoiseParams {
        epsilon_micro: 1_000_000,
        delta_pico: 1_000,
        mu_milli: 0,
        bound: 0,
    });
    rt().block_on(async {
        let c = client(&mesh, &mesh.client_key);
        let e = refusal(
            c.request(&node(&mesh, 1), &Request::EnsembleStart(start(&p, 0, 1)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        assert!(
            e.message.contains("do not match their stated epsilon"),
            "{e}"
        );
        c.close();
    });
    // The offline audit recomputes the noise too: an aggregate whose parameters state an
    // ε their noise does not give is refused, whatever else it proves.
    let mut s = spec(&mesh, &[1, 2, 3], 2);
    s.dp = Some((2.0, 1e-6));
    let o = run(&mesh, &s).unwrap();
    let receipts: Vec<_> = o.member_receipts.iter().map(|(_, r)| r.clone()).collect();
    audit(&o.payload, &o.transcript, &receipts).unwrap();
    let mut forged = o.payload.clone();
    if let Some(n) = forged.params.noise.as_mut() {
        n.mu_milli = 0;
    }
    assert!(matches!(
        audit(&forged, &o.transcript, &receipts),
        Err(AuditError::Params(_))
    ));
}

#[test]
fn attack_l3_low_entropy_inputs_brute_forced_from_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|_| String::new());
    let o = run(&mesh, &spec(&mesh, &[1, 2, 3], 2)).unwrap();
    // An attacker holding a member receipt guesses the patient's features and compares
    // the plain commitment of the guess: with salted commitments even the right guess
    // does not match.
    let guess = Commitment::to(&sample(), None);
    for (name, bytes) in &o.member_receipts {
        let r = receipt::parse(bytes).unwrap();
        let c = &r.payload.inputs[0];
        assert!(c.salted, "{name}'s receipt commits to the input unsalted");
        assert_ne!(
            c.digest, guess.digest,
            "{name}'s commitment is brute-forceable"
        );
    }
    assert!(o.payload.inputs.iter().all(|c| c.salted));
    assert_ne!(o.payload.inputs[0].digest, guess.digest);
}

#[test]
fn attack_m4_ensemble_starts_bypass_admission() {
    // Node-1 accepts inputs of at most 4 elements; the sample has 30. Before the fix the
    // model ran on an ensemble start whatever its size.
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh(dir.path(), &|i| {
        if i == 0 {
            "max_input_elements = 4\n".into()
        } else {
            String::new()
        }
    });
    let members: Vec<_> = (1..=3).map(|i| node(&mesh, i).key).collect();
    let p = params(
        &mesh.client_key,
        members,
        (1..=3).map(hospital).collect(),
        2,
    );
    rt().block_on(async {
        let c = client(&mesh, &mesh.client_key);
        let e = refusal(
            c.request(&node(&mesh, 1), &Request::EnsembleStart(start(&p, 0, 1)))
                .await,
        );
        assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
        assert!(c.health(&node(&mesh, 1)).await.is_ok());
        c.close();
    });
}

/// Prepares a job of `spec` (rounds 0 and 1), then gives it its input.
fn prepared_run(mesh: &LocalMesh, spec: &EnsembleSpec) -> Result<EnsembleOutcome, String> {
    rt().block_on(async {
        let c = client(mesh, &mesh.client_key);
        let key = &mesh.client_key;
        let o = match ensemble_client::prepare(&c, key, spec, &|_| {}).await {
            Ok(p) => ensemble_client::run_prepared(&c, key, spec, p, &|_| {}).await,
            Err(e) => Err(e),
        }
        .map_err(|e| format!("{e:#}"));
        c.close();
        o
    })
}

/// M1 again (§17.6): an aggregator that prepares its jobs before naming their input still
/// cannot aggregate the same input over member sets that differ by fewer than `t`: the rule
/// is applied when the input comes. A prepared job is otherwise an ordinary one: its result
/// audits.
#[test]
fn attack_m1_preparing_the_job_first_does_not_dodge_the_repeated_input_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mesh =
        LocalMesh::start_with_each(dir.path(), 4, &models(), &quorate_bin(), &|_| String::new())
            .unwrap();
    let first = prepared_run(&mesh, &spec(&mesh, &[1, 2, 3, 4], 3)).unwrap();
    assert_eq!(first.payload.contributors, vec![0, 1, 2, 3]);
    let receipts: Vec<Vec<u8>> = first
        .member_receipts
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    audit(&first.payload, &first.transcript, &receipts).unwrap();
    let second = prepared_run(&mesh, &spec(&mesh, &[1, 2, 3], 2));
    let why = second
        .err()
        .expect("the same input went through over one member fewer");
    assert!(why.contains("aggregated recently"), "{why}");
}

/// A prepared start and the inputs an attacker can send it: from a co-member, before round
/// 1, for a job that is not prepared, for no job, and too large for the node.
#[test]
fn attack_inputs_out_of_place_are_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start_with_each(dir.path(), 3, &models(), &quorate_bin(), &|i| {
        if i == 0 {
            "max_input_elements = 64\n".into()
        } else {
            String::new()
        }
    })
    .unwrap();
    let p = EnsembleParams::new(
        Mode::Mean,
        [5; 32],
        mesh.client_key.public_key(),
        (1..=3).map(|i| node(&mesh, i).key).collect(),
        (1..=3).map(hospital).collect(),
        2,
        2,
        None,
    )
    .unwrap();
    let start = |job: u8, prepared: bool| EnsembleStart {
        job_id: [job; 16],
        nonce: vec![2; 32],
        model: p.models[0],
        inputs: (!prepared).then(|| vec![sample()]),
        params: p.clone(),
        index: 0,
        input_salts: if prepared { vec![] } else { vec![[9; 32]] },
    };
    let round_2 = encode_server_message(
        &p.round_config().digest(),
        &ServerBody::Shares {
            ciphertexts: vec![],
        },
    );
    let input = |job: u8, inputs: Vec<Tensor>| {
        Request::EnsembleInput(EnsembleInput {
            job_id: [job; 16],
            message: round_2.clone(),
            input_salts: vec![[9; 32]; inputs.len()],
            inputs,
        })
    };
    let victim = node(&mesh, 1);
    rt().block_on(async {
        let aggregator = client(&mesh, &mesh.client_key);
        let co_member = client(&mesh, &node_key(&mesh, 2));
        let answered = |r: anyhow::Result<Response>| match r.unwrap() {
            Response::Ensemble(r) => assert_eq!(r.round, 0),
            other => panic!("a start was refused: {other:?}"),
        };
        answered(
            aggregator
                .request(&victim, &Request::EnsembleStart(start(1, true)))
                .await,
        );
        // The co-member sends the victim's prepared job an input of its choosing.
        let e = refusal(co_member.request(&victim, &input(1, vec![sample()])).await);
        assert_eq!(e.code, ErrorCode::NotAllowed, "{e}");
        // The aggregator's own input before round 1: out of round.
        let e = refusal(aggregator.request(&victim, &input(1, vec![sample()])).await);
        assert_eq!(e.code, ErrorCode::WrongRound, "{e}");
        // An input for a job started with its input.
        answered(
            aggregator
                .request(&victim, &Request::EnsembleStart(start(2, false)))
                .await,
        );
        let e = refusal(aggregator.request(&victim, &input(2, vec![sample()])).await);
        assert_eq!(e.code, ErrorCode::WrongRound, "{e}");
        // An input for no job.
        let e = refusal(aggregator.request(&victim, &input(3, vec![sample()])).await);
        assert_eq!(e.code, ErrorCode::UnknownJob, "{e}");
        // An input over the node's bound is refused before anything looks at it.
        let big = Tensor::from_f32("features", vec![1, 100], &[0.5; 100]).unwrap();
        let e = refusal(aggregator.request(&victim, &input(1, vec![big])).await);
        assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
        // A prepared start may not carry salts: they travel with the input (§15.3).
        let mut salted = start(4, true);
        salted.input_salts = vec![[9; 32]];
        let e = refusal(
            aggregator
                .request(&victim, &Request::EnsembleStart(salted))
                .await,
        );
        assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
        assert!(aggregator.health(&victim).await.is_ok());
        co_member.close();
        aggregator.close();
    });
}
