//! Secure aggregation end to end (§9.5): exact sums with dropouts in every round, aborts
//! with clear reasons, an equivocating server detected, and message rejection rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quorate_protocol::secagg::config::{GraphKind, RoundConfig};
use quorate_protocol::secagg::messages::Round;
use quorate_protocol::secagg::server::{AbortReason, Outcome};
use quorate_protocol::secagg::sim;

fn config(
    seed: &[u8; 32],
    n: usize,
    m: usize,
    bits: u32,
    t: usize,
    graph: GraphKind,
) -> Arc<RoundConfig> {
    Arc::new(RoundConfig {
        session_id: *seed,
        roster: (0..n as u32)
            .map(|i| sim::identity(seed, i).public_key())
            .collect(),
        vector_len: m,
        modulus_bits: bits,
        threshold: t,
        min_survivors: t,
        graph,
        max_input: ((1u128 << bits) - 1) as u64 / n as u64,
    })
}

fn inputs(n: usize, m: usize, max: u64) -> Vec<Vec<u64>> {
    (0..n)
        .map(|i| {
            (0..m)
                .map(|j| ((i * 7919 + j * 104_729) as u64) % (max + 1))
                .collect()
        })
        .collect()
}

fn plain_sum(inputs: &[Vec<u64>], who: &[u32], bits: u32) -> Vec<u64> {
    let m = inputs[0].len();
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    (0..m)
        .map(|j| {
            who.iter()
                .fold(0u64, |a, &i| a.wrapping_add(inputs[i as usize][j]))
                & mask
        })
        .collect()
}

#[test]
fn full_round_without_dropouts_gives_the_exact_sum() {
    let seed = [1u8; 32];
    let cfg = config(&seed, 5, 9, 20, 3, GraphKind::Full);
    let x = inputs(5, 9, cfg.max_input);
    let r = sim::run(&cfg, &seed, &x, &[], &mut |_| {}).unwrap();
    let Outcome::Sum(agg) = r.outcome else {
        panic!("aborted: {:?}", r.outcome)
    };
    assert_eq!(agg.contributors, vec![0, 1, 2, 3, 4]);
    assert!(agg.dropped.is_empty());
    assert_eq!(agg.sum, plain_sum(&x, &agg.contributors, 20));
    assert_eq!(r.finished.len(), 5);
}

#[test]
fn dropout_after_sharing_keys_is_unmasked() {
    let seed = [2u8; 32];
    let cfg = config(&seed, 6, 5, 32, 3, GraphKind::Full);
    let x = inputs(6, 5, cfg.max_input);
    let drops = [
        None,
        Some(Round::MaskedInputCollection),
        None,
        None,
        Some(Round::AdvertiseKeys),
        None,
    ];
    let r = sim::run(&cfg, &seed, &x, &drops, &mut |_| {}).unwrap();
    let Outcome::Sum(agg) = r.outcome else {
        panic!("aborted: {:?}", r.outcome)
    };
    assert_eq!(agg.contributors, vec![0, 2, 3, 5]);
    assert_eq!(agg.sum, plain_sum(&x, &agg.contributors, 32));
}

#[test]
fn many_dropouts_regenerated_in_batches_across_threads_give_the_exact_sum() {
    // 40 clients, 15 of them dropping after ShareKeys: the server regenerates 25 self masks
    // and 15 × 25 pairwise masks, several regeneration batches shared by its workers.
    let seed = [7u8; 32];
    let (n, m) = (40, 3 * 1024 + 11);
    let cfg = config(&seed, n, m, 20, 21, GraphKind::Full);
    let x = inputs(n, m, cfg.max_input);
    let drops: Vec<Option<Round>> = (0..n)
        .map(|i| (i % 8 < 3).then_some(Round::MaskedInputCollection))
        .collect();
    let r = sim::run(&cfg, &seed, &x, &drops, &mut |_| {}).unwrap();
    let Outcome::Sum(agg) = r.outcome else {
        panic!("aborted: {:?}", r.outcome)
    };
    assert_eq!(agg.dropped.len(), 15);
    assert_eq!(agg.contributors.len(), 25);
    assert_eq!(agg.sum, plain_sum(&x, &agg.contributors, 20));
}

#[test]
fn too_few_survivors_abort() {
    let seed = [3u8; 32];
    let cfg = config(&seed, 4, 3, 16, 3, GraphKind::Full);
    let x = inputs(4, 3, cfg.max_input);
    let drops = [
        None,
        Some(Round::MaskedInputCollection),
        Some(Round::ShareKeys),
        None,
    ];
    let r = sim::run(&cfg, &seed, &x, &drops, &mut |_| {}).unwrap();
    match r.outcome {
        Outcome::Aborted {
            reason: AbortReason::TooFewClients { have, need, .. },
            ..
        } => {
            assert_eq!((have, need), (2, 3));
        }
        other => panic!("expected an abort, got {other:?}"),
    }
}

