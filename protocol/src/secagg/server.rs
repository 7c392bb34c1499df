//! The server state machine (§9.5), sans-IO: client envelopes and `now` in, addressed
//! messages out, and finally the exact sum or an abort with its reason. Never a wrong sum:
//! every reconstructed secret is checked (mask keys against their advertised public key,
//! self-mask secrets against their commitment) before it is used.
//!
//! Each round collects from the clients eligible for it; it closes when all of them have
//! answered or when [`Server::handle_timeout`] is called at or after the deadline. The
//! final unmasking (Shamir reconstruction, key agreement with dropped clients, mask
//! regeneration) runs on `threads` threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use quorate_crypto::secagg::ka::{KaPublicKey, KaSecretKey};
use quorate_crypto::secagg::kdf::{self, PrgSeed};
use quorate_crypto::secagg::prg::{self, Sign};
use quorate_crypto::secagg::shamir::{Interpolator, SecretScalar, Share};

use super::WorkCounters;
use super::codec::DecodeError;
use super::config::{ConfigError, RoundConfig};
use super::encoding;
use super::graph::Graph;
use super::messages::{self, AbortCode, ClientBody, Limits, Round, ServerBody, ShareValue};

/// Why a client message was rejected. Rejection never changes the round's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Not decodable.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// Bound to another round digest (replayed from another round, or misdirected).
    #[error("message of client {0} belongs to another round (replayed or misdirected)")]
    Replayed(u32),
    /// The signature does not verify under the sender's roster key.
    #[error("bad signature on a message claiming to be from client {0}")]
    BadSignature(u32),
    /// A message for a round other than the open one.
    #[error("out-of-round message from client {sender}: {found:?} while collecting {expected:?}")]
    OutOfRound {
        /// Sender.
        sender: u32,
        /// The open round.
        expected: Round,
        /// The message's round.
        found: Round,
    },
    /// A second message from the same client in the same round.
    #[error("duplicate message from client {0} in this round")]
    Duplicate(u32),
    /// The sender dropped out earlier and may not rejoin.
    #[error("client {0} is not a participant of this round any more")]
    NotEligible(u32),
    /// The content breaks a rule of the round.
    #[error("invalid message from client {sender}: {problem}")]
    Invalid {
        /// Sender.
        sender: u32,
        /// What was wrong.
        problem: &'static str,
    },
    /// The round is over.
    #[error("the round is finished")]
    Finished,
}

/// Why the server aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Too few clients answered a round.
    #[error("too few clients in {round:?}: {have} answered, {need} required")]
    TooFewClients {
        /// The round.
        round: Round,
        /// Answers.
        have: usize,
        /// Required.
        need: usize,
    },
    /// Too few shares arrived to reconstruct a client's secret.
    #[error("too few shares for client {owner}: {have}, threshold {need}")]
    TooFewShares {
        /// Whose secret.
        owner: u32,
        /// Shares received.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A reconstructed secret does not match its public key or commitment: some shares
    /// were wrong. Using it would give a wrong sum.
    #[error("reconstructed secret of client {owner} does not match its {what}")]
    ReconstructionMismatch {
        /// Whose secret.
        owner: u32,
        /// "mask public key" or "self-mask commitment".
        what: &'static str,
    },
    /// An internal cryptographic failure.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl AbortReason {
    fn code(&self) -> AbortCode {
        match self {
            Self::TooFewClients { .. } | Self::TooFewShares { .. } => AbortCode::TooFewClients,
            _ => AbortCode::ReconstructionFailed,
        }
    }
}

/// The result of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The exact sum of the inputs of `contributors`.
    Sum(Aggregate),
    /// The round aborted.
    Aborted {
        /// The round that failed.
        round: Round,
        /// Why.
        reason: AbortReason,
    },
}

