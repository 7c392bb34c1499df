//! Property tests of secure aggregation (§9.5) over 10,000 random dropout schedules and
//! sizes, from a fixed seed so that a failure reproduces: the server outputs the exact sum
//! of the surviving inputs or aborts with a reason, never a wrong sum; unmasking never
//! reveals both kinds of share of one client; the threshold edge (t − 1, t) behaves
//! exactly. The schedules are split over four tests so the harness runs them in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quorate_protocol::secagg::config::{GraphKind, RoundConfig};
use quorate_protocol::secagg::messages::{self, ClientBody, Limits, Round};
use quorate_protocol::secagg::server::{AbortReason, Outcome};
use quorate_protocol::secagg::sim;

/// SplitMix64: a tiny deterministic generator for schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

const ROUNDS: [Round; 5] = [
    Round::AdvertiseKeys,
    Round::ShareKeys,
    Round::MaskedInputCollection,
    Round::ConsistencyCheck,
    Round::Unmasking,
];

struct Case {
    cfg: Arc<RoundConfig>,
    seed: [u8; 32],
    inputs: Vec<Vec<u64>>,
    drops: Vec<Option<Round>>,
}

fn make_case(case: u64) -> Case {
    let mut r = Rng(case.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EC_A66);
    let n = if r.below(8) == 0 {
        r.range(9, 12)
    } else {
        r.range(2, 7)
    };
    let m = r.range(1, 16);
    let bits = r.range(1, 64) as u32;
    let graph = if n >= 6 && r.below(3) == 0 {
        let kmax = (n - 2) & !1;
        GraphKind::Sparse {
            degree: 2 * r.range(1, kmax / 2),
        }
    } else {
        GraphKind::Full
    };
    let holders = match graph {
        GraphKind::Full => n,
        GraphKind::Sparse { degree } => degree + 1,
    };
    let t = r.range(1, holders);
    let min_survivors = if r.below(4) == 0 {
        r.range(t, n)
    } else {
        t.max(1)
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&case.to_be_bytes());
    let max_input = (((1u128 << bits) - 1) / n as u128) as u64;
    let cfg = Arc::new(RoundConfig {
        session_id: seed,
        roster: (0..n as u32)
            .map(|i| sim::identity(&seed, i).public_key())
            .collect(),
        vector_len: m,
        modulus_bits: bits,
        threshold: t,
        min_survivors,
        graph,
        max_input,
    });
    let inputs = (0..n)
        .map(|_| {
            (0..m)
                .map(|_| r.below(max_input.saturating_add(1).max(1)))
                .collect()
        })
        .collect();
    // Dropouts: none, random per client and round, or aimed at the threshold edge of a
    // chosen round (exactly t or t − 1 clients left answering it).
    let drops = match r.below(4) {
        0 => vec![None; n],
        1 | 2 => (0..n)
            .map(|_| {
                if r.below(3) == 0 {
                    Some(ROUNDS[r.below(5) as usize])
                } else {
                    None
                }
            })
            .collect(),
        _ => {
            let round = ROUNDS[r.range(1, 4)];
            let keep = (t + r.below(2) as usize).saturating_sub(1).clamp(0, n);
            let mut d = vec![None; n];
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, r.below(i as u64 + 1) as usize);
            }
            for &i in &order[keep..] {
                d[i] = Some(round);
            }
            d
        }
    };
    Case {
        cfg,
        seed,
        inputs,
        drops,
    }
}

