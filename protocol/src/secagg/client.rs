//! The client state machine (§9.5), sans-IO: bytes and `now` (milliseconds on any
//! monotonic clock the driver chooses) in, bytes out.
//!
//! One method per spec step: [`Client::start`] is AdvertiseKeys (§9.5.1); receiving the
//! server's key list runs ShareKeys (§9.5.2); receiving the share ciphertexts runs
//! MaskedInputCollection (§9.5.3); receiving the survivor set runs ConsistencyCheck
//! (§9.5.4); receiving the signatures runs Unmasking (§9.5.5).
//!
//! Malformed, replayed (another round's digest) and out-of-round messages are rejected
//! with a non-fatal error and leave the state unchanged. Anything that shows a
//! misbehaving server or peer (bad signatures, inconsistent sets, too few neighbours,
//! failed decryption) aborts the client for good: it never sends another message.

use std::collections::HashSet;
use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_crypto::secagg::ka::{KaPublicKey, KaSecretKey};
use quorate_crypto::secagg::kdf::{self, PrgSeed, ShareKey};
use quorate_crypto::secagg::prg::{self, Sign};
use quorate_crypto::secagg::rng::SecretRng;
use quorate_crypto::secagg::shamir::{self, SecretScalar, Share};
use quorate_crypto::secagg::{SecaggCryptoError, aead};
use zeroize::Zeroizing;

use super::WorkCounters;
use super::codec::DecodeError;
use super::config::{ConfigError, RoundConfig};
use super::encoding::{self, EncodingError};
use super::graph::Graph;
use super::messages::{
    self, AbortCode, ClientBody, Limits, Round, SHARE_PLAINTEXT_LEN, ServerBody, ShareValue,
};