/// The aggregate: the sum mod 2^b of the contributors' inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Σ inputs mod 2^b, element-wise.
    pub sum: Vec<u64>,
    /// U3: the clients whose inputs are in the sum.
    pub contributors: Vec<u32>,
    /// Roster members whose inputs are not in the sum.
    pub dropped: Vec<u32>,
}

/// A message to send to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Recipient index.
    pub to: u32,
    /// Encoded server message.
    pub bytes: Vec<u8>,
}

/// A worker's accumulator, keystream bytes and key agreements.
type WorkerResult = (Vec<u64>, u64, u64);

/// Mask tasks a worker takes at once when regenerating masks: large enough that the
/// accumulator pass per batch is cheap, small enough (a few milliseconds of work) that
/// the workers finish together.
const REGENERATION_BATCH: usize = 64;

/// One mask the server regenerates: a survivor's self mask, or the pairwise mask between a
/// dropped client (whose mask key was reconstructed) and a survivor.
enum Task {
    SelfMask(PrgSeed),
    Pairwise {
        sk: Arc<KaSecretKey>,
        dropped: u32,
        survivor: u32,
        pk: KaPublicKey,
    },
}

/// The PRG seed and sign of one regeneration task; counts the key agreement it performs.
fn task_seed(
    t: &Task,
    digest: &[u8; 32],
    agreements: &mut u64,
) -> Result<(PrgSeed, Sign), AbortReason> {
    match t {
        Task::SelfMask(seed) => Ok((PrgSeed::from_bytes(*seed.as_bytes()), Sign::Subtract)),
        Task::Pairwise {
            sk,
            dropped,
            survivor,
            pk,
        } => {
            let shared = sk
                .agree(pk)
                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
            *agreements += 1;
            // The survivor added +mask if survivor < dropped, −mask otherwise.
            let sign = if survivor < dropped {
                Sign::Subtract
            } else {
                Sign::Add
            };
            Ok((
                kdf::pairwise_mask_seed(shared.as_bytes(), digest, *survivor, *dropped),
                sign,
            ))
        }
    }
}

