//! The client state machine (§9.5), sans-IO: bytes and `now` (milliseconds on any
//! monotonic clock the driver chooses) in, bytes out.
//!
//! One method per spec step: [`Client::start`] is AdvertiseKeys (§9.5.1); in a
//! sparse-graph round, receiving the commitment list runs GraphContribution (§9.5.7);
//! receiving the server's key list runs ShareKeys (§9.5.2); receiving the share ciphertexts runs
//! MaskedInputCollection (§9.5.3); receiving the survivor set runs ConsistencyCheck
//! (§9.5.4); receiving the signatures runs Unmasking (§9.5.5).
//!
//! Malformed, replayed (another round's digest) and out-of-round messages are rejected
//! with a non-fatal error and leave the state unchanged. Anything that shows a
//! misbehaving server or peer (bad signatures, inconsistent sets, too few neighbours,
//! failed decryption) aborts the client for good: it never sends another message.
mod contribution;
mod error;
mod steps;

use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_crypto::secagg::ka::KaSecretKey;
use quorate_crypto::secagg::kdf::{self, PrgSeed, ShareKey};
use quorate_crypto::secagg::rng::SecretRng;
use quorate_crypto::secagg::shamir::{SecretScalar, Share};
use zeroize::Zeroizing;

use crate::secagg::WorkCounters;
use crate::secagg::config::{GraphKind, RoundConfig};
use crate::secagg::encoding::{self};
use crate::secagg::messages::{self, ClientBody, Limits, Round, ServerBody};

pub use error::ClientError;
use error::crypto;

/// Shares this client holds for one owner (its own, or a neighbour's).
struct Held {
    owner: u32,
    mask_key: Share,
    self_mask: Share,
}

/// What AdvertiseKeys drew, kept until ShareKeys.
struct Secrets {
    /// `None` until [`Client::provide_input`] for a client made without its input.
    input: Option<Zeroizing<Vec<u64>>>,
    cipher_sk: KaSecretKey,
    mask_sk: KaSecretKey,
    mask_secret: SecretScalar,
    self_secret: SecretScalar,
}

enum State {
    Ready {
        input: Option<Zeroizing<Vec<u64>>>,
    },
    Advertised {
        secrets: Secrets,
        /// Sparse graphs only: the graph contribution `r_u` committed to (§9.5.7).
        contribution: Option<Zeroizing<[u8; 32]>>,
    },
    /// Sparse graphs only: the contribution was revealed after this commitment list.
    Contributed {
        secrets: Secrets,
        commitments: Vec<(u32, [u8; 32])>,
    },
    SharedKeys {
        input: Option<Zeroizing<Vec<u64>>>,
        self_secret: SecretScalar,
        neighbours: Vec<u32>,
        /// Per neighbour in U1, the pairwise mask seed (§9.4.2); taken once in round 2.
        pair_seeds: Vec<Option<PrgSeed>>,
        recv_keys: Vec<ShareKey>,
        own: Held,
    },
    MaskedInputSent {
        neighbours: Vec<u32>,
        sharers: Vec<u32>,
        held: Vec<Held>,
    },
    ConsistencySent {
        neighbours: Vec<u32>,
        held: Vec<Held>,
        survivors: Vec<u32>,
        digest: [u8; 32],
    },
    Done,
    Aborted(ClientError),
}

impl State {
    fn waiting_for(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "start",
            Self::Advertised {
                contribution: Some(_),
                ..
            } => "the commitment list (round 5)",
            Self::Advertised { .. } | Self::Contributed { .. } => "the key list (round 1)",
            Self::SharedKeys { .. } => "share ciphertexts (round 2)",
            Self::MaskedInputSent { .. } => "the survivor set (round 3)",
            Self::ConsistencySent { .. } => "consistency signatures (round 4)",
            Self::Done => "nothing (finished)",
            Self::Aborted(_) => "nothing (aborted)",
        }
    }

    fn round(&self) -> Round {
        match self {
            Self::Ready { .. } | Self::Advertised { .. } => Round::AdvertiseKeys,
            Self::Contributed { .. } => Round::GraphContribution,
            Self::SharedKeys { .. } => Round::ShareKeys,
            Self::MaskedInputSent { .. } => Round::MaskedInputCollection,
            Self::ConsistencySent { .. } => Round::ConsistencyCheck,
            Self::Done | Self::Aborted(_) => Round::Unmasking,
        }
    }
}