// ---------- Manual driving: a malicious server and message-rule tests ----------

use quorate_crypto::secagg::rng::DeterministicRng;
use quorate_protocol::secagg::client::{Client, ClientError};
use quorate_protocol::secagg::messages::{self, ClientBody, Limits, ServerBody};
use quorate_protocol::secagg::server::{Reject, Server};

fn clients(cfg: &Arc<RoundConfig>, seed: &[u8; 32], x: &[Vec<u64>]) -> Vec<Client> {
    (0..cfg.clients() as u32)
        .map(|i| {
            let rng = Box::new(DeterministicRng::from_seed(&sim::rng_seed(seed, i)));
            Client::new(
                cfg.clone(),
                i,
                sim::identity(seed, i),
                x[i as usize].clone(),
                rng,
                10_000,
            )
            .unwrap()
        })
        .collect()
}

/// Runs the honest protocol until the server has queued the messages that open `round`;
/// returns them undelivered.
fn run_until(
    server: &mut Server,
    cs: &mut [Client],
    round: Round,
) -> Vec<quorate_protocol::secagg::Outgoing> {
    for c in cs.iter_mut() {
        let m = c.start(0).unwrap();
        server.handle_message(&m, 0).unwrap();
    }
    loop {
        let out = server.poll_transmit();
        if server.round() == round {
            return out;
        }
        for o in out {
            if let Some(reply) = cs[o.to as usize].handle_message(&o.bytes, 0).unwrap() {
                server.handle_message(&reply, 0).unwrap();
            }
        }
    }
}

#[test]
fn equivocating_server_is_detected_and_no_share_is_revealed() {
    let seed = [7u8; 32];
    let cfg = config(&seed, 5, 4, 16, 3, GraphKind::Full);
    let x = inputs(5, 4, cfg.max_input);
    let mut server = Server::new(cfg.clone(), 0, 1000, 1).unwrap();
    let mut cs = clients(&cfg, &seed, &x);
    let _honest = run_until(&mut server, &mut cs, Round::ConsistencyCheck);
    let digest = *server.round_digest();
    // The malicious server tells {0,1,2} that everyone survived and {3,4} that client 0
    // dropped, hoping to get b_0 shares from the first group and s_0 shares from the second.
    let view_a = messages::encode_server_message(
        &digest,
        &ServerBody::Survivors {
            survivors: vec![0, 1, 2, 3, 4],
        },
    );
    let view_b = messages::encode_server_message(
        &digest,
        &ServerBody::Survivors {
            survivors: vec![1, 2, 3, 4],
        },
    );
    let mut envelopes = Vec::new();
    for (i, c) in cs.iter_mut().enumerate() {
        let view = if i < 3 { &view_a } else { &view_b };
        envelopes.push(c.handle_message(view, 0).unwrap().unwrap());
    }
    // Variant 1: it relays every signature to everyone: every client sees a validly
    // signed foreign survivor set and aborts without revealing anything.
    for (i, c) in cs.iter_mut().enumerate() {
        let others: Vec<&[u8]> = envelopes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.as_slice())
            .collect();
        let msg =
            messages::encode_server_message(&digest, &ServerBody::Signatures { envelopes: others });
        let err = c.handle_message(&msg, 0).unwrap_err();
        assert!(
            matches!(err, ClientError::InconsistentView(_)),
            "client {i}: {err:?}"
        );
        assert!(err.is_fatal());
        assert!(
            c.handle_message(&msg, 0).is_err(),
            "an aborted client answers nothing"
        );
    }
}

