//! Finding L2, graph grinding (§17.3): a server that chooses `session_id` or `U1` can no
//! longer choose the sparse graph, and a server that tampers with the graph contributions
//! (§9.5.7) is refused by every honest client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use quorate_crypto::secagg::kdf;

use super::client::ClientError;
use super::config::{GraphKind, RoundConfig};
use super::graph::{self, Graph};
use super::messages::{self, Limits, Round, ServerBody};
use super::server::{AbortReason, Outcome, Outgoing};
use super::sim;

const N: usize = 16;
const DEGREE: usize = 4;
const T: usize = 3;
const VICTIM: u32 = 0;
/// The clients colluding with the server.
const CORRUPT: [u32; 3] = [5, 9, 13];
const IDENTITIES: [u8; 32] = [0x17; 32];

fn config(session_id: [u8; 32]) -> Arc<RoundConfig> {
    static ROSTER: OnceLock<Vec<quorate_crypto::PublicKey>> = OnceLock::new();
    Arc::new(RoundConfig {
        session_id,
        roster: ROSTER
            .get_or_init(|| {
                (0..N as u32)
                    .map(|i| sim::identity(&IDENTITIES, i).public_key())
                    .collect()
            })
            .clone(),
        vector_len: 3,
        modulus_bits: 16,
        threshold: T,
        min_survivors: T,
        graph: GraphKind::Sparse { degree: DEGREE },
        max_input: 1000,
    })
}

fn session(i: u32) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

fn inputs() -> Vec<Vec<u64>> {
    (0..N as u64).map(|i| vec![i, 2 * i, 3 * i + 1]).collect()
}

fn corrupt_neighbours(nb: &[u32]) -> usize {
    nb.iter().filter(|v| CORRUPT.contains(v)).count()
}