fn kind_name(b: &ServerBody<'_>) -> &'static str {
    match b {
        ServerBody::Keys { .. } => "the key list (round 1)",
        ServerBody::Commitments { .. } => "the commitment list (round 5)",
        ServerBody::Shares { .. } => "share ciphertexts (round 2)",
        ServerBody::Survivors { .. } => "the survivor set (round 3)",
        ServerBody::Signatures { .. } => "consistency signatures (round 4)",
        ServerBody::Abort { .. } => "an abort",
    }
}

/// A secure-aggregation client for one round.
pub struct Client {
    cfg: Arc<RoundConfig>,
    digest: [u8; 32],
    limits: Limits,
    me: u32,
    identity: SecretKey,
    rng: Box<dyn SecretRng + Send>,
    timeout_ms: u64,
    deadline: Option<u64>,
    state: State,
    /// Sparse graphs only: the digest of the commitment list this client revealed after,
    /// bound into its ConsistencyCheck signature (§9.5.4, §9.5.7).
    commitments_digest: Option<[u8; 32]>,
    counters: WorkCounters,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("me", &self.me)
            .field("waiting_for", &self.state.waiting_for())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with index `me` whose input is `input` (each element at most
    /// `cfg.max_input`). `timeout_ms` bounds each wait for the server.
    pub fn new(
        cfg: Arc<RoundConfig>,
        me: u32,
        identity: SecretKey,
        input: Vec<u64>,
        rng: Box<dyn SecretRng + Send>,
        timeout_ms: u64,
    ) -> Result<Self, ClientError> {
        let mut client = Self::awaiting_input(cfg, me, identity, rng, timeout_ms)?;
        client.provide_input(input)?;
        Ok(client)
    }

    /// A client with index `me` whose input is given later, by [`Self::provide_input`]
    /// before the server's MaskedInputCollection message (§9.5.3): rounds 0 and 1 draw keys
    /// and share secrets and never read the input, so they can run before it exists (§15.1,
    /// prepared jobs).
    pub fn awaiting_input(
        cfg: Arc<RoundConfig>,
        me: u32,
        identity: SecretKey,
        rng: Box<dyn SecretRng + Send>,
        timeout_ms: u64,
    ) -> Result<Self, ClientError> {
        cfg.validate()?;
        if cfg.roster.get(me as usize) != Some(&identity.public_key()) {
            return Err(ClientError::NotOnRoster(me));
        }
        Ok(Self {
            digest: cfg.digest(),
            limits: Limits::of(&cfg),
            cfg,
            me,
            identity,
            rng,
            timeout_ms,
            deadline: None,
            state: State::Ready { input: None },
            commitments_digest: None,
            counters: WorkCounters::default(),
        })
    }

    /// Gives a client made by [`Self::awaiting_input`] its input (each element at most
    /// `cfg.max_input`). Refused (`WrongState`, nothing changed) once the client has an input
    /// or has passed the point where it masks it; an input of the wrong shape is refused
    /// without changing the client either.
    pub fn provide_input(&mut self, input: Vec<u64>) -> Result<(), ClientError> {
        let input = Zeroizing::new(input);
        let slot = match &mut self.state {
            State::Ready { input } | State::SharedKeys { input, .. } => input,
            State::Advertised { secrets, .. } | State::Contributed { secrets, .. } => {
                &mut secrets.input
            }
            _ => return Err(ClientError::WrongState),
        };
        if slot.is_some() {
            return Err(ClientError::WrongState);
        }
        if input.len() != self.cfg.vector_len {
            return Err(ClientError::InputLength {
                expected: self.cfg.vector_len,
                found: input.len(),
            });
        }
        encoding::check_max(&input, self.cfg.max_input)?;
        *slot = Some(input);
        Ok(())
    }

    /// Whether the client holds its input.
    pub fn has_input(&self) -> bool {
        match &self.state {
            State::Ready { input } | State::SharedKeys { input, .. } => input.is_some(),
            State::Advertised { secrets, .. } | State::Contributed { secrets, .. } => {
                secrets.input.is_some()
            }
            // Past round 2 the input was masked and sent (or the client ended).
            _ => !matches!(self.state, State::Aborted(_)),
        }
    }

    /// This client's index.
    pub fn index(&self) -> u32 {
        self.me
    }

    /// The round digest this client is bound to.
    pub fn round_digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The round whose server message the client is waiting for (or its last round).
    pub fn round(&self) -> Round {
        self.state.round()
    }

    /// Whether the client finished its part (sent its unmasking shares).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The reason the client aborted, if it did.
    pub fn aborted(&self) -> Option<&ClientError> {
        match &self.state {
            State::Aborted(e) => Some(e),
            _ => None,
        }
    }

    /// Work done so far (for benchmarks).
    pub fn counters(&self) -> WorkCounters {
        self.counters
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Done | State::Aborted(_) | State::Ready { .. } => None,
            _ => self.deadline,
        }
    }

    /// Aborts if the deadline passed.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), ClientError> {
        match self.poll_timeout() {
            Some(d) if now >= d => {
                let e = ClientError::Timeout(self.state.round());
                self.state = State::Aborted(e.clone());
                Err(e)
            }
            _ => Ok(()),
        }
    }

    fn sign(&self, body: &ClientBody<'_>) -> Vec<u8> {
        messages::encode_client_message(&self.identity, &self.digest, self.me, body)
    }

    /// AdvertiseKeys (§9.5.1): draws the two X25519 key pairs and the two Shamir-shared
    /// secrets (and, with a sparse graph, the graph contribution), and returns the signed
    /// message with both public keys (and the commitment to the contribution).
    pub fn start(&mut self, now: u64) -> Result<Vec<u8>, ClientError> {
        let State::Ready { .. } = self.state else {
            return Err(ClientError::WrongState);
        };
        let State::Ready { input } = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ClientError::WrongState);
        };
        match self.advertise_keys(input) {
            Ok(msg) => {
                self.deadline = Some(now.saturating_add(self.timeout_ms));
                Ok(msg)
            }
            Err(e) => Err(self.abort(e)),
        }
    }

    fn advertise_keys(
        &mut self,
        input: Option<Zeroizing<Vec<u64>>>,
    ) -> Result<Vec<u8>, ClientError> {
        let cipher_sk = KaSecretKey::generate(self.rng.as_mut()).map_err(crypto(None))?;
        let mask_secret = SecretScalar::random(self.rng.as_mut()).map_err(crypto(None))?;
        let self_secret = SecretScalar::random(self.rng.as_mut()).map_err(crypto(None))?;
        let mask_sk = KaSecretKey::from_bytes(&kdf::mask_key_private(
            &mask_secret.to_bytes(),
            &self.digest,
            self.me,
        ));
        self.counters.x25519_keygens += 2;
        let contribution = match self.cfg.graph {
            GraphKind::Full => None,
            GraphKind::Sparse { .. } => {
                let mut r = Zeroizing::new([0u8; 32]);
                self.rng.fill_bytes(r.as_mut()).map_err(crypto(None))?;
                Some(r)
            }
        };
        let msg = self.sign(&ClientBody::AdvertiseKeys {
            cipher_pk: cipher_sk.public_key(),
            mask_pk: mask_sk.public_key(),
            graph_commitment: contribution
                .as_ref()
                .map(|r| kdf::graph_commitment(r, &self.digest, self.me)),
        });
        self.state = State::Advertised {
            secrets: Secrets {
                input,
                cipher_sk,
                mask_sk,
                mask_secret,
                self_secret,
            },
            contribution,
        };
        Ok(msg)
    }

    fn abort(&mut self, e: ClientError) -> ClientError {
        if e.is_fatal() {
            self.state = State::Aborted(e.clone());
        }
        e
    }

    /// Handles one server message; returns the message to send back, if any.
    pub fn handle_message(
        &mut self,
        bytes: &[u8],
        now: u64,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        if matches!(
            self.state,
            State::Done | State::Aborted(_) | State::Ready { .. }
        ) {
            return Err(ClientError::WrongState);
        }
        let msg = messages::decode_server_message(bytes, &self.limits)?;
        if msg.round_digest != self.digest {
            return Err(ClientError::Replayed);
        }
        if let ServerBody::Abort { code } = msg.body {
            return Err(self.abort(ClientError::ServerAborted(code)));
        }
        if let (State::SharedKeys { input: None, .. }, ServerBody::Shares { .. }) =
            (&self.state, &msg.body)
        {
            // Refused, not fatal: the input can still come (§15.1, prepared jobs).
            return Err(ClientError::NoInput);
        }
        let expected = self.state.waiting_for();
        let state = std::mem::replace(&mut self.state, State::Done);
        let result = match (state, msg.body) {
            (
                State::Advertised {
                    secrets,
                    contribution: Some(contribution),
                },
                ServerBody::Commitments { commitments },
            ) => self.graph_contribution(secrets, contribution, commitments),
            (
                State::Advertised {
                    secrets,
                    contribution: None,
                },
                ServerBody::Keys {
                    members,
                    envelopes,
                    reveals,
                },
            ) => self.share_keys(secrets, None, &members, &envelopes, reveals.as_deref()),
            (
                State::Contributed {
                    secrets,
                    commitments,
                },
                ServerBody::Keys {
                    members,
                    envelopes,
                    reveals,
                },
            ) => self.share_keys(
                secrets,
                Some(&commitments),
                &members,
                &envelopes,
                reveals.as_deref(),
            ),
            (
                State::SharedKeys {
                    input: Some(input),
                    self_secret,
                    neighbours,
                    pair_seeds,
                    recv_keys,
                    own,
                },
                ServerBody::Shares { ciphertexts },
            ) => self.masked_input_collection(
                input,
                self_secret,
                neighbours,
                pair_seeds,
                recv_keys,
                own,
                &ciphertexts,
            ),
            (
                State::MaskedInputSent {
                    neighbours,
                    sharers,
                    held,
                },
                ServerBody::Survivors { survivors },
            ) => self.consistency_check(neighbours, sharers, held, survivors),
            (
                State::ConsistencySent {
                    neighbours,
                    held,
                    survivors,
                    digest,
                },
                ServerBody::Signatures { envelopes },
            ) => self.unmasking(neighbours, held, survivors, digest, &envelopes),
            (state, body) => {
                self.state = state;
                return Err(ClientError::OutOfRound {
                    expected,
                    found: kind_name(&body),
                });
            }
        };
        match result {
            Ok(out) => {
                self.deadline = Some(now.saturating_add(self.timeout_ms));
                Ok(out)
            }
            Err(e) => {
                self.state = State::Aborted(e.clone());
                Err(e)
            }
        }
    }

    /// Decodes relayed envelopes of `round` (ascending by sender) without checking
    /// signatures.
    fn decode_relayed<'a>(
        &self,
        envelopes: &[&'a [u8]],
        round: Round,
    ) -> Result<Vec<messages::ClientMessage<'a>>, ClientError> {
        let mut decoded = Vec::with_capacity(envelopes.len());
        for e in envelopes {
            let m = messages::decode_client_message(e, &self.limits)
                .map_err(|_| ClientError::InconsistentView("a relayed message is malformed"))?;
            if m.round_digest != self.digest || m.round != round {
                return Err(ClientError::BadPeerMessage {
                    peer: m.sender,
                    problem: "relayed message of another round",
                });
            }
            if decoded
                .last()
                .is_some_and(|l: &messages::ClientMessage<'_>| l.sender >= m.sender)
            {
                return Err(ClientError::InconsistentView(
                    "relayed messages not in ascending sender order",
                ));
            }
            decoded.push(m);
        }
        Ok(decoded)
    }

    /// `verify_strict` of one relayed envelope against the sender's roster key. (One
    /// strict verification each: the batch verifier's subgroup pre-checks cost two scalar
    /// multiplications per item, more than a single strict verification.)
    fn verify_relayed(&self, m: &messages::ClientMessage<'_>) -> Result<(), ClientError> {
        if messages::verify_client_message(m, &self.cfg.roster) {
            Ok(())
        } else {
            Err(ClientError::BadPeerMessage {
                peer: m.sender,
                problem: "bad signature",
            })
        }
    }

    /// Checks a whole round's relayed envelopes with one batch equation (§9.8.3); only if
    /// it fails are they checked one by one, to name the peer whose signature is bad.
    fn verify_relayed_all(&self, msgs: &[&messages::ClientMessage<'_>]) -> Result<(), ClientError> {
        if messages::verify_client_messages(msgs, &self.cfg.roster) {
            return Ok(());
        }
        msgs.iter().try_for_each(|m| self.verify_relayed(m))
    }
}
