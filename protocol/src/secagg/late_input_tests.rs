//! A client given its input after rounds 0 and 1 (§15.1, prepared jobs): it sends the same
//! bytes as one given its input at the start, is refused the masked-input round until the
//! input comes, and takes exactly one input of the round's shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quorate_crypto::secagg::rng::DeterministicRng;

use super::client::{Client, ClientError};
use super::config::{GraphKind, RoundConfig};
use super::messages::Round;
use super::server::Outcome;
use super::sim;

const SEED: [u8; 32] = [0x2b; 32];

fn config(graph: GraphKind, n: usize) -> Arc<RoundConfig> {
    Arc::new(RoundConfig {
        session_id: [0x51; 32],
        roster: (0..n as u32)
            .map(|i| sim::identity(&SEED, i).public_key())
            .collect(),
        vector_len: 4,
        modulus_bits: 16,
        threshold: n / 2 + 1,
        min_survivors: n / 2 + 1,
        graph,
        max_input: 1000,
    })
}

fn inputs(n: usize) -> Vec<Vec<u64>> {
    (0..n as u64).map(|i| vec![i, 7 * i, 999, 0]).collect()
}

fn sum(outcome: &Outcome) -> Vec<u64> {
    match outcome {
        Outcome::Sum(a) => a.sum.clone(),
        Outcome::Aborted { round, reason } => panic!("aborted in {round:?}: {reason:?}"),
    }
}

/// Full and sparse graphs, and a client lost before its masked input: the late
/// inputs give the same messages, byte for byte, and the same sum as inputs given at once.
#[test]
fn a_late_input_sends_the_same_messages_and_gives_the_same_sum() {
    let lost = Some(Round::MaskedInputCollection);
    for (graph, n, drop) in [
        (GraphKind::Full, 5, None),
        (GraphKind::Full, 5, lost),
        (GraphKind::Sparse { degree: 4 }, 9, None),
    ] {
        let cfg = config(graph, n);
        let mut drops = vec![None; n];
        drops[1] = drop;
        let at_once = sim::run(&cfg, &SEED, &inputs(n), &drops, &mut |_| {}).unwrap();
        let late = sim::run_late_input(&cfg, &SEED, &inputs(n), &drops).unwrap();
        assert_eq!(
            late.client_messages, at_once.client_messages,
            "{graph:?} {drop:?}"
        );
        assert_eq!(sum(&late.outcome), sum(&at_once.outcome));
        let expected: Vec<u64> = (0..4)
            .map(|k| {
                (0..n)
                    .filter(|&i| drop.is_none() || i != 1)
                    .map(|i| inputs(n)[i][k])
                    .sum::<u64>()
                    % (1 << 16)
            })
            .collect();
        assert_eq!(sum(&late.outcome), expected);
    }
}

/// One input, of the round's shape and range, and only before it is masked.
#[test]
fn a_client_takes_one_input_of_the_right_shape_before_round_2() {
    let cfg = config(GraphKind::Full, 3);
    let rng = || Box::new(DeterministicRng::from_seed(&[3; 32]));
    let mut c =
        Client::awaiting_input(cfg.clone(), 0, sim::identity(&SEED, 0), rng(), 1000).unwrap();
    assert!(!c.has_input());
    assert!(matches!(
        c.provide_input(vec![1, 2, 3]),
        Err(ClientError::InputLength {
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        c.provide_input(vec![1, 2, 3, 1001]),
        Err(ClientError::Input(_))
    ));
    assert!(!c.has_input(), "a refused input is not kept");
    c.start(0).unwrap();
    c.provide_input(vec![1, 2, 3, 4]).unwrap();
    assert!(c.has_input());
    assert!(matches!(
        c.provide_input(vec![4, 3, 2, 1]),
        Err(ClientError::WrongState)
    ));
    // A client made with its input cannot be given another.
    let mut given = Client::new(cfg, 1, sim::identity(&SEED, 1), vec![0; 4], rng(), 1000).unwrap();
    assert!(matches!(
        given.provide_input(vec![0; 4]),
        Err(ClientError::WrongState)
    ));
    assert!(!ClientError::NoInput.is_fatal());
}