/// Why a client rejected a message or aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The round configuration is invalid.
    #[error("invalid round configuration: {0}")]
    Config(#[from] ConfigError),
    /// The client's index is not on the roster, or its key is not the one listed there.
    #[error("client {0} is not on the roster with this identity key")]
    NotOnRoster(u32),
    /// The input vector does not fit the configuration.
    #[error("invalid input: {0}")]
    Input(#[from] EncodingError),
    /// The input vector has the wrong length.
    #[error("input has {found} elements, the round expects {expected}")]
    InputLength {
        /// `m`.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A message could not be decoded (rejected, not fatal).
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// A message of another round (rejected, not fatal).
    #[error("out-of-round message: expected {expected}, received {found}")]
    OutOfRound {
        /// What the client waits for.
        expected: &'static str,
        /// What arrived.
        found: &'static str,
    },
    /// A message bound to another round digest: replayed or misdirected (rejected, not fatal).
    #[error("message belongs to another round (replayed or misdirected)")]
    Replayed,
    /// `start` was called twice, or a call came after the end.
    #[error("the client is not in a state to do that")]
    WrongState,
    /// The server aborted the round.
    #[error("the server aborted the round: {0:?}")]
    ServerAborted(AbortCode),
    /// Too few neighbours or survivors to continue safely.
    #[error("too few clients in {round:?}: {have}, at least {need} required")]
    TooFew {
        /// The round.
        round: Round,
        /// How many there are.
        have: usize,
        /// How many are required.
        need: usize,
    },
    /// This client is missing from a set it must belong to.
    #[error("this client is missing from the server's {0} set")]
    NotAMember(&'static str),
    /// The server's view contradicts what this client saw: an equivocating or broken
    /// server. The client aborts without revealing any share.
    #[error("inconsistent view from the server: {0}")]
    InconsistentView(&'static str),
    /// A relayed peer message is invalid or badly signed.
    #[error("peer {peer}: {problem}")]
    BadPeerMessage {
        /// The peer.
        peer: u32,
        /// What was wrong.
        problem: &'static str,
    },
    /// A cryptographic operation with a peer's material failed.
    #[error("peer {peer:?}: {source}")]
    Crypto {
        /// The peer involved, if any.
        peer: Option<u32>,
        /// The failure.
        source: SecaggCryptoError,
    },
    /// The server did not answer before the deadline.
    #[error("timed out waiting for the server in {0:?}")]
    Timeout(Round),
}

impl ClientError {
    /// Whether the client has aborted (otherwise the message was only rejected).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::Malformed(_) | Self::OutOfRound { .. } | Self::Replayed | Self::WrongState
        )
    }
}

fn crypto(peer: Option<u32>) -> impl Fn(SecaggCryptoError) -> ClientError {
    move |source| ClientError::Crypto { peer, source }
}

/// Shares this client holds for one owner (its own, or a neighbour's).
struct Held {
    owner: u32,
    mask_key: Share,
    self_mask: Share,
}

enum State {
    Ready {
        input: Zeroizing<Vec<u64>>,
    },
    Advertised {
        input: Zeroizing<Vec<u64>>,
        cipher_sk: KaSecretKey,
        mask_sk: KaSecretKey,
        mask_secret: SecretScalar,
        self_secret: SecretScalar,
    },
    SharedKeys {
        input: Zeroizing<Vec<u64>>,
        mask_sk: KaSecretKey,
        self_secret: SecretScalar,
        neighbours: Vec<u32>,
        peer_mask_pk: Vec<KaPublicKey>,
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
            Self::Advertised { .. } => "the key list (round 1)",
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
        cfg.validate()?;
        if cfg.roster.get(me as usize) != Some(&identity.public_key()) {
            return Err(ClientError::NotOnRoster(me));
        }
        let input = Zeroizing::new(input);
        if input.len() != cfg.vector_len {
            return Err(ClientError::InputLength {
                expected: cfg.vector_len,
                found: input.len(),
            });
        }
        encoding::check_max(&input, cfg.max_input)?;
        Ok(Self {
            digest: cfg.digest(),
            limits: Limits::of(&cfg),
            cfg,
            me,
            identity,
            rng,
            timeout_ms,
            deadline: None,
            state: State::Ready { input },
            counters: WorkCounters::default(),
        })
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
    /// secrets, and returns the signed message with both public keys.
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

    fn advertise_keys(&mut self, input: Zeroizing<Vec<u64>>) -> Result<Vec<u8>, ClientError> {
        let cipher_sk = KaSecretKey::generate(self.rng.as_mut()).map_err(crypto(None))?;
        let mask_secret = SecretScalar::random(self.rng.as_mut()).map_err(crypto(None))?;
        let self_secret = SecretScalar::random(self.rng.as_mut()).map_err(crypto(None))?;
        let mask_sk = KaSecretKey::from_bytes(&kdf::mask_key_private(
            &mask_secret.to_bytes(),
            &self.digest,
            self.me,
        ));
        self.counters.x25519_keygens += 2;
        let msg = self.sign(&ClientBody::AdvertiseKeys {
            cipher_pk: cipher_sk.public_key(),
            mask_pk: mask_sk.public_key(),
        });
        self.state = State::Advertised {
            input,
            cipher_sk,
            mask_sk,
            mask_secret,
            self_secret,
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
        let expected = self.state.waiting_for();
        let state = std::mem::replace(&mut self.state, State::Done);
        let result = match (state, msg.body) {
            (
                State::Advertised {
                    input,
                    cipher_sk,
                    mask_sk,
                    mask_secret,
                    self_secret,
                },
                ServerBody::Keys { members, envelopes },
            ) => self.share_keys(
                input,
                cipher_sk,
                mask_sk,
                mask_secret,
                self_secret,
                &members,
                &envelopes,
            ),
            (
                State::SharedKeys {
                    input,
                    mask_sk,
                    self_secret,
                    neighbours,
                    peer_mask_pk,
                    recv_keys,
                    own,
                },
                ServerBody::Shares { ciphertexts },
            ) => self.masked_input_collection(
                input,
                mask_sk,
                self_secret,
                neighbours,
                peer_mask_pk,
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

    /// ShareKeys (§9.5.2).
    #[allow(clippy::too_many_arguments)]
    fn share_keys(
        &mut self,
        input: Zeroizing<Vec<u64>>,
        cipher_sk: KaSecretKey,
        mask_sk: KaSecretKey,
        mask_secret: SecretScalar,
        self_secret: SecretScalar,
        members: &[u32],
        envelopes: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        if members.binary_search(&self.me).is_err() {
            return Err(ClientError::NotAMember("U1"));
        }
        if members.len() < self.cfg.min_survivors {
            return Err(ClientError::TooFew {
                round: Round::AdvertiseKeys,
                have: members.len(),
                need: self.cfg.min_survivors,
            });
        }
        let graph = Graph::new(self.cfg.graph, members, &self.digest);
        let neighbours = graph.neighbours(self.me);
        let t = self.cfg.threshold;
        if neighbours.len() + 1 < t {
            return Err(ClientError::TooFew {
                round: Round::AdvertiseKeys,
                have: neighbours.len() + 1,
                need: t,
            });
        }
        let decoded = self.decode_relayed(envelopes, Round::AdvertiseKeys)?;
        self.verify_relayed_all(&decoded.iter().collect::<Vec<_>>())?;
        if decoded.len() != neighbours.len()
            || decoded.iter().zip(&neighbours).any(|(m, v)| m.sender != *v)
        {
            return Err(ClientError::InconsistentView(
                "the key list does not match my neighbours in U1",
            ));
        }
        let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(2 * neighbours.len() + 2);
        seen.insert(cipher_sk.public_key().0);
        seen.insert(mask_sk.public_key().0);
        let mut peer_cipher_pk = Vec::with_capacity(neighbours.len());
        let mut peer_mask_pk = Vec::with_capacity(neighbours.len());
        for m in &decoded {
            let ClientBody::AdvertiseKeys { cipher_pk, mask_pk } = &m.body else {
                return Err(ClientError::BadPeerMessage {
                    peer: m.sender,
                    problem: "not an AdvertiseKeys body",
                });
            };
            if !seen.insert(cipher_pk.0) || !seen.insert(mask_pk.0) {
                return Err(ClientError::BadPeerMessage {
                    peer: m.sender,
                    problem: "public key used twice",
                });
            }
            peer_cipher_pk.push(*cipher_pk);
            peer_mask_pk.push(*mask_pk);
        }
        // Shares for every holder: the neighbours and this client, at x = index + 1.
        let mut holders: Vec<u32> = neighbours.clone();
        let pos = holders.partition_point(|&v| v < self.me);
        holders.insert(pos, self.me);
        let xs: Vec<u32> = holders.iter().map(|h| h + 1).collect();
        let mask_shares =
            shamir::split(&mask_secret, t, &xs, self.rng.as_mut()).map_err(crypto(None))?;
        let self_shares =
            shamir::split(&self_secret, t, &xs, self.rng.as_mut()).map_err(crypto(None))?;
        drop(mask_secret);
        let mut own = None;
        let mut ciphertexts = Vec::with_capacity(neighbours.len());
        let mut recv_keys = Vec::with_capacity(neighbours.len());
        let mut pt = Zeroizing::new([0u8; SHARE_PLAINTEXT_LEN]);
        for ((h, ms), ss) in holders.iter().zip(mask_shares).zip(self_shares) {
            if *h == self.me {
                own = Some(Held {
                    owner: self.me,
                    mask_key: ms,
                    self_mask: ss,
                });
                continue;
            }
            let i = neighbours.partition_point(|&v| v < *h);
            let shared = cipher_sk
                .agree(&peer_cipher_pk[i])
                .map_err(crypto(Some(*h)))?;
            self.counters.x25519_agreements += 1;
            let send = kdf::share_encryption_key(shared.as_bytes(), &self.digest, self.me, *h);
            recv_keys.push(kdf::share_encryption_key(
                shared.as_bytes(),
                &self.digest,
                *h,
                self.me,
            ));
            pt[0..4].copy_from_slice(&self.me.to_be_bytes());
            pt[4..8].copy_from_slice(&h.to_be_bytes());
            pt[8..40].copy_from_slice(&*ms.value_bytes());
            pt[40..72].copy_from_slice(&*ss.value_bytes());
            ciphertexts.push((
                *h,
                aead::seal(&send, &self.digest, &pt[..]).map_err(crypto(Some(*h)))?,
            ));
        }
        let own = own.ok_or(ClientError::WrongState)?;
        let commitment = kdf::self_mask_commitment(&self_secret.to_bytes(), &self.digest, self.me);
        let msg = self.sign(&ClientBody::ShareKeys {
            commitment,
            ciphertexts: ciphertexts
                .iter()
                .map(|(h, c)| (*h, c.as_slice()))
                .collect(),
        });
        self.state = State::SharedKeys {
            input,
            mask_sk,
            self_secret,
            neighbours,
            peer_mask_pk,
            recv_keys,
            own,
        };
        Ok(Some(msg))
    }

    /// MaskedInputCollection (§9.5.3).
    #[allow(clippy::too_many_arguments)]
    fn masked_input_collection(
        &mut self,
        input: Zeroizing<Vec<u64>>,
        mask_sk: KaSecretKey,
        self_secret: SecretScalar,
        neighbours: Vec<u32>,
        peer_mask_pk: Vec<KaPublicKey>,
        recv_keys: Vec<ShareKey>,
        own: Held,
        ciphertexts: &[(u32, &[u8])],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let t = self.cfg.threshold;
        if ciphertexts.len() + 1 < t {
            return Err(ClientError::TooFew {
                round: Round::ShareKeys,
                have: ciphertexts.len() + 1,
                need: t,
            });
        }
        let mut held = Vec::with_capacity(ciphertexts.len() + 1);
        let mut sharers = Vec::with_capacity(ciphertexts.len());
        let mut masks: Vec<(PrgSeed, Sign)> = Vec::with_capacity(ciphertexts.len() + 1);
        masks.push((
            kdf::self_mask_seed(&self_secret.to_bytes(), &self.digest, self.me),
            Sign::Add,
        ));
        drop(self_secret);
        for (v, ct) in ciphertexts {
            let Ok(i) = neighbours.binary_search(v) else {
                return Err(ClientError::InconsistentView(
                    "shares from a client that is not my neighbour",
                ));
            };
            let pt = aead::open(&recv_keys[i], &self.digest, ct).map_err(|_| {
                ClientError::BadPeerMessage {
                    peer: *v,
                    problem: "share ciphertext does not decrypt",
                }
            })?;
            if pt.len() != SHARE_PLAINTEXT_LEN
                || pt[0..4] != v.to_be_bytes()
                || pt[4..8] != self.me.to_be_bytes()
            {
                return Err(ClientError::BadPeerMessage {
                    peer: *v,
                    problem: "share plaintext names the wrong clients",
                });
            }
            let mut a = [0u8; 32];
            let mut b = [0u8; 32];
            a.copy_from_slice(&pt[8..40]);
            b.copy_from_slice(&pt[40..72]);
            let x = self.me + 1;
            let mask_key = Share::from_bytes(x, &a).map_err(crypto(Some(*v)))?;
            let self_mask = Share::from_bytes(x, &b).map_err(crypto(Some(*v)))?;
            zeroize::Zeroize::zeroize(&mut a);
            zeroize::Zeroize::zeroize(&mut b);
            held.push(Held {
                owner: *v,
                mask_key,
                self_mask,
            });
            let shared = mask_sk.agree(&peer_mask_pk[i]).map_err(crypto(Some(*v)))?;
            self.counters.x25519_agreements += 1;
            let sign = if self.me < *v {
                Sign::Add
            } else {
                Sign::Subtract
            };
            masks.push((
                kdf::pairwise_mask_seed(shared.as_bytes(), &self.digest, self.me, *v),
                sign,
            ));
            sharers.push(*v);
        }
        let pos = held.partition_point(|h| h.owner < self.me);
        held.insert(pos, own);
        let bits = self.cfg.modulus_bits;
        let mut y = Zeroizing::new(input.to_vec());
        drop(input);
        self.counters.mask_bytes +=
            prg::accumulate_many(&masks, &mut y, bits).map_err(crypto(None))?;
        self.counters.masks += masks.len() as u64;
        prg::reduce(&mut y, bits);
        let packed = encoding::pack(&y, bits);
        let msg = self.sign(&ClientBody::MaskedInput { packed: &packed });
        self.state = State::MaskedInputSent {
            neighbours,
            sharers,
            held,
        };
        Ok(Some(msg))
    }

    /// ConsistencyCheck (§9.5.4): signs the survivor set after checking it against what
    /// this client saw.
    fn consistency_check(
        &mut self,
        neighbours: Vec<u32>,
        sharers: Vec<u32>,
        held: Vec<Held>,
        survivors: Vec<u32>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        if survivors.binary_search(&self.me).is_err() {
            return Err(ClientError::NotAMember("U3"));
        }
        if survivors.len() < self.cfg.min_survivors {
            return Err(ClientError::TooFew {
                round: Round::MaskedInputCollection,
                have: survivors.len(),
                need: self.cfg.min_survivors,
            });
        }
        // A neighbour in U3 must be in U2, i.e. must have sent me shares.
        for v in &survivors {
            if neighbours.binary_search(v).is_ok() && sharers.binary_search(v).is_err() {
                return Err(ClientError::InconsistentView(
                    "a survivor never sent me its shares",
                ));
            }
        }
        let digest = messages::survivors_digest(&self.digest, &survivors);
        let msg = self.sign(&ClientBody::ConsistencyCheck {
            survivors_digest: digest,
        });
        self.state = State::ConsistencySent {
            neighbours,
            held,
            survivors,
            digest,
        };
        Ok(Some(msg))
    }

    /// Unmasking (§9.5.5): after checking at least `t` holders (itself included) signed the
    /// same survivor set, reveals for each owner exactly one kind of share: the self-mask
    /// share if the owner survived, the mask-key share if it dropped.
    fn unmasking(
        &mut self,
        neighbours: Vec<u32>,
        held: Vec<Held>,
        survivors: Vec<u32>,
        digest: [u8; 32],
        envelopes: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let decoded = self.decode_relayed(envelopes, Round::ConsistencyCheck)?;
        let t = self.cfg.threshold;
        // Every envelope is checked for a foreign digest (a validly signed one proves
        // equivocation); signatures over my digest are verified, as one batch, until t − 1
        // of them, with my own, show that t holders saw the same U3.
        let mut confirming = Vec::with_capacity(t.saturating_sub(1));
        for m in &decoded {
            let ClientBody::ConsistencyCheck { survivors_digest } = &m.body else {
                return Err(ClientError::BadPeerMessage {
                    peer: m.sender,
                    problem: "not a ConsistencyCheck body",
                });
            };
            if survivors.binary_search(&m.sender).is_err() {
                return Err(ClientError::InconsistentView("a signer is not in U3"));
            }
            if neighbours.binary_search(&m.sender).is_err() {
                return Err(ClientError::InconsistentView(
                    "a signer is not my neighbour",
                ));
            }
            if *survivors_digest != digest {
                self.verify_relayed(m)?;
                return Err(ClientError::InconsistentView(
                    "a peer signed a different survivor set (server equivocation)",
                ));
            }
            if confirming.len() + 1 < t {
                confirming.push(m);
            }
        }
        self.verify_relayed_all(&confirming)?;
        let confirmed = confirming.len();
        if confirmed + 1 < t {
            return Err(ClientError::TooFew {
                round: Round::ConsistencyCheck,
                have: confirmed + 1,
                need: t,
            });
        }
        let mut self_mask_shares = Vec::new();
        let mut mask_key_shares = Vec::new();
        for h in &held {
            if survivors.binary_search(&h.owner).is_ok() {
                self_mask_shares.push((h.owner, ShareValue(h.self_mask.value_bytes())));
            } else {
                mask_key_shares.push((h.owner, ShareValue(h.mask_key.value_bytes())));
            }
        }
        let msg = self.sign(&ClientBody::Unmasking {
            self_mask_shares,
            mask_key_shares,
        });
        drop(held);
        self.state = State::Done;
        Ok(Some(msg))
    }
}
