//! Fuzzing entry points (§9.9). Each takes arbitrary bytes and must never panic.
//!
//! The decoder hooks feed bytes straight to the strict decoders. The state-machine hooks
//! read the fuzz input as a sequence of records and drive a real client or server of a
//! small fixed round; bodies the fuzzer chooses are signed with the simulated clients'
//! keys (which the hooks know), so the fuzzer reaches the round logic while signature
//! verification stays exactly as in production.

use std::sync::Arc;

use quorate_crypto::secagg::rng::DeterministicRng;

use super::client::Client;
use super::codec::Reader;
use super::config::{GraphKind, RoundConfig};
use super::messages::{self, ClientBody, Limits, Round};
use super::server::Server;
use super::sim;

/// Clients of the fuzzing round.
pub const FUZZ_CLIENTS: usize = 4;
/// Seed of the fuzzing round's identities and session.
pub const FUZZ_SEED: [u8; 32] = [0x5a; 32];

/// The fixed round the state-machine hooks run: 4 clients, m = 3, b = 13, t = 2.
pub fn fuzz_config() -> Arc<RoundConfig> {
    Arc::new(RoundConfig {
        session_id: FUZZ_SEED,
        roster: (0..FUZZ_CLIENTS as u32)
            .map(|i| sim::identity(&FUZZ_SEED, i).public_key())
            .collect(),
        vector_len: 3,
        modulus_bits: 13,
        threshold: 2,
        min_survivors: 2,
        graph: GraphKind::Full,
        max_input: 1000,
    })
}

/// Decodes `data` as a client envelope, under the limits of [`fuzz_config`] and under
/// loose limits.
pub fn client_message(data: &[u8]) {
    let limits = Limits::of(&fuzz_config());
    let _ = messages::decode_client_message(data, &limits);
    let _ = messages::decode_client_message(
        data,
        &Limits {
            clients: u32::MAX,
            packed_len: 1 << 16,
            sparse: false,
        },
    );
    let _ = messages::decode_client_message(data, &Limits::of(&fuzz_config_sparse()));
}

/// The fuzzing round with a sparse graph of degree 2 (graph commitments in round 0 and
/// the GraphContribution round, §9.5.7), for the decoder hooks.
pub fn fuzz_config_sparse() -> Arc<RoundConfig> {
    let mut cfg = (*fuzz_config()).clone();
    cfg.graph = GraphKind::Sparse { degree: 2 };
    Arc::new(cfg)
}

/// Decodes `data` as a server message, under the limits of [`fuzz_config`] and of
/// [`fuzz_config_sparse`]; a success must re-encode to exactly `data`.
pub fn server_message(data: &[u8]) {
    for cfg in [fuzz_config(), fuzz_config_sparse()] {
        if let Ok(m) = messages::decode_server_message(data, &Limits::of(&cfg)) {
            let again = messages::encode_server_message(&m.round_digest, &m.body);
            assert_eq!(
                again, data,
                "server message decode/encode is not a bijection"
            );
        }
    }
}

/// Drives a server of [`fuzz_config`] with a sequence of CBOR records: `0` is a timeout
/// tick; `1, bytes` delivers `bytes` as they are; `t ≥ 2, sender, round, body` wraps the
/// fuzzer's `body` in an envelope signed by the simulated client `sender` (if the strict
/// decoder accepts the body) and delivers it. Returns whether the round produced a sum.
pub fn server(data: &[u8]) -> bool {
    let cfg = fuzz_config();
    let Ok(mut srv) = Server::new(cfg.clone(), 0, 10, 1) else {
        return false;
    };
    let digest = *srv.round_digest();
    let limits = Limits::of(&cfg);
    let mut now = 0u64;
    let mut r = Reader::new(data);
    for _ in 0..64 {
        if r.remaining() == 0 {
            break;
        }
        let Ok(tag) = r.uint("tag", 255) else { break };
        match tag {
            0 => {
                now += 11;
                srv.handle_timeout(now);
            }
            1 => {
                let Ok(raw) = r.bytes("raw", 1 << 16) else {
                    break;
                };
                let _ = srv.handle_message(raw, now);
            }
            _ => {
                let (Ok(sender), Ok(round), Ok(body)) = (
                    r.u32("sender", FUZZ_CLIENTS as u32 - 1),
                    r.uint("round", 5),
                    r.bytes("body", 1 << 16),
                ) else {
                    break;
                };
                let Some(env) = resign(&digest, sender, round, body, &limits) else {
                    continue;
                };
                let _ = srv.handle_message(&env, now);
            }
        }
        let _ = srv.poll_transmit();
    }
    if let Some(super::server::Outcome::Sum(agg)) = srv.outcome() {
        assert_eq!(agg.sum.len(), cfg.vector_len);
        return true;
    }
    false
}

