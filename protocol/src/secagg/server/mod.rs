//! The server state machine (§9.5), sans-IO: client envelopes and `now` in, addressed
//! messages out, and finally the exact sum or an abort with its reason. Never a wrong sum:
//! every reconstructed secret is checked (mask keys against their advertised public key,
//! self-mask secrets against their commitment) before it is used.
//!
//! Each round collects from the clients eligible for it; it closes when all of them have
//! answered or when [`Server::handle_timeout`] is called at or after the deadline. The
//! final unmasking (Shamir reconstruction, key agreement with dropped clients, mask
//! regeneration) runs on `threads` threads.

mod contribution;
mod outcome;
mod unmask;

use std::collections::BTreeMap;
use std::sync::Arc;

use quorate_crypto::secagg::ka::KaPublicKey;

use crate::secagg::WorkCounters;
use crate::secagg::config::{ConfigError, RoundConfig};
use crate::secagg::encoding;
use crate::secagg::graph::Graph;
use crate::secagg::messages::{self, ClientBody, Limits, Round, ServerBody, ShareValue};

pub use outcome::{AbortReason, Aggregate, Outcome, Outgoing, Reject};

struct Advertised {
    envelope: Vec<u8>,
    mask_pk: KaPublicKey,
    /// Sparse graphs only: the commitment to the client's graph contribution (§9.5.7).
    graph_commitment: Option<[u8; 32]>,
}

struct SharedKeys {
    commitment: [u8; 32],
    /// `(recipient, ciphertext)`, ascending by recipient.
    ciphertexts: Vec<(u32, Vec<u8>)>,
}

struct Unmasked {
    self_mask: Vec<(u32, ShareValue)>,
    mask_key: Vec<(u32, ShareValue)>,
}

/// The secure-aggregation server of one round.
pub struct Server {
    cfg: Arc<RoundConfig>,
    digest: [u8; 32],
    limits: Limits,
    timeout_ms: u64,
    threads: usize,
    round: Round,
    deadline: u64,
    graph: Option<Graph>,
    advertised: BTreeMap<u32, Advertised>,
    /// Sparse graphs only: the commitment list sent in round 5 and its digest (§9.5.7).
    commitments: Vec<(u32, [u8; 32])>,
    commitments_digest: Option<[u8; 32]>,
    /// Sparse graphs only: the revealed graph contributions (§9.5.7).
    reveals: BTreeMap<u32, [u8; 32]>,
    shared: BTreeMap<u32, SharedKeys>,
    u3: Vec<u32>,
    sum: Vec<u64>,
    consistency: BTreeMap<u32, Vec<u8>>,
    unmasked: BTreeMap<u32, Unmasked>,
    survivors_digest: [u8; 32],
    outbox: Vec<Outgoing>,
    outcome: Option<Outcome>,
    counters: WorkCounters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("round", &self.round)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `cfg`, opening round 0 at `now`. `threads` = 0 uses every core.
    pub fn new(
        cfg: Arc<RoundConfig>,
        now: u64,
        timeout_ms: u64,
        threads: usize,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        Ok(Self {
            digest: cfg.digest(),
            limits: Limits::of(&cfg),
            sum: vec![0u64; cfg.vector_len],
            cfg,
            timeout_ms,
            threads,
            round: Round::AdvertiseKeys,
            deadline: now.saturating_add(timeout_ms),
            graph: None,
            advertised: BTreeMap::new(),
            commitments: Vec::new(),
            commitments_digest: None,
            reveals: BTreeMap::new(),
            shared: BTreeMap::new(),
            u3: Vec::new(),
            consistency: BTreeMap::new(),
            unmasked: BTreeMap::new(),
            survivors_digest: [0; 32],
            outbox: Vec::new(),
            outcome: None,
            counters: WorkCounters::default(),
        })
    }

    /// The round being collected.
    pub fn round(&self) -> Round {
        self.round
    }

    /// The round digest.
    pub fn round_digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The outcome, once the round has ended.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Work done in the final unmasking (for benchmarks).
    pub fn counters(&self) -> WorkCounters {
        self.counters
    }

