//! A deterministic in-process runner: one server and `n` clients on virtual time, with a
//! dropout schedule and an optional hook that tampers with the server's messages (to
//! play a malicious server). Used by the tests, the vector generator and the fuzz hooks;
//! like quinn-proto's `Pair`, it performs no I/O and reads no clock.

use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_crypto::secagg::rng::DeterministicRng;
use sha2::{Digest, Sha256};

use super::client::{Client, ClientError};
use super::config::RoundConfig;
use super::messages::Round;
use super::server::{Outcome, Outgoing, Server};

/// Per-round timeout of the simulation (virtual milliseconds).
pub const TIMEOUT_MS: u64 = 1_000;

/// The identity key of simulated client `i` under `seed`.
pub fn identity(seed: &[u8; 32], i: u32) -> SecretKey {
    let d: [u8; 32] = Sha256::new()
        .chain_update(b"quorate/v1/secagg/sim-identity\0")
        .chain_update(seed)
        .chain_update(i.to_be_bytes())
        .finalize()
        .into();
    SecretKey::from_seed(&d)
}

/// The randomness seed of simulated client `i` under `seed`.
pub fn rng_seed(seed: &[u8; 32], i: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"quorate/v1/secagg/sim-rng\0")
        .chain_update(seed)
        .chain_update(i.to_be_bytes())
        .finalize()
        .into()
}

/// What happened in a simulated round.
#[derive(Debug)]
pub struct SimResult {
    /// The server's outcome.
    pub outcome: Outcome,
    /// Each client's abort reason, if it aborted.
    pub client_errors: Vec<Option<ClientError>>,
    /// Clients that finished (sent their unmasking shares).
    pub finished: Vec<u32>,
    /// Every message the clients sent, as `(sender, bytes)`, in order.
    pub client_messages: Vec<(u32, Vec<u8>)>,
    /// Every message the server sent (after tampering), in order.
    pub server_messages: Vec<Outgoing>,
}

/// Runs one round. `drop_before[i] = Some(r)` makes client `i` go silent instead of sending
/// its round-`r` message. `tamper` sees every server message before delivery and may change
/// it (or empty it to suppress it).
pub fn run(
    cfg: &Arc<RoundConfig>,
    seed: &[u8; 32],
    inputs: &[Vec<u64>],
    drop_before: &[Option<Round>],
    tamper: &mut dyn FnMut(&mut Outgoing),
) -> Result<SimResult, String> {
    run_seeded(cfg, seed, seed, inputs, drop_before, tamper)
}

/// [`run`] with the identities of `seed` and the client randomness of `rng_seed` (so that
/// the same clients can run the same round again with fresh randomness).
pub fn run_seeded(
    cfg: &Arc<RoundConfig>,
    seed: &[u8; 32],
    randomness: &[u8; 32],
    inputs: &[Vec<u64>],
    drop_before: &[Option<Round>],
    tamper: &mut dyn FnMut(&mut Outgoing),
) -> Result<SimResult, String> {
    run_inner(cfg, seed, randomness, inputs, drop_before, tamper, false)
}

/// [`run`] with clients made without their inputs ([`Client::awaiting_input`]), each given
/// its input only when the masked-input round's message reaches it, after that message was
/// first refused for want of it (§15.1, prepared jobs). The clients' messages are those of
/// [`run`] byte for byte: rounds 0 and 1 never read the input.
pub fn run_late_input(
    cfg: &Arc<RoundConfig>,
    seed: &[u8; 32],
    inputs: &[Vec<u64>],
    drop_before: &[Option<Round>],
) -> Result<SimResult, String> {
    run_inner(cfg, seed, seed, inputs, drop_before, &mut |_| {}, true)
}

fn run_inner(
    cfg: &Arc<RoundConfig>,
    seed: &[u8; 32],
    randomness: &[u8; 32],
    inputs: &[Vec<u64>],
    drop_before: &[Option<Round>],
    tamper: &mut dyn FnMut(&mut Outgoing),
    late_input: bool,
) -> Result<SimResult, String> {
    let n = cfg.clients();
    let mut now = 0u64;
    let mut server = Server::new(cfg.clone(), now, TIMEOUT_MS, 2).map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let rng = Box::new(DeterministicRng::from_seed(&rng_seed(randomness, i)));
        let c = if late_input {
            Client::awaiting_input(cfg.clone(), i, identity(seed, i), rng, 10 * TIMEOUT_MS)
        } else {
            Client::new(
                cfg.clone(),
                i,
                identity(seed, i),
                inputs[i as usize].clone(),
                rng,
                10 * TIMEOUT_MS,
            )
        }
        .map_err(|e| e.to_string())?;
        clients.push(c);
    }
    let silent = |i: usize, r: Round| {
        drop_before
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|d| d <= r)
    };
    let sparse = matches!(cfg.graph, super::config::GraphKind::Sparse { .. });
    let mut client_messages = Vec::new();
    let mut server_messages = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        if silent(i, Round::AdvertiseKeys) {
            continue;
        }
        let m = c.start(now).map_err(|e| e.to_string())?;
        client_messages.push((i as u32, m.clone()));
        let _ = server.handle_message(&m, now);
    }
    let mut guard = 0;
    loop {
        guard += 1;
        if guard > 64 {
            return Err("simulation did not terminate".into());
        }
        let out = server.poll_transmit();
        if out.is_empty() {
            if server.outcome().is_some() {
                break;
            }
            now = server.poll_timeout().unwrap_or(now).max(now);
            server.handle_timeout(now);
            continue;
        }
        for mut o in out {
            tamper(&mut o);
            server_messages.push(o.clone());
            if o.bytes.is_empty() {
                continue;
            }
            let i = o.to as usize;
            let Some(c) = clients.get_mut(i) else {
                continue;
            };
            let next = c.round().next(sparse);
            if silent(i, next) {
                continue;
            }
            if late_input && next == Round::MaskedInputCollection && !c.has_input() {
                match c.handle_message(&o.bytes, now) {
                    Err(ClientError::NoInput) => {}
                    other => return Err(format!("round 2 without an input gave {other:?}")),
                }
                c.provide_input(inputs[i].clone())
                    .map_err(|e| e.to_string())?;
            }
            if let Ok(Some(reply)) = c.handle_message(&o.bytes, now) {
                client_messages.push((i as u32, reply.clone()));
                let _ = server.handle_message(&reply, now);
            }
        }
    }
    let outcome = server.outcome().cloned().ok_or("no outcome")?;
    Ok(SimResult {
        outcome,
        client_errors: clients.iter().map(|c| c.aborted().cloned()).collect(),
        finished: clients
            .iter()
            .filter(|c| c.is_done())
            .map(|c| c.index())
            .collect(),
        client_messages,
        server_messages,
    })
}