fn check(case: u64) {
    let c = make_case(case);
    let res = sim::run(&c.cfg, &c.seed, &c.inputs, &c.drops, &mut |_| {})
        .unwrap_or_else(|e| panic!("case {case}: simulation failed: {e}"));
    let limits = Limits::of(&c.cfg);
    let bits = c.cfg.modulus_bits;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };

    // Who sent what, from the clients' own messages.
    let mut sent_masked: BTreeSet<u32> = BTreeSet::new();
    let mut revealed: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    let mut survivors_seen: Option<Vec<u32>> = None;
    for (sender, bytes) in &res.client_messages {
        let msg = messages::decode_client_message(bytes, &limits).expect("client messages decode");
        assert_eq!(msg.sender, *sender);
        match &msg.body {
            ClientBody::MaskedInput { .. } => {
                sent_masked.insert(*sender);
            }
            ClientBody::Unmasking {
                self_mask_shares,
                mask_key_shares,
            } => {
                for (o, _) in self_mask_shares {
                    revealed.entry(*o).or_default().0 = true;
                }
                for (o, _) in mask_key_shares {
                    revealed.entry(*o).or_default().1 = true;
                }
            }
            _ => {}
        }
    }
    for o in &res.server_messages {
        if let Ok(m) = messages::decode_server_message(&o.bytes, &limits)
            && let messages::ServerBody::Survivors { survivors } = m.body
        {
            survivors_seen = Some(survivors);
        }
    }
    // Unmasking never reveals both kinds of share of one client, and reveals the right kind.
    for (owner, (selfm, maskk)) in &revealed {
        assert!(
            !(selfm & maskk),
            "case {case}: both kinds of share revealed for client {owner}"
        );
        let in_u3 = survivors_seen.as_ref().is_some_and(|s| s.contains(owner));
        assert_eq!(
            *selfm, in_u3,
            "case {case}: self-mask share of {owner} revealed iff it survived"
        );
    }

    match &res.outcome {
        Outcome::Sum(agg) => {
            let u3: Vec<u32> = sent_masked.iter().copied().collect();
            assert_eq!(
                agg.contributors, u3,
                "case {case}: contributors are exactly U3"
            );
            assert!(agg.contributors.len() >= c.cfg.min_survivors);
            for j in 0..c.cfg.vector_len {
                let want = agg
                    .contributors
                    .iter()
                    .fold(0u64, |a, &i| a.wrapping_add(c.inputs[i as usize][j]))
                    & mask;
                assert_eq!(agg.sum[j], want, "case {case}: WRONG SUM at element {j}");
            }
        }
        Outcome::Aborted { reason, round } => {
            assert!(
                matches!(
                    reason,
                    AbortReason::TooFewClients { .. } | AbortReason::TooFewShares { .. }
                ),
                "case {case}: honest clients must never cause {reason:?}"
            );
            if let AbortReason::TooFewClients { have, need, .. } = reason {
                assert!(
                    have < need,
                    "case {case}: abort in {round:?} with {have} ≥ {need}"
                );
            }
            assert!(
                c.drops.iter().any(Option::is_some)
                    || res.client_errors.iter().any(Option::is_some),
                "case {case}: aborted without any dropout or client abort: {reason:?}"
            );
        }
    }
    // With no dropouts the round must succeed.
    if c.drops.iter().all(Option::is_none) {
        assert!(
            matches!(res.outcome, Outcome::Sum(_)),
            "case {case}: no dropouts but {:?}",
            res.outcome
        );
    }
}

fn run_range(range: std::ops::Range<u64>) {
    for case in range {
        check(case);
    }
}

#[test]
fn schedules_0_to_2499() {
    run_range(0..2500);
}

#[test]
fn schedules_2500_to_4999() {
    run_range(2500..5000);
}

#[test]
fn schedules_5000_to_7499() {
    run_range(5000..7500);
}

#[test]
fn schedules_7500_to_9999() {
    run_range(7500..10_000);
}

/// The threshold edge in the last round, exactly: t unmasking answers give the sum,
/// t − 1 give an abort, for full and sparse graphs.
#[test]
fn threshold_edge_in_unmasking() {
    for (n, graph, t) in [
        (7usize, GraphKind::Full, 4usize),
        (10, GraphKind::Full, 6),
        (9, GraphKind::Sparse { degree: 6 }, 4),
    ] {
        for answering in [t, t - 1] {
            let mut seed = [9u8; 32];
            seed[0] = answering as u8;
            seed[1] = n as u8;
            let cfg = Arc::new(RoundConfig {
                session_id: seed,
                roster: (0..n as u32)
                    .map(|i| sim::identity(&seed, i).public_key())
                    .collect(),
                vector_len: 4,
                modulus_bits: 24,
                threshold: t,
                min_survivors: t,
                graph,
                max_input: 1000,
            });
            let inputs: Vec<Vec<u64>> = (0..n).map(|i| vec![i as u64; 4]).collect();
            let drops: Vec<Option<Round>> = (0..n)
                .map(|i| (i >= answering).then_some(Round::Unmasking))
                .collect();
            let res = sim::run(&cfg, &seed, &inputs, &drops, &mut |_| {}).unwrap();
            let sparse = matches!(graph, GraphKind::Sparse { .. });
            match (&res.outcome, answering == t) {
                (Outcome::Sum(agg), true) => {
                    assert_eq!(agg.contributors.len(), n);
                    assert_eq!(agg.sum, vec![(0..n as u64).sum::<u64>(); 4]);
                }
                (
                    Outcome::Aborted {
                        reason: AbortReason::TooFewClients { have, need, .. },
                        ..
                    },
                    false,
                ) => {
                    assert_eq!((*have, *need), (t - 1, t));
                }
                // In a sparse graph t answers overall may still leave some owner with fewer
                // than t answering neighbours: then the abort names that owner.
                (
                    Outcome::Aborted {
                        reason: AbortReason::TooFewShares { need, .. },
                        ..
                    },
                    true,
                ) if sparse => {
                    assert_eq!(*need, t);
                }
                (o, _) => panic!("n={n} t={t} answering={answering}: {o:?}"),
            }
        }
    }
}