    /// Threads used for the final unmasking.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Messages to send, in order; drains the queue.
    pub fn poll_transmit(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    /// When [`Self::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// Closes the open round if its deadline has passed.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.outcome.is_none() && now >= self.deadline {
            self.close_round(now);
        }
    }

    /// Clients expected to answer the open round.
    fn eligible(&self) -> Vec<u32> {
        match self.round {
            Round::AdvertiseKeys => (0..self.cfg.clients() as u32).collect(),
            Round::GraphContribution | Round::ShareKeys => {
                self.advertised.keys().copied().collect()
            }
            Round::MaskedInputCollection => self.shared.keys().copied().collect(),
            Round::ConsistencyCheck => self.u3.clone(),
            Round::Unmasking => self.consistency.keys().copied().collect(),
        }
    }

    fn answered(&self) -> usize {
        match self.round {
            Round::AdvertiseKeys => self.advertised.len(),
            Round::GraphContribution => self.reveals.len(),
            Round::ShareKeys => self.shared.len(),
            Round::MaskedInputCollection => self.u3.len(),
            Round::ConsistencyCheck => self.consistency.len(),
            Round::Unmasking => self.unmasked.len(),
        }
    }

    fn is_eligible(&self, u: u32) -> bool {
        match self.round {
            Round::AdvertiseKeys => (u as usize) < self.cfg.clients(),
            Round::GraphContribution | Round::ShareKeys => self.advertised.contains_key(&u),
            Round::MaskedInputCollection => self.shared.contains_key(&u),
            Round::ConsistencyCheck => self.u3.binary_search(&u).is_ok(),
            Round::Unmasking => self.consistency.contains_key(&u),
        }
    }

    fn has_answered(&self, u: u32) -> bool {
        match self.round {
            Round::AdvertiseKeys => self.advertised.contains_key(&u),
            Round::GraphContribution => self.reveals.contains_key(&u),
            Round::ShareKeys => self.shared.contains_key(&u),
            Round::MaskedInputCollection => self.u3.binary_search(&u).is_ok(),
            Round::ConsistencyCheck => self.consistency.contains_key(&u),
            Round::Unmasking => self.unmasked.contains_key(&u),
        }
    }

    /// Handles one client envelope.
    pub fn handle_message(&mut self, bytes: &[u8], now: u64) -> Result<(), Reject> {
        if self.outcome.is_some() {
            return Err(Reject::Finished);
        }
        let msg = messages::decode_client_message(bytes, &self.limits)?;
        let u = msg.sender;
        if msg.round_digest != self.digest {
            return Err(Reject::Replayed(u));
        }
        if !messages::verify_client_message(&msg, &self.cfg.roster) {
            return Err(Reject::BadSignature(u));
        }
        if msg.round != self.round {
            return Err(Reject::OutOfRound {
                sender: u,
                expected: self.round,
                found: msg.round,
            });
        }
        if !self.is_eligible(u) {
            return Err(Reject::NotEligible(u));
        }
        if self.has_answered(u) {
            return Err(Reject::Duplicate(u));
        }
        match msg.body {
            ClientBody::AdvertiseKeys {
                mask_pk,
                graph_commitment,
                ..
            } => {
                self.advertised.insert(
                    u,
                    Advertised {
                        envelope: bytes.to_vec(),
                        mask_pk,
                        graph_commitment,
                    },
                );
            }
            ClientBody::GraphContribution { contribution } => {
                self.accept_contribution(u, contribution)?;
            }
            ClientBody::ShareKeys {
                commitment,
                ciphertexts,
            } => {
                let graph = self.graph.as_ref().ok_or(Reject::Finished)?;
                let nb = graph.neighbours(u);
                if ciphertexts.len() != nb.len()
                    || ciphertexts.iter().zip(&nb).any(|((r, _), v)| r != v)
                {
                    return Err(Reject::Invalid {
                        sender: u,
                        problem: "ciphertexts must go to exactly its neighbours",
                    });
                }
                let ciphertexts = ciphertexts
                    .into_iter()
                    .map(|(r, c)| (r, c.to_vec()))
                    .collect();
                self.shared.insert(
                    u,
                    SharedKeys {
                        commitment,
                        ciphertexts,
                    },
                );
            }
            ClientBody::MaskedInput { packed } => {
                encoding::unpack_add(packed, self.cfg.modulus_bits, &mut self.sum)?;
                let pos = self.u3.partition_point(|&v| v < u);
                self.u3.insert(pos, u);
            }
            ClientBody::ConsistencyCheck { survivors_digest } => {
                if survivors_digest != self.survivors_digest {
                    return Err(Reject::Invalid {
                        sender: u,
                        problem: "signed a survivor set other than U3",
                    });
                }
                self.consistency.insert(u, bytes.to_vec());
            }
            ClientBody::Unmasking {
                self_mask_shares,
                mask_key_shares,
            } => {
                self.check_unmasking(u, &self_mask_shares, &mask_key_shares)?;
                self.unmasked.insert(
                    u,
                    Unmasked {
                        self_mask: self_mask_shares,
                        mask_key: mask_key_shares,
                    },
                );
            }
        }
        if self.answered() == self.eligible().len() {
            self.close_round(now);
        }
        Ok(())
    }

    /// The owners whose shares `w` holds: its neighbours that sent ShareKeys, and itself.
    fn held_by(&self, w: u32) -> Vec<u32> {
        let Some(graph) = &self.graph else {
            return Vec::new();
        };
        let mut owners: Vec<u32> = graph
            .neighbours(w)
            .into_iter()
            .filter(|v| self.shared.contains_key(v))
            .collect();
        let pos = owners.partition_point(|&v| v < w);
        owners.insert(pos, w);
        owners
    }

    fn check_unmasking(
        &self,
        w: u32,
        selfm: &[(u32, ShareValue)],
        maskk: &[(u32, ShareValue)],
    ) -> Result<(), Reject> {
        let held = self.held_by(w);
        let (want_self, want_mask): (Vec<u32>, Vec<u32>) = held
            .into_iter()
            .partition(|o| self.u3.binary_search(o).is_ok());
        if selfm.iter().map(|(o, _)| *o).ne(want_self.iter().copied())
            || maskk.iter().map(|(o, _)| *o).ne(want_mask.iter().copied())
        {
            return Err(Reject::Invalid {
                sender: w,
                problem: "must reveal self-mask shares of exactly the survivors and mask-key shares of exactly the dropped",
            });
        }
        Ok(())
    }

    fn abort(&mut self, reason: AbortReason) {
        let code = reason.code();
        let body = messages::encode_server_message(&self.digest, &ServerBody::Abort { code });
        let recipients: Vec<u32> = match self.round {
            Round::AdvertiseKeys => self.advertised.keys().copied().collect(),
            _ => self.eligible(),
        };
        for to in recipients {
            self.outbox.push(Outgoing {
                to,
                bytes: body.clone(),
            });
        }
        self.outcome = Some(Outcome::Aborted {
            round: self.round,
            reason,
        });
    }

    fn need(&mut self, have: usize, need: usize) -> bool {
        if have < need {
            self.abort(AbortReason::TooFewClients {
                round: self.round,
                have,
                need,
            });
            return false;
        }
        true
    }

    fn close_round(&mut self, now: u64) {
        self.deadline = now.saturating_add(self.timeout_ms);
        match self.round {
            Round::AdvertiseKeys => {
                if !self.need(self.advertised.len(), self.cfg.min_survivors.max(2)) {
                    return;
                }
                if self.limits.sparse {
                    self.open_graph_contribution();
                } else {
                    self.open_share_keys(&[0; 32], None);
                }
            }
            Round::GraphContribution => self.close_graph_contribution(),
            Round::ShareKeys => {
                if !self.need(self.shared.len(), self.cfg.min_survivors) {
                    return;
                }
                let Some(graph) = &self.graph else { return };
                let mut out = Vec::with_capacity(self.shared.len());
                for &u in self.shared.keys() {
                    let mut cts: Vec<(u32, &[u8])> = Vec::new();
                    for v in graph.neighbours(u) {
                        if let Some(s) = self.shared.get(&v)
                            && let Ok(i) = s.ciphertexts.binary_search_by_key(&u, |(r, _)| *r)
                        {
                            cts.push((v, &s.ciphertexts[i].1));
                        }
                    }
                    let bytes = messages::encode_server_message(
                        &self.digest,
                        &ServerBody::Shares { ciphertexts: cts },
                    );
                    out.push(Outgoing { to: u, bytes });
                }
                self.outbox.extend(out);
                self.round = Round::MaskedInputCollection;
            }
            Round::MaskedInputCollection => {
                if !self.need(self.u3.len(), self.cfg.min_survivors) {
                    return;
                }
                self.survivors_digest = messages::survivors_digest_bound(
                    &self.digest,
                    self.commitments_digest.as_ref(),
                    &self.u3,
                );
                let bytes = messages::encode_server_message(
                    &self.digest,
                    &ServerBody::Survivors {
                        survivors: self.u3.clone(),
                    },
                );
                for &u in &self.u3 {
                    self.outbox.push(Outgoing {
                        to: u,
                        bytes: bytes.clone(),
                    });
                }
                self.round = Round::ConsistencyCheck;
            }
            Round::ConsistencyCheck => {
                if !self.need(self.consistency.len(), self.cfg.threshold) {
                    return;
                }
                let Some(graph) = &self.graph else { return };
                let mut out = Vec::with_capacity(self.consistency.len());
                for &u in self.consistency.keys() {
                    let envelopes: Vec<&[u8]> = graph
                        .neighbours(u)
                        .iter()
                        .filter_map(|v| self.consistency.get(v))
                        .map(|e| e.as_slice())
                        .collect();
                    let bytes = messages::encode_server_message(
                        &self.digest,
                        &ServerBody::Signatures { envelopes },
                    );
                    out.push(Outgoing { to: u, bytes });
                }
                self.outbox.extend(out);
                self.round = Round::Unmasking;
            }
            Round::Unmasking => {
                if !self.need(self.unmasked.len(), self.cfg.threshold) {
                    return;
                }
                match self.unmask() {
                    Ok(agg) => self.outcome = Some(Outcome::Sum(agg)),
                    Err(reason) => self.abort(reason),
                }
            }
        }
    }
}