#[test]
fn split_views_cannot_both_reach_the_threshold() {
    let seed = [8u8; 32];
    let cfg = config(&seed, 5, 4, 16, 3, GraphKind::Full);
    let x = inputs(5, 4, cfg.max_input);
    let mut server = Server::new(cfg.clone(), 0, 1000, 1).unwrap();
    let mut cs = clients(&cfg, &seed, &x);
    run_until(&mut server, &mut cs, Round::ConsistencyCheck);
    let digest = *server.round_digest();
    let view_a = messages::encode_server_message(
        &digest,
        &ServerBody::Survivors {
            survivors: vec![0, 1, 2, 3, 4],
        },
    );
    let view_b = messages::encode_server_message(
        &digest,
        &ServerBody::Survivors {
            survivors: vec![1, 2, 3, 4],
        },
    );
    let envelopes: Vec<Vec<u8>> = cs
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            c.handle_message(if i < 3 { &view_a } else { &view_b }, 0)
                .unwrap()
                .unwrap()
        })
        .collect();
    // Variant 2: each group only sees its own group's signatures. With 2t > n only one
    // group can reach t: group A (3 clients) unmasks, group B (2 < t) aborts.
    let mut revealed_s0 = false;
    let mut revealed_b0 = false;
    let limits = Limits::of(&cfg);
    for (i, c) in cs.iter_mut().enumerate() {
        let group: Vec<&[u8]> = envelopes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && (*j < 3) == (i < 3))
            .map(|(_, e)| e.as_slice())
            .collect();
        let msg =
            messages::encode_server_message(&digest, &ServerBody::Signatures { envelopes: group });
        match c.handle_message(&msg, 0) {
            Ok(Some(reply)) => {
                assert!(i < 3);
                let m = messages::decode_client_message(&reply, &limits).unwrap();
                let ClientBody::Unmasking {
                    self_mask_shares,
                    mask_key_shares,
                } = m.body
                else {
                    panic!()
                };
                revealed_b0 |= self_mask_shares.iter().any(|(o, _)| *o == 0);
                revealed_s0 |= mask_key_shares.iter().any(|(o, _)| *o == 0);
            }
            Err(ClientError::TooFew {
                round: Round::ConsistencyCheck,
                have: 2,
                need: 3,
            }) => assert!(i >= 3),
            other => panic!("client {i}: {other:?}"),
        }
    }
    assert!(
        revealed_b0 && !revealed_s0,
        "never both kinds of share for client 0"
    );
}

#[test]
fn server_rejects_malformed_replayed_duplicate_and_out_of_round_messages() {
    let seed = [9u8; 32];
    let cfg = config(&seed, 4, 2, 16, 2, GraphKind::Full);
    let x = inputs(4, 2, cfg.max_input);
    let mut server = Server::new(cfg.clone(), 0, 1000, 1).unwrap();
    let mut cs = clients(&cfg, &seed, &x);
    // The same clients in another session (replay source).
    let mut other_seed_cfg = (*cfg).clone();
    other_seed_cfg.session_id = [10u8; 32];
    let other = Arc::new(other_seed_cfg);
    let mut other_clients = clients(&other, &seed, &x);
    let replayed = other_clients[1].start(0).unwrap();

    let m0 = cs[0].start(0).unwrap();
    assert_eq!(
        server.handle_message(&m0[..m0.len() - 1], 0),
        Err(Reject::Malformed(
            quorate_protocol::secagg::codec::DecodeError::Truncated
        ))
    );
    let mut trailing = m0.clone();
    trailing.push(0);
    assert!(matches!(
        server.handle_message(&trailing, 0),
        Err(Reject::Malformed(_))
    ));
    let mut badsig = m0.clone();
    let last = badsig.len() - 1;
    badsig[last] ^= 1;
    assert_eq!(
        server.handle_message(&badsig, 0),
        Err(Reject::BadSignature(0))
    );
    assert_eq!(
        server.handle_message(&replayed, 0),
        Err(Reject::Replayed(1))
    );
    server.handle_message(&m0, 0).unwrap();
    assert_eq!(server.handle_message(&m0, 0), Err(Reject::Duplicate(0)));
    // Clients 1 and 2 advertise; client 3 stays silent and the round closes on timeout.
    for c in &mut cs[1..3] {
        let m = c.start(0).unwrap();
        server.handle_message(&m, 0).unwrap();
    }
    let late = cs[3].start(0).unwrap();
    server.handle_timeout(1000);
    assert_eq!(server.round(), Round::ShareKeys);
    // A round-0 message now is out of round (and client 3 is not a participant any more).
    assert!(matches!(
        server.handle_message(&late, 1000),
        Err(Reject::OutOfRound { sender: 3, .. })
    ));
    let out = server.poll_transmit();
    assert_eq!(out.len(), 3);
    let reply = cs[0].handle_message(&out[0].bytes, 1000).unwrap().unwrap();
    // Client 3 never joined: its ShareKeys would be refused as not eligible. A message of
    // client 0 from a later round is out of round.
    server.handle_message(&reply, 1000).unwrap();
    assert_eq!(
        server.handle_message(&reply, 1000),
        Err(Reject::Duplicate(0))
    );
}