struct Advertised {
    envelope: Vec<u8>,
    mask_pk: KaPublicKey,
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
            Round::ShareKeys => self.advertised.keys().copied().collect(),
            Round::MaskedInputCollection => self.shared.keys().copied().collect(),
            Round::ConsistencyCheck => self.u3.clone(),
            Round::Unmasking => self.consistency.keys().copied().collect(),
        }
    }

    fn answered(&self) -> usize {
        match self.round {
            Round::AdvertiseKeys => self.advertised.len(),
            Round::ShareKeys => self.shared.len(),
            Round::MaskedInputCollection => self.u3.len(),
            Round::ConsistencyCheck => self.consistency.len(),
            Round::Unmasking => self.unmasked.len(),
        }
    }

    fn is_eligible(&self, u: u32) -> bool {
        match self.round {
            Round::AdvertiseKeys => (u as usize) < self.cfg.clients(),
            Round::ShareKeys => self.advertised.contains_key(&u),
            Round::MaskedInputCollection => self.shared.contains_key(&u),
            Round::ConsistencyCheck => self.u3.binary_search(&u).is_ok(),
            Round::Unmasking => self.consistency.contains_key(&u),
        }
    }

    fn has_answered(&self, u: u32) -> bool {
        match self.round {
            Round::AdvertiseKeys => self.advertised.contains_key(&u),
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
            ClientBody::AdvertiseKeys { mask_pk, .. } => {
                self.advertised.insert(
                    u,
                    Advertised {
                        envelope: bytes.to_vec(),
                        mask_pk,
                    },
                );
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
                let members: Vec<u32> = self.advertised.keys().copied().collect();
                let graph = Graph::new(self.cfg.graph, &members, &self.digest);
                for &u in &members {
                    let nb = graph.neighbours(u);
                    let envelopes: Vec<&[u8]> = nb
                        .iter()
                        .filter_map(|v| self.advertised.get(v))
                        .map(|a| a.envelope.as_slice())
                        .collect();
                    let bytes = messages::encode_server_message(
                        &self.digest,
                        &ServerBody::Keys {
                            members: members.clone(),
                            envelopes,
                        },
                    );
                    self.outbox.push(Outgoing { to: u, bytes });
                }
                self.graph = Some(graph);
                self.round = Round::ShareKeys;
            }
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
                self.survivors_digest = messages::survivors_digest(&self.digest, &self.u3);
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

    /// Reconstructs every needed secret from exactly `t` shares (the holders with the
    /// smallest indices), checking each against its public key or commitment.
    fn reconstruct_all(
        &self,
        pick: impl Fn(&Unmasked) -> &[(u32, ShareValue)] + Sync,
        owners: &[u32],
    ) -> Result<Vec<SecretScalar>, AbortReason> {
        let t = self.cfg.threshold;
        // owner -> (holder x, share)
        let mut per_owner: HashMap<u32, Vec<(u32, &ShareValue)>> =
            owners.iter().map(|&o| (o, Vec::new())).collect();
        for (w, un) in &self.unmasked {
            for (o, s) in pick(un) {
                if let Some(v) = per_owner.get_mut(o) {
                    v.push((w + 1, s));
                }
            }
        }
        let mut jobs = Vec::with_capacity(owners.len());
        for &o in owners {
            let v = per_owner.remove(&o).unwrap_or_default();
            if v.len() < t {
                return Err(AbortReason::TooFewShares {
                    owner: o,
                    have: v.len(),
                    need: t,
                });
            }
            jobs.push((o, v.into_iter().take(t).collect::<Vec<_>>()));
        }
        let threads = self.threads.max(1).min(jobs.len().max(1));
        let chunk = jobs.len().div_ceil(threads).max(1);
        let results: Vec<Result<Vec<SecretScalar>, AbortReason>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    worker(s, threads == 1, move || {
                        let mut cache: HashMap<Vec<u32>, Interpolator> = HashMap::new();
                        let mut out = Vec::with_capacity(part.len());
                        for (_, shares) in part {
                            let xs: Vec<u32> = shares.iter().map(|(x, _)| *x).collect();
                            let ys: Vec<Share> = shares
                                .iter()
                                .map(|(x, v)| Share::from_bytes(*x, &v.0))
                                .collect::<Result<_, _>>()
                                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                            if !cache.contains_key(&xs) {
                                let i = Interpolator::new(&xs)
                                    .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                                cache.insert(xs.clone(), i);
                            }
                            let interp = cache
                                .get(&xs)
                                .ok_or(AbortReason::Crypto("interpolator".into()))?;
                            let refs: Vec<&Share> = ys.iter().collect();
                            out.push(
                                interp
                                    .interpolate(&refs)
                                    .map_err(|e| AbortReason::Crypto(e.to_string()))?,
                            );
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(AbortReason::Crypto("worker panicked".into())))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(owners.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    /// The final unmasking (§9.5.5, server side).
    fn unmask(&mut self) -> Result<Aggregate, AbortReason> {
        let graph = self
            .graph
            .clone()
            .ok_or(AbortReason::Crypto("no graph".into()))?;
        let u3 = self.u3.clone();
        let dropped2: Vec<u32> = self
            .shared
            .keys()
            .copied()
            .filter(|v| u3.binary_search(v).is_err())
            .collect();
        let self_secrets = self.reconstruct_all(|u| &u.self_mask, &u3)?;
        let mask_secrets = self.reconstruct_all(|u| &u.mask_key, &dropped2)?;
        let mut tasks = Vec::new();
        for (o, secret) in u3.iter().zip(&self_secrets) {
            let sb = secret.to_bytes();
            let commitment = self.shared.get(o).map(|s| s.commitment).unwrap_or([0; 32]);
            if kdf::self_mask_commitment(&sb, &self.digest, *o) != commitment {
                return Err(AbortReason::ReconstructionMismatch {
                    owner: *o,
                    what: "self-mask commitment",
                });
            }
            tasks.push(Task::SelfMask(kdf::self_mask_seed(&sb, &self.digest, *o)));
        }
        let mut keygens = 0;
        for (d, secret) in dropped2.iter().zip(&mask_secrets) {
            let sk = KaSecretKey::from_bytes(&kdf::mask_key_private(
                &secret.to_bytes(),
                &self.digest,
                *d,
            ));
            keygens += 1;
            if Some(sk.public_key()) != self.advertised.get(d).map(|a| a.mask_pk) {
                return Err(AbortReason::ReconstructionMismatch {
                    owner: *d,
                    what: "mask public key",
                });
            }
            let sk = Arc::new(sk);
            for u in graph.neighbours(*d) {
                if u3.binary_search(&u).is_ok()
                    && let Some(a) = self.advertised.get(&u)
                {
                    tasks.push(Task::Pairwise {
                        sk: sk.clone(),
                        dropped: *d,
                        survivor: u,
                        pk: a.mask_pk,
                    });
                }
            }
        }
        let bits = self.cfg.modulus_bits;
        let len = self.cfg.vector_len;
        let digest = self.digest;
        let threads = self.threads.max(1).min(tasks.len().max(1));
        // Workers take batches of tasks from a shared cursor rather than a fixed share, so a
        // core that is busy with something else slows its worker without holding up the
        // round: the others take over the remaining batches. The sum is the same whatever
        // the split (addition mod 2^64 commutes).
        let cursor = AtomicUsize::new(0);
        let results: Vec<Result<WorkerResult, AbortReason>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    worker(s, threads == 1, || {
                        let mut acc = vec![0u64; len];
                        let (mut bytes, mut agreements) = (0u64, 0u64);
                        loop {
                            let from = cursor.fetch_add(REGENERATION_BATCH, Ordering::Relaxed);
                            let Some(batch) = tasks.get(from..) else {
                                break;
                            };
                            let batch = &batch[..batch.len().min(REGENERATION_BATCH)];
                            if batch.is_empty() {
                                break;
                            }
                            let mut seeds = Vec::with_capacity(batch.len());
                            for t in batch {
                                seeds.push(task_seed(t, &digest, &mut agreements)?);
                            }
                            bytes += prg::accumulate_many(&seeds, &mut acc, bits)
                                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                        }
                        Ok((acc, bytes, agreements))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(AbortReason::Crypto("worker panicked".into())))
                })
                .collect()
        });
        let mut sum = std::mem::take(&mut self.sum);
        for r in results {
            let (acc, bytes, agreements) = r?;
            for (s, a) in sum.iter_mut().zip(&acc) {
                *s = s.wrapping_add(*a);
            }
            self.counters.mask_bytes += bytes;
            self.counters.x25519_agreements += agreements;
        }
        self.counters.masks += tasks.len() as u64;
        self.counters.x25519_keygens += keygens;
        prg::reduce(&mut sum, bits);
        let dropped = (0..self.cfg.clients() as u32)
            .filter(|v| u3.binary_search(v).is_err())
            .collect();
        Ok(Aggregate {
            sum,
            contributors: u3,
            dropped,
        })
    }
}

/// A scoped worker thread, or, when there is one worker, its result computed on this thread:
/// wasm32, where the offline verifier replays transcripts (§15.5) in a browser, cannot spawn
/// threads.
enum Worker<'scope, T> {
    Thread(std::thread::ScopedJoinHandle<'scope, T>),
    Done(T),
}

impl<T> Worker<'_, T> {
    fn join(self) -> std::thread::Result<T> {
        match self {
            Worker::Thread(h) => h.join(),
            Worker::Done(t) => Ok(t),
        }
    }
}

fn worker<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    here: bool,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Worker<'scope, T> {
    if here {
        Worker::Done(f())
    } else {
        Worker::Thread(s.spawn(f))
    }
}