/// Builds a signed envelope around a fuzzer-chosen body, if the body decodes.
fn resign(
    digest: &[u8; 32],
    sender: u32,
    round: u64,
    body: &[u8],
    limits: &Limits,
) -> Option<Vec<u8>> {
    let mut w = super::codec::Writer::default();
    w.map(5)
        .uint(1)
        .uint(messages::VERSION)
        .uint(2)
        .bytes(digest)
        .uint(3)
        .uint(u64::from(sender));
    w.uint(4).uint(round).uint(5).raw(body);
    let signed = w.finish();
    // Decode through a throwaway envelope to get a typed body, then sign it properly.
    let mut env = super::codec::Writer::default();
    env.array(2).bytes(&signed).bytes(&[0u8; 64]);
    let env = env.finish();
    let msg = messages::decode_client_message(&env, limits).ok()?;
    let key = sim::identity(&FUZZ_SEED, sender);
    Some(messages::encode_client_message(
        &key, digest, sender, &msg.body,
    ))
}

/// The input of client 0 in the fuzzing round (and in the corpus generator).
pub const FUZZ_INPUT_0: [u64; 3] = [1, 2, 3];

/// Drives client 0 of the fuzzing round with a sequence of server messages: each record is
/// `[kind: uint, bytes: bstr]`; kind 0 passes the bytes as they are, kind 1 first replaces
/// every relayed envelope in a Keys or Signatures message by one re-signed by its named
/// sender (so fuzzed bodies get past the signature check), kind 2 is a timeout tick.
/// Returns whether the client finished the round.
pub fn client(data: &[u8]) -> bool {
    let cfg = fuzz_config();
    let rng = Box::new(DeterministicRng::from_seed(&sim::rng_seed(&FUZZ_SEED, 0)));
    let Ok(mut c) = Client::new(
        cfg.clone(),
        0,
        sim::identity(&FUZZ_SEED, 0),
        FUZZ_INPUT_0.to_vec(),
        rng,
        100,
    ) else {
        return false;
    };
    if c.start(0).is_err() {
        return false;
    }
    let digest = *c.round_digest();
    let limits = Limits::of(&cfg);
    let mut now = 0u64;
    let mut r = Reader::new(data);
    for _ in 0..32 {
        if r.remaining() == 0 {
            break;
        }
        let (Ok(kind), Ok(bytes)) = (r.uint("kind", 2), r.bytes("bytes", 1 << 16)) else {
            break;
        };
        match kind {
            2 => {
                now += 50;
                let _ = c.handle_timeout(now);
            }
            1 => {
                let msg = resign_server(&digest, bytes, &limits);
                let _ = c.handle_message(msg.as_deref().unwrap_or(bytes), now);
            }
            _ => {
                let _ = c.handle_message(bytes, now);
            }
        }
        if c.aborted().is_some() || c.is_done() {
            break;
        }
    }
    c.is_done()
}

fn resign_server(digest: &[u8; 32], bytes: &[u8], limits: &Limits) -> Option<Vec<u8>> {
    let m = messages::decode_server_message(bytes, limits).ok()?;
    let fix = |envs: &[&[u8]]| -> Vec<Vec<u8>> {
        envs.iter()
            .filter_map(|e| {
                let d = messages::decode_client_message(e, limits).ok()?;
                let key = sim::identity(&FUZZ_SEED, d.sender);
                Some(messages::encode_client_message(
                    &key,
                    &d.round_digest,
                    d.sender,
                    &d.body,
                ))
            })
            .collect()
    };
    let body = match &m.body {
        messages::ServerBody::Keys {
            members,
            envelopes,
            reveals,
        } => {
            let e = fix(envelopes);
            let refs: Vec<&[u8]> = e.iter().map(|v| v.as_slice()).collect();
            return Some(messages::encode_server_message(
                digest,
                &messages::ServerBody::Keys {
                    members: members.clone(),
                    envelopes: refs,
                    reveals: reveals.clone(),
                },
            ));
        }
        messages::ServerBody::Signatures { envelopes } => {
            let e = fix(envelopes);
            let refs: Vec<&[u8]> = e.iter().map(|v| v.as_slice()).collect();
            return Some(messages::encode_server_message(
                digest,
                &messages::ServerBody::Signatures { envelopes: refs },
            ));
        }
        other => other.clone(),
    };
    Some(messages::encode_server_message(digest, &body))
}

/// The round of a client body, for corpus generators.
pub fn body_round(b: &ClientBody<'_>) -> Round {
    b.round()
}