#[test]
fn client_rejects_replayed_and_out_of_round_messages_and_aborts_on_tampering() {
    let seed = [11u8; 32];
    let cfg = config(&seed, 4, 2, 16, 2, GraphKind::Full);
    let x = inputs(4, 2, cfg.max_input);
    let mut server = Server::new(cfg.clone(), 0, 1000, 1).unwrap();
    let mut cs = clients(&cfg, &seed, &x);
    let keys = run_until(&mut server, &mut cs, Round::ShareKeys);
    let digest = *server.round_digest();
    let to0 = keys.iter().find(|o| o.to == 0).unwrap().bytes.clone();
    // Out of round: a survivor list while waiting for keys. Not fatal.
    let early = messages::encode_server_message(
        &digest,
        &ServerBody::Survivors {
            survivors: vec![0, 1],
        },
    );
    let e = cs[0].handle_message(&early, 0).unwrap_err();
    assert!(matches!(e, ClientError::OutOfRound { .. }) && !e.is_fatal());
    // Replayed: the same message under another round digest. Not fatal.
    let foreign = messages::encode_server_message(
        &[0u8; 32],
        &ServerBody::Survivors {
            survivors: vec![0, 1],
        },
    );
    assert_eq!(
        cs[0].handle_message(&foreign, 0).unwrap_err(),
        ClientError::Replayed
    );
    // Malformed. Not fatal.
    assert!(matches!(
        cs[0].handle_message(&to0[..10], 0).unwrap_err(),
        ClientError::Malformed(_)
    ));
    // The real key list still works after the rejections.
    assert!(cs[0].handle_message(&to0, 0).unwrap().is_some());
    // Duplicate of the key list: now out of round.
    assert!(matches!(
        cs[0].handle_message(&to0, 0).unwrap_err(),
        ClientError::OutOfRound { .. }
    ));

    // A server that substitutes a peer's advertised key is caught by the signature check.
    let limits = Limits::of(&cfg);
    let to1 = keys.iter().find(|o| o.to == 1).unwrap().bytes.clone();
    let m = messages::decode_server_message(&to1, &limits).unwrap();
    let ServerBody::Keys {
        members, envelopes, ..
    } = m.body
    else {
        panic!()
    };
    let mut forged: Vec<Vec<u8>> = envelopes.iter().map(|e| e.to_vec()).collect();
    let n = forged[0].len();
    forged[0][n - 70] ^= 0x01; // inside the signed payload: a public-key byte
    let refs: Vec<&[u8]> = forged.iter().map(|v| v.as_slice()).collect();
    let msg = messages::encode_server_message(
        &digest,
        &ServerBody::Keys {
            members,
            envelopes: refs,
            reveals: None,
        },
    );
    let e = cs[1].handle_message(&msg, 0).unwrap_err();
    assert!(
        matches!(e, ClientError::BadPeerMessage { peer: 0, .. }),
        "{e:?}"
    );
    assert!(cs[1].aborted().is_some());
}

#[test]
fn wrong_shares_from_a_corrupt_client_abort_instead_of_giving_a_wrong_sum() {
    let seed = [12u8; 32];
    let cfg = config(&seed, 4, 3, 16, 2, GraphKind::Full);
    let x = inputs(4, 3, cfg.max_input);
    let limits = Limits::of(&cfg);
    let digest = cfg.digest();
    // Client 0 is corrupt: in its unmasking message it changes the self-mask share it
    // reveals for client 1 (and signs it, as it holds its own key).
    let mut server = Server::new(cfg.clone(), 0, 1000, 1).unwrap();
    let mut cs = clients(&cfg, &seed, &x);
    let out = run_until(&mut server, &mut cs, Round::Unmasking);
    for o in out {
        let reply = cs[o.to as usize]
            .handle_message(&o.bytes, 0)
            .unwrap()
            .unwrap();
        let reply = if o.to == 0 {
            let m = messages::decode_client_message(&reply, &limits).unwrap();
            let ClientBody::Unmasking {
                mut self_mask_shares,
                mask_key_shares,
            } = m.body
            else {
                panic!()
            };
            let i = self_mask_shares
                .iter()
                .position(|(owner, _)| *owner == 1)
                .unwrap();
            self_mask_shares[i].1.0[0] ^= 1;
            messages::encode_client_message(
                &sim::identity(&seed, 0),
                &digest,
                0,
                &ClientBody::Unmasking {
                    self_mask_shares,
                    mask_key_shares,
                },
            )
        } else {
            reply
        };
        let _ = server.handle_message(&reply, 0);
    }
    match server.outcome() {
        Some(Outcome::Aborted {
            reason: AbortReason::ReconstructionMismatch { owner: 1, .. },
            ..
        }) => {}
        other => panic!("expected a reconstruction abort, got {other:?}"),
    }
}
