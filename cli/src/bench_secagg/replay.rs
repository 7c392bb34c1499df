//! Recording a benchmark round and replaying one party of it (§9.10).
//!
//! The state machines read no clock and take their randomness from a seeded generator, so
//! a party fed the same calls again does exactly the same work and sends exactly the same
//! bytes. Replaying a party alone, right next to a repetition of its bound, times both under
//! the same machine conditions: on a shared machine a burst of foreign load then lands on
//! one pair, not on one side of the ratio.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quorate_crypto::tensor_digest::sha256;
use quorate_protocol::secagg::messages::Round;
use quorate_protocol::secagg::server::{Outcome, Server};
use quorate_protocol::secagg::{Client, WorkCounters};

use super::bound::{Spent, Stopwatch};

/// One call the server received during the recorded run, in order.
pub enum ServerCall {
    /// `handle_message(bytes, now)`.
    Message(Vec<u8>, u64),
    /// `poll_transmit()`.
    Poll,
    /// `handle_timeout(now)`.
    Timeout(u64),
}

/// What one client received, and the digests of what it answered, in the recorded run.
#[derive(Default)]
pub struct ClientLog {
    /// `now` of its `start`.
    pub start: u64,
    /// The server messages it handled, with their `now`.
    pub inbox: Vec<(Vec<u8>, u64)>,
    /// SHA-256 of every message it sent, `start`'s first.
    pub sent: Vec<[u8; 32]>,
}

/// The time a replayed party spent in its calls, and the server's final-unmasking part.
pub struct Timed {
    /// All calls.
    pub total: Duration,
    /// The call that closed the unmasking round (server only).
    pub unmasking: Duration,
}

/// Feeds `client` (built exactly as in the recorded run) its recorded messages, timing only
/// its calls (wall clock and thread CPU time), and checks that it sends byte-identical
/// answers. Returns the time and its work counters.
pub fn client(mut client: Client, log: &ClientLog) -> anyhow::Result<(Spent, WorkCounters)> {
    let mut sent = Vec::with_capacity(log.sent.len());
    let watch = Stopwatch::start();
    let first = client.start(log.start)?;
    let mut spent = watch.stop();
    sent.push(sha256(&first));
    for (bytes, now) in &log.inbox {
        let watch = Stopwatch::start();
        let reply = client.handle_message(bytes, *now);
        spent += watch.stop();
        if let Some(reply) = reply.context("replayed client")? {
            sent.push(sha256(&reply));
        }
    }
    if sent != log.sent {
        bail!("a replayed client answered differently from the recorded run: this is a bug");
    }
    Ok((spent, client.counters()))
}

/// Replays the server's recorded calls on a fresh server (built by `make`, timed as a call)
/// and checks that it reaches the recorded outcome.
pub fn server(
    make: impl FnOnce() -> anyhow::Result<Server>,
    calls: &[ServerCall],
    expected: &Outcome,
) -> anyhow::Result<Timed> {
    let t0 = Instant::now();
    let mut server = make()?;
    let mut total = t0.elapsed();
    let mut unmasking = Duration::ZERO;
    for call in calls {
        let closing_unmask = server.round() == Round::Unmasking;
        let t0 = Instant::now();
        match call {
            ServerCall::Message(bytes, now) => {
                let _ = server.handle_message(bytes, *now);
            }
            ServerCall::Poll => {
                std::hint::black_box(server.poll_transmit());
            }
            ServerCall::Timeout(now) => server.handle_timeout(*now),
        }
        let e = t0.elapsed();
        total += e;
        if closing_unmask && server.outcome().is_some() {
            unmasking += e;
            break;
        }
    }
    if server.outcome() != Some(expected) {
        bail!("the replayed server reached another outcome than the recorded run: this is a bug");
    }
    Ok(Timed { total, unmasking })
}