/// The graph seed before this rule: `session_id` (through the round digest) and `U1` only.
fn old_seed(round: &[u8; 32], members: &[u32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    kdf::hkdf(
        round,
        &graph::members_digest(members),
        &[b"quorate/v1/secagg/graph\0"],
        &mut out,
    )
    .unwrap();
    out
}

/// The victim's neighbours in a simulated round: the senders of the round-0 envelopes the
/// server relayed to it.
fn victim_neighbours(cfg: &RoundConfig, res: &sim::SimResult) -> Vec<u32> {
    let limits = Limits::of(cfg);
    res.server_messages
        .iter()
        .find_map(|o| {
            let m = messages::decode_server_message(&o.bytes, &limits).ok()?;
            match m.body {
                ServerBody::Keys { envelopes, .. } if o.to == VICTIM => Some(
                    envelopes
                        .iter()
                        .map(|e| messages::decode_client_message(e, &limits).unwrap().sender)
                        .collect::<Vec<u32>>(),
                ),
                _ => None,
            }
        })
        .expect("key list to the victim")
}

/// A server-side hook that rewrites the body of every message of one kind.
fn rewrite(
    cfg: &RoundConfig,
    f: impl Fn(u32, ServerBody<'_>) -> Option<ServerBody<'_>>,
) -> impl FnMut(&mut Outgoing) {
    let limits = Limits::of(cfg);
    move |o: &mut Outgoing| {
        let bytes = o.bytes.clone();
        let Ok(m) = messages::decode_server_message(&bytes, &limits) else {
            return;
        };
        if let Some(body) = f(o.to, m.body) {
            o.bytes = messages::encode_server_message(&m.round_digest, &body);
        }
    }
}

fn assert_all_refuse(res: &sim::SimResult, why: &str) {
    for (i, e) in res.client_errors.iter().enumerate() {
        assert!(
            matches!(
                e,
                Some(ClientError::InconsistentView(_) | ClientError::NotAMember("U1"))
            ),
            "client {i}: {e:?} (expected a refusal: {why})"
        );
    }
    assert!(res.finished.is_empty());
    assert!(matches!(res.outcome, Outcome::Aborted { .. }));
}

#[test]
fn attack_l2_session_id_no_longer_chooses_the_graph() {
    let members: Vec<u32> = (0..N as u32).collect();
    // The old derivation: an offline search over session ids finds one that places t
    // corrupt clients among the victim's k neighbours.
    let ground = (0..20_000u32)
        .find(|&i| {
            let g = Graph::new(
                GraphKind::Sparse { degree: DEGREE },
                &members,
                &old_seed(&config(session(i)).digest(), &members),
            );
            corrupt_neighbours(&g.neighbours(VICTIM)) >= T
        })
        .expect("a toy search finds a grinding session id");
    let cfg = config(session(ground));
    let old = Graph::new(cfg.graph, &members, &old_seed(&cfg.digest(), &members));
    assert!(corrupt_neighbours(&old.neighbours(VICTIM)) >= T);

    // Now: the same session id and the same U1 (nobody drops), run with different client
    // randomness. The graph changes with the clients' contributions, and the ground
    // session id does not give the victim t corrupt neighbours.
    let mut seen = Vec::new();
    let mut bad = 0;
    for run in 0..8u8 {
        let res = sim::run_seeded(
            &cfg,
            &IDENTITIES,
            &[run; 32],
            &inputs(),
            &[],
            &mut |_: &mut Outgoing| {},
        )
        .unwrap();
        let Outcome::Sum(agg) = &res.outcome else {
            panic!("run {run}: {:?}", res.outcome)
        };
        assert_eq!(agg.contributors, members);
        let nb = victim_neighbours(&cfg, &res);
        assert_eq!(nb.len(), DEGREE);
        if corrupt_neighbours(&nb) >= T {
            bad += 1;
        }
        seen.push(nb);
    }
    seen.sort();
    seen.dedup();
    assert!(
        seen.len() >= 4,
        "the graph must follow the clients' randomness: {seen:?}"
    );
    assert!(
        bad <= 1,
        "the ground session id still controls the graph ({bad} of 8 runs)"
    );

    // The same search against the new derivation: the server must fix the commitments
    // before it sees the honest contributions, so it can only search with guessed ones. The
    // session id it finds that way does not give the victim t corrupt neighbours in the
    // real round.
    let guess =
        || -> Vec<(u32, [u8; 32])> { members.iter().map(|&m| (m, [0xee ^ m as u8; 32])).collect() };
    let (found, guessed_nb) = (0..20_000u32)
        .find_map(|i| {
            let digest = config(session(i)).digest();
            let reveals = guess();
            let commitments: Vec<(u32, [u8; 32])> = reveals
                .iter()
                .map(|(m, r)| (*m, kdf::graph_commitment(r, &digest, *m)))
                .collect();
            let seed = graph::contributed_seed(&digest, &commitments, &reveals);
            let g = Graph::new(GraphKind::Sparse { degree: DEGREE }, &members, &seed);
            let nb = g.neighbours(VICTIM);
            (corrupt_neighbours(&nb) >= T).then_some((i, nb))
        })
        .expect("a search with guessed contributions finds a session id");
    let cfg = config(session(found));
    let res = sim::run_seeded(
        &cfg,
        &IDENTITIES,
        &[0x42; 32],
        &inputs(),
        &[],
        &mut |_: &mut Outgoing| {},
    )
    .unwrap();
    assert!(matches!(res.outcome, Outcome::Sum(_)));
    let real = victim_neighbours(&cfg, &res);
    assert_ne!(real, guessed_nb);
    assert!(
        corrupt_neighbours(&real) < T,
        "the searched session id still chose the victim's neighbours: {real:?}"
    );
}

#[test]
fn attack_l2_replaced_reveal_is_refused() {
    let cfg = config(session(1));
    let corrupt = CORRUPT[0];
    let mut tamper = rewrite(&cfg, |_, body| match body {
        ServerBody::Keys {
            members,
            envelopes,
            reveals: Some(mut reveals),
        } => {
            // After seeing the honest reveals, swap in another contribution for a corrupt
            // client (its commitment cannot match).
            let i = reveals.iter().position(|(c, _)| *c == corrupt).unwrap();
            reveals[i].1 = [0xab; 32];
            Some(ServerBody::Keys {
                members,
                envelopes,
                reveals: Some(reveals),
            })
        }
        _ => None,
    });
    let res = sim::run_seeded(&cfg, &IDENTITIES, &[3; 32], &inputs(), &[], &mut tamper).unwrap();
    assert_all_refuse(&res, "a reveal that does not match its commitment");
    assert!(matches!(
        res.outcome,
        Outcome::Aborted {
            round: Round::ShareKeys,
            ..
        }
    ));
}

#[test]
fn attack_l2_left_out_reveal_is_refused() {
    let cfg = config(session(2));
    let left_out = 7u32;
    // The reveal left out, with and without also removing the client from U1.
    for drop_member in [false, true] {
        let mut tamper = rewrite(&cfg, |_, body| match body {
            ServerBody::Keys {
                mut members,
                envelopes,
                reveals: Some(mut reveals),
            } => {
                reveals.retain(|(c, _)| *c != left_out);
                if drop_member {
                    members.retain(|c| *c != left_out);
                }
                Some(ServerBody::Keys {
                    members,
                    envelopes,
                    reveals: Some(reveals),
                })
            }
            _ => None,
        });
        let res =
            sim::run_seeded(&cfg, &IDENTITIES, &[4; 32], &inputs(), &[], &mut tamper).unwrap();
        assert_all_refuse(&res, "a committed client's reveal is missing");
    }
}

#[test]
fn attack_l2_changed_own_commitment_is_refused() {
    let cfg = config(session(3));
    let victim = 4u32;
    let mut tamper = rewrite(&cfg, |to, body| match body {
        ServerBody::Commitments { mut commitments } if to == victim => {
            let i = commitments.iter().position(|(c, _)| *c == victim).unwrap();
            commitments[i].1[0] ^= 1;
            Some(ServerBody::Commitments { commitments })
        }
        _ => None,
    });
    let res = sim::run_seeded(&cfg, &IDENTITIES, &[5; 32], &inputs(), &[], &mut tamper).unwrap();
    assert!(
        matches!(
            res.client_errors[victim as usize],
            Some(ClientError::InconsistentView(_))
        ),
        "{:?}",
        res.client_errors[victim as usize]
    );
    // The victim never revealed, so the server cannot open ShareKeys.
    assert!(!res.client_messages.iter().any(|(s, m)| {
        *s == victim
            && messages::decode_client_message(m, &Limits::of(&cfg))
                .is_ok_and(|d| d.round == Round::GraphContribution)
    }));
    assert!(matches!(
        res.outcome,
        Outcome::Aborted {
            round: Round::GraphContribution,
            reason: AbortReason::MissingContributions { .. },
        }
    ));
}

#[test]
fn attack_l2_changed_peer_commitment_is_refused() {
    // A list that shows a client another client's commitment changed (the server's own
    // contribution in its place) is caught at ShareKeys: the real reveal does not match.
    let cfg = config(session(4));
    let mut tamper = rewrite(&cfg, |to, body| match body {
        ServerBody::Commitments { mut commitments } if to == 0 => {
            commitments[3].1 = kdf::graph_commitment(&[0x99; 32], &cfg_digest(), 3);
            Some(ServerBody::Commitments { commitments })
        }
        _ => None,
    });
    let res = sim::run_seeded(&cfg, &IDENTITIES, &[6; 32], &inputs(), &[], &mut tamper).unwrap();
    assert!(
        matches!(res.client_errors[0], Some(ClientError::InconsistentView(_))),
        "{:?}",
        res.client_errors[0]
    );
    assert!(!res.finished.contains(&0));
}

fn cfg_digest() -> [u8; 32] {
    config(session(4)).digest()
}

#[test]
fn sparse_round_drop_during_contribution_aborts() {
    let cfg = config(session(5));
    let mut drops = vec![None; N];
    drops[2] = Some(Round::GraphContribution);
    let res = sim::run_seeded(
        &cfg,
        &IDENTITIES,
        &[7; 32],
        &inputs(),
        &drops,
        &mut |_: &mut Outgoing| {},
    )
    .unwrap();
    assert!(matches!(
        res.outcome,
        Outcome::Aborted {
            round: Round::GraphContribution,
            reason: AbortReason::MissingContributions { have: 15, need: 16 },
        }
    ));
    // A drop after the reveal is an ordinary dropout: the round still sums.
    drops[2] = Some(Round::MaskedInputCollection);
    let res = sim::run_seeded(
        &cfg,
        &IDENTITIES,
        &[7; 32],
        &inputs(),
        &drops,
        &mut |_: &mut Outgoing| {},
    )
    .unwrap();
    let Outcome::Sum(agg) = res.outcome else {
        panic!("{:?}", res.outcome)
    };
    assert!(!agg.contributors.contains(&2));
    let want: Vec<u64> = (0..3)
        .map(|j| {
            agg.contributors
                .iter()
                .map(|&i| inputs()[i as usize][j])
                .sum()
        })
        .collect();
    assert_eq!(agg.sum, want);
}

#[test]
fn sparse_consistency_digest_binds_the_commitment_list() {
    let round = [1u8; 32];
    let u3 = [0u32, 1, 2];
    let a = messages::survivors_digest_bound(&round, Some(&[2; 32]), &u3);
    let b = messages::survivors_digest_bound(&round, Some(&[3; 32]), &u3);
    assert_ne!(a, b);
    assert_eq!(
        messages::survivors_digest_bound(&round, None, &u3),
        messages::survivors_digest(&round, &u3)
    );
}

#[test]
fn decoders_expect_exactly_the_form_of_the_round_graph() {
    let sparse = config(session(6));
    let mut full_cfg = (*sparse).clone();
    full_cfg.graph = GraphKind::Full;
    let (ls, lf) = (Limits::of(&sparse), Limits::of(&full_cfg));
    let key = sim::identity(&IDENTITIES, 1);
    let digest = sparse.digest();
    let keys = |graph_commitment| messages::ClientBody::AdvertiseKeys {
        cipher_pk: quorate_crypto::secagg::ka::KaPublicKey([1; 32]),
        mask_pk: quorate_crypto::secagg::ka::KaPublicKey([2; 32]),
        graph_commitment,
    };
    let with = messages::encode_client_message(&key, &digest, 1, &keys(Some([3; 32])));
    let without = messages::encode_client_message(&key, &digest, 1, &keys(None));
    assert!(messages::decode_client_message(&with, &ls).is_ok());
    assert!(messages::decode_client_message(&with, &lf).is_err());
    assert!(messages::decode_client_message(&without, &lf).is_ok());
    assert!(messages::decode_client_message(&without, &ls).is_err());
    let reveal = messages::encode_client_message(
        &key,
        &digest,
        1,
        &messages::ClientBody::GraphContribution {
            contribution: [4; 32],
        },
    );
    assert!(messages::decode_client_message(&reveal, &ls).is_ok());
    assert!(messages::decode_client_message(&reveal, &lf).is_err());
    let list = messages::encode_server_message(
        &digest,
        &ServerBody::Commitments {
            commitments: vec![(1, [5; 32]), (3, [6; 32])],
        },
    );
    assert!(messages::decode_server_message(&list, &ls).is_ok());
    assert!(messages::decode_server_message(&list, &lf).is_err());
    let unsorted = messages::encode_server_message(
        &digest,
        &ServerBody::Commitments {
            commitments: vec![(3, [5; 32]), (1, [6; 32])],
        },
    );
    assert!(messages::decode_server_message(&unsorted, &ls).is_err());
    let key_list = |reveals| {
        messages::encode_server_message(
            &digest,
            &ServerBody::Keys {
                members: vec![1, 3],
                envelopes: vec![],
                reveals,
            },
        )
    };
    let (kr, kn) = (key_list(Some(vec![(1, [7; 32])])), key_list(None));
    assert!(messages::decode_server_message(&kr, &ls).is_ok());
    assert!(messages::decode_server_message(&kr, &lf).is_err());
    assert!(messages::decode_server_message(&kn, &lf).is_ok());
    assert!(messages::decode_server_message(&kn, &ls).is_err());
}
