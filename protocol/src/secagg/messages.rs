//! Messages and their strict codecs (§9.8).
//!
//! Every client message is a signed envelope `[signed: bstr, signature: bstr .size 64]`
//! whose `signed` bytes are the CBOR map `{1: version, 2: round digest, 3: sender,
//! 4: round, 5: body}`; the Ed25519 signature covers
//! `"quorate/v1/secagg/client-message\0" || SHA-256(signed)`. Server messages are the map
//! `{1: version, 2: round digest, 3: kind, 4: body}`; they carry relayed client envelopes
//! unchanged, so a client checks its peers' signatures itself and need not trust the
//! server for them.

use quorate_crypto::secagg::ka::KaPublicKey;
use quorate_crypto::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::codec::{DecodeError, Reader, Writer};

/// Protocol version carried in every message.
pub const VERSION: u64 = 1;
/// Domain tag of client-message signatures (§9.8.2).
pub const TAG_CLIENT_MESSAGE: &[u8] = b"quorate/v1/secagg/client-message\0";
/// Domain tag of the survivor-set digest signed in the consistency check (§9.5.4).
pub const TAG_SURVIVORS: &[u8] = b"quorate/v1/secagg/survivors\0";
/// Domain tag of the survivor-set digest of a sparse-graph round, which also binds the
/// commitment list of the graph contributions (§9.5.4, §9.5.7).
pub const TAG_SURVIVORS_GRAPH: &[u8] = b"quorate/v1/secagg/survivors-graph\0";
/// Plaintext of one share ciphertext: owner ‖ holder (u32 BE each) ‖ mask-key share ‖
/// self-mask share (32 bytes each).
pub const SHARE_PLAINTEXT_LEN: usize = 72;
/// A share ciphertext: plaintext plus the 16-byte Poly1305 tag.
pub const SHARE_CIPHERTEXT_LEN: usize = SHARE_PLAINTEXT_LEN + 16;
/// Smallest possible encoded envelope (used to bound array counts).
const MIN_ENVELOPE: usize = 68;

/// The rounds of §9.5. The discriminant is the number on the wire; rounds are ordered as
/// they run: GraphContribution (sparse graphs only, §9.5.7) comes between AdvertiseKeys
/// and ShareKeys, but is numbered 5 so that full-graph rounds keep their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Round {
    /// Round 0 (§9.5.1).
    AdvertiseKeys = 0,
    /// Round 1 (§9.5.2).
    ShareKeys = 1,
    /// Round 2 (§9.5.3).
    MaskedInputCollection = 2,
    /// Round 3 (§9.5.4).
    ConsistencyCheck = 3,
    /// Round 4 (§9.5.5).
    Unmasking = 4,
    /// Round 5, sparse graphs only: the reveal of the graph contributions (§9.5.7). It
    /// runs after AdvertiseKeys and before ShareKeys.
    GraphContribution = 5,
}

impl Round {
    fn from_u64(v: u64) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => Self::AdvertiseKeys,
            1 => Self::ShareKeys,
            2 => Self::MaskedInputCollection,
            3 => Self::ConsistencyCheck,
            4 => Self::Unmasking,
            5 => Self::GraphContribution,
            _ => return Err(DecodeError::Invalid("unknown round")),
        })
    }

    /// Position in the order the rounds run.
    fn step(self) -> u8 {
        match self {
            Self::AdvertiseKeys => 0,
            Self::GraphContribution => 1,
            Self::ShareKeys => 2,
            Self::MaskedInputCollection => 3,
            Self::ConsistencyCheck => 4,
            Self::Unmasking => 5,
        }
    }

    /// The round that follows this one, in a round with a sparse graph or not.
    pub fn next(self, sparse: bool) -> Self {
        match self {
            Self::AdvertiseKeys if sparse => Self::GraphContribution,
            Self::AdvertiseKeys | Self::GraphContribution => Self::ShareKeys,
            Self::ShareKeys => Self::MaskedInputCollection,
            Self::MaskedInputCollection => Self::ConsistencyCheck,
            Self::ConsistencyCheck | Self::Unmasking => Self::Unmasking,
        }
    }
}

impl PartialOrd for Round {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Round {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.step().cmp(&other.step())
    }
}

/// A Shamir share value in transit to the server. Zeroized on drop, redacted.
#[derive(Clone)]
pub struct ShareValue(pub Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ShareValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareValue(<redacted>)")
    }
}

/// The body of a client message, one variant per round.
#[derive(Debug, Clone)]
pub enum ClientBody<'a> {
    /// Round 0: the two X25519 public keys (§9.5.1) and, in a sparse-graph round only, the
    /// commitment to the client's graph contribution.
    AdvertiseKeys {
        /// `c_u^PK`, for share encryption.
        cipher_pk: KaPublicKey,
        /// `s_u^PK`, for pairwise masks.
        mask_pk: KaPublicKey,
        /// `c_u = graph_commitment(r_u)` (sparse graphs only, §9.5.7).
        graph_commitment: Option<[u8; 32]>,
    },
    /// Round 5 (sparse graphs only): the graph contribution `r_u` (§9.5.7).
    GraphContribution {
        /// The 32 bytes committed to in round 0.
        contribution: [u8; 32],
    },
    /// Round 1: one share ciphertext per neighbour, ascending by recipient, and the
    /// commitment to the self-mask secret (§9.5.2).
    ShareKeys {
        /// SHA-256 commitment to the self-mask secret.
        commitment: [u8; 32],
        /// `(recipient, ciphertext)` pairs.
        ciphertexts: Vec<(u32, &'a [u8])>,
    },
    /// Round 2: the masked input, bit-packed (§9.5.3).
    MaskedInput {
        /// ⌈m·b/8⌉ bytes.
        packed: &'a [u8],
    },
    /// Round 3: the digest of the survivor set U3 the client saw (§9.5.4).
    ConsistencyCheck {
        /// [`survivors_digest`] of U3.
        survivors_digest: [u8; 32],
    },
    /// Round 4: self-mask shares of survivors and mask-key shares of dropped clients,
    /// each list ascending by owner (§9.5.5).
    Unmasking {
        /// `(owner, share of b_owner)` for owners in U3.
        self_mask_shares: Vec<(u32, ShareValue)>,
        /// `(owner, share of s_owner)` for owners in U2 \ U3.
        mask_key_shares: Vec<(u32, ShareValue)>,
    },
}

impl ClientBody<'_> {
    /// The round this body belongs to.
    pub fn round(&self) -> Round {
        match self {
            Self::AdvertiseKeys { .. } => Round::AdvertiseKeys,
            Self::GraphContribution { .. } => Round::GraphContribution,
            Self::ShareKeys { .. } => Round::ShareKeys,
            Self::MaskedInput { .. } => Round::MaskedInputCollection,
            Self::ConsistencyCheck { .. } => Round::ConsistencyCheck,
            Self::Unmasking { .. } => Round::Unmasking,
        }
    }
}

/// A decoded client envelope (signature not yet checked).
#[derive(Debug, Clone)]
pub struct ClientMessage<'a> {
    /// The whole envelope as received (relayed verbatim by the server).
    pub envelope: &'a [u8],
    /// The signed bytes.
    pub signed: &'a [u8],
    /// The signature.
    pub signature: [u8; 64],
    /// Round digest the sender bound the message to.
    pub round_digest: [u8; 32],
    /// Sender index.
    pub sender: u32,
    /// Round of the message.
    pub round: Round,
    /// The body.
    pub body: ClientBody<'a>,
}

/// Size limits for decoding, taken from the round configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `n`: client indices are below this.
    pub clients: u32,
    /// Exact byte length of a packed masked input.
    pub packed_len: usize,
    /// Whether the round has a sparse graph, hence graph commitments in round 0 and the
    /// GraphContribution round (§9.5.7).
    pub sparse: bool,
}

impl Limits {
    /// The limits of a configuration.
    pub fn of(cfg: &super::config::RoundConfig) -> Self {
        Self {
            clients: cfg.clients() as u32,
            packed_len: cfg.packed_len(),
            sparse: matches!(cfg.graph, super::config::GraphKind::Sparse { .. }),
        }
    }
}

/// The bytes a client signature covers.
pub fn signature_input(signed: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(TAG_CLIENT_MESSAGE.len() + 32);
    v.extend_from_slice(TAG_CLIENT_MESSAGE);
    v.extend_from_slice(&Sha256::digest(signed));
    v
}

/// Digest of a survivor set (§9.5.4): SHA-256(tag || round digest || indices as u32 BE).
pub fn survivors_digest(round_digest: &[u8; 32], survivors: &[u32]) -> [u8; 32] {
    survivors_digest_bound(round_digest, None, survivors)
}

/// Digest of a survivor set (§9.5.4) that, in a sparse-graph round, also binds the digest
/// of the commitment list the client saw (§9.5.7):
/// SHA-256(tag' || round digest || commitments digest || indices as u32 BE). With `None`
/// (full graph) it is [`survivors_digest`].
pub fn survivors_digest_bound(
    round_digest: &[u8; 32],
    commitments_digest: Option<&[u8; 32]>,
    survivors: &[u32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    match commitments_digest {
        None => h.update(TAG_SURVIVORS),
        Some(_) => h.update(TAG_SURVIVORS_GRAPH),
    }
    h.update(round_digest);
    if let Some(c) = commitments_digest {
        h.update(c);
    }
    for s in survivors {
        h.update(s.to_be_bytes());
    }
    h.finalize().into()
}

fn write_pairs<'b>(w: &mut Writer, pairs: impl ExactSizeIterator<Item = (u32, &'b [u8])>) {
    w.array(pairs.len());
    for (i, b) in pairs {
        w.array(2).uint(u64::from(i)).bytes(b);
    }
}

fn write_body(w: &mut Writer, body: &ClientBody<'_>) {
    match body {
        ClientBody::AdvertiseKeys {
            cipher_pk,
            mask_pk,
            graph_commitment,
        } => {
            w.map(if graph_commitment.is_some() { 3 } else { 2 })
                .uint(1)
                .bytes(&cipher_pk.0)
                .uint(2)
                .bytes(&mask_pk.0);
            if let Some(c) = graph_commitment {
                w.uint(3).bytes(c);
            }
        }
        ClientBody::GraphContribution { contribution } => {
            w.map(1).uint(1).bytes(contribution);
        }
        ClientBody::ShareKeys {
            commitment,
            ciphertexts,
        } => {
            w.map(2).uint(1).bytes(commitment).uint(2);
            write_pairs(w, ciphertexts.iter().map(|(i, c)| (*i, *c)));
        }
        ClientBody::MaskedInput { packed } => {
            w.map(1).uint(1).bytes(packed);
        }
        ClientBody::ConsistencyCheck { survivors_digest } => {
            w.map(1).uint(1).bytes(survivors_digest);
        }
        ClientBody::Unmasking {
            self_mask_shares,
            mask_key_shares,
        } => {
            w.map(2).uint(1);
            write_pairs(w, self_mask_shares.iter().map(|(i, s)| (*i, &s.0[..])));
            w.uint(2);
            write_pairs(w, mask_key_shares.iter().map(|(i, s)| (*i, &s.0[..])));
        }
    }
}

/// Encodes and signs a client message.
pub fn encode_client_message(
    key: &SecretKey,
    round_digest: &[u8; 32],
    sender: u32,
    body: &ClientBody<'_>,
) -> Vec<u8> {
    let extra = match body {
        ClientBody::MaskedInput { packed } => packed.len(),
        ClientBody::ShareKeys { ciphertexts, .. } => ciphertexts.len() * (SHARE_CIPHERTEXT_LEN + 8),
        ClientBody::Unmasking {
            self_mask_shares,
            mask_key_shares,
        } => (self_mask_shares.len() + mask_key_shares.len()) * 40,
        _ => 0,
    };
    let mut w = Writer::with_capacity(64 + extra);
    w.map(5)
        .uint(1)
        .uint(VERSION)
        .uint(2)
        .bytes(round_digest)
        .uint(3)
        .uint(u64::from(sender));
    w.uint(4).uint(body.round() as u64).uint(5);
    write_body(&mut w, body);
    let signed = w.finish();
    let sig = key.sign(&signature_input(&signed));
    let mut env = Writer::with_capacity(signed.len() + 80);
    env.array(2).bytes(&signed).bytes(&sig.0);
    env.finish()
}

fn read_index_list(
    r: &mut Reader<'_>,
    what: &'static str,
    limits: &Limits,
) -> Result<Vec<u32>, DecodeError> {
    let n = r.array(what, limits.clients as usize, 1)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let v = r.u32(what, limits.clients.saturating_sub(1))?;
        if out.last().is_some_and(|&l| l >= v) {
            return Err(DecodeError::Invalid("indices must be strictly ascending"));
        }
        out.push(v);
    }
    Ok(out)
}

fn read_pairs<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    limits: &Limits,
    value_len: usize,
) -> Result<Vec<(u32, &'a [u8])>, DecodeError> {
    let n = r.array(what, limits.clients as usize, 3 + value_len)?;
    let mut out: Vec<(u32, &'a [u8])> = Vec::with_capacity(n);
    for _ in 0..n {
        r.array_exact(what, 2)?;
        let i = r.u32(what, limits.clients.saturating_sub(1))?;
        if out.last().is_some_and(|&(l, _)| l >= i) {
            return Err(DecodeError::Invalid("indices must be strictly ascending"));
        }
        let b = r.bytes(what, value_len)?;
        if b.len() != value_len {
            return Err(DecodeError::WrongLength {
                what,
                expected: value_len,
                found: b.len(),
            });
        }
        out.push((i, b));
    }
    Ok(out)
}

fn read_pairs32(
    r: &mut Reader<'_>,
    what: &'static str,
    limits: &Limits,
) -> Result<Vec<(u32, [u8; 32])>, DecodeError> {
    Ok(read_pairs(r, what, limits, 32)?
        .into_iter()
        .map(|(i, b)| {
            let mut v = [0u8; 32];
            v.copy_from_slice(b);
            (i, v)
        })
        .collect())
}

fn read_shares(
    r: &mut Reader<'_>,
    what: &'static str,
    limits: &Limits,
) -> Result<Vec<(u32, ShareValue)>, DecodeError> {
    Ok(read_pairs(r, what, limits, 32)?
        .into_iter()
        .map(|(i, b)| {
            let mut v = Zeroizing::new([0u8; 32]);
            v.copy_from_slice(b);
            (i, ShareValue(v))
        })
        .collect())
}

fn read_body<'a>(
    r: &mut Reader<'a>,
    round: Round,
    limits: &Limits,
) -> Result<ClientBody<'a>, DecodeError> {
    Ok(match round {
        Round::AdvertiseKeys => {
            r.map(if limits.sparse { 3 } else { 2 })?;
            r.key(1)?;
            let c = r.bytes_n::<32>("cipher_pk")?;
            r.key(2)?;
            let s = r.bytes_n::<32>("mask_pk")?;
            let graph_commitment = if limits.sparse {
                r.key(3)?;
                Some(r.bytes_n::<32>("graph commitment")?)
            } else {
                None
            };
            ClientBody::AdvertiseKeys {
                cipher_pk: KaPublicKey(c),
                mask_pk: KaPublicKey(s),
                graph_commitment,
            }
        }
        Round::GraphContribution => {
            if !limits.sparse {
                return Err(DecodeError::Invalid(
                    "no GraphContribution round with a full graph",
                ));
            }
            r.map(1)?;
            r.key(1)?;
            ClientBody::GraphContribution {
                contribution: r.bytes_n::<32>("graph contribution")?,
            }
        }
        Round::ShareKeys => {
            r.map(2)?;
            r.key(1)?;
            let commitment = r.bytes_n::<32>("commitment")?;
            r.key(2)?;
            let ciphertexts = read_pairs(r, "ciphertexts", limits, SHARE_CIPHERTEXT_LEN)?;
            ClientBody::ShareKeys {
                commitment,
                ciphertexts,
            }
        }
        Round::MaskedInputCollection => {
            r.map(1)?;
            r.key(1)?;
            let packed = r.bytes("masked input", limits.packed_len)?;
            if packed.len() != limits.packed_len {
                return Err(DecodeError::WrongLength {
                    what: "masked input",
                    expected: limits.packed_len,
                    found: packed.len(),
                });
            }
            ClientBody::MaskedInput { packed }
        }
        Round::ConsistencyCheck => {
            r.map(1)?;
            r.key(1)?;
            ClientBody::ConsistencyCheck {
                survivors_digest: r.bytes_n::<32>("survivors digest")?,
            }
        }
        Round::Unmasking => {
            r.map(2)?;
            r.key(1)?;
            let self_mask_shares = read_shares(r, "self-mask shares", limits)?;
            r.key(2)?;
            let mask_key_shares = read_shares(r, "mask-key shares", limits)?;
            ClientBody::Unmasking {
                self_mask_shares,
                mask_key_shares,
            }
        }
    })
}

/// Decodes a client envelope strictly. The signature is not checked here: see
/// [`verify_client_message`].
pub fn decode_client_message<'a>(
    envelope: &'a [u8],
    limits: &Limits,
) -> Result<ClientMessage<'a>, DecodeError> {
    let mut r = Reader::new(envelope);
    r.array_exact("envelope", 2)?;
    let signed = r.bytes(
        "signed",
        limits.packed_len + 64 + limits.clients as usize * (SHARE_CIPHERTEXT_LEN + 16),
    )?;
    let signature = r.bytes_n::<64>("signature")?;
    r.finish()?;
    let mut s = Reader::new(signed);
    s.map(5)?;
    s.key(1)?;
    if s.uint("version", u64::MAX)? != VERSION {
        return Err(DecodeError::Invalid("unsupported version"));
    }
    s.key(2)?;
    let round_digest = s.bytes_n::<32>("round digest")?;
    s.key(3)?;
    let sender = s.u32("sender", limits.clients.saturating_sub(1))?;
    s.key(4)?;
    let round = Round::from_u64(s.uint("round", 5)?)?;
    s.key(5)?;
    let body = read_body(&mut s, round, limits)?;
    s.finish()?;
    Ok(ClientMessage {
        envelope,
        signed,
        signature,
        round_digest,
        sender,
        round,
        body,
    })
}

/// Checks the signatures of many envelopes at once (§9.8.3): `true` when every sender is in
/// the roster and one batch equation holds for all of them. On `false`, the caller finds
/// the culprit with [`verify_client_message`].
pub fn verify_client_messages(msgs: &[&ClientMessage<'_>], roster: &[PublicKey]) -> bool {
    let inputs: Vec<Vec<u8>> = msgs.iter().map(|m| signature_input(m.signed)).collect();
    let mut items = Vec::with_capacity(msgs.len());
    for (m, input) in msgs.iter().zip(&inputs) {
        let Some(key) = roster.get(m.sender as usize) else {
            return false;
        };
        items.push(quorate_crypto::batch::Item {
            message: input,
            signature: &m.signature[..],
            key,
        });
    }
    quorate_crypto::batch::all_authentic(&items)
}

/// Checks the envelope's signature against the sender's roster key (`verify_strict`).
pub fn verify_client_message(msg: &ClientMessage<'_>, roster: &[PublicKey]) -> bool {
    roster.get(msg.sender as usize).is_some_and(|k| {
        k.verify(&signature_input(msg.signed), &msg.signature)
            .is_ok()
    })
}

/// Why a server aborted a round (§9.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortCode {
    /// Fewer clients than required answered a round.
    TooFewClients = 1,
    /// A reconstructed secret did not match its public key or commitment, or too few
    /// shares arrived for it.
    ReconstructionFailed = 2,
    /// The round was cancelled by its operator.
    Cancelled = 3,
}

/// The body of a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerBody<'a> {
    /// Opens round 1: the members U1 and the round-0 envelopes of the recipient's
    /// neighbours (kind 1); in a sparse-graph round also every member's graph contribution.
    Keys {
        /// U1, ascending.
        members: Vec<u32>,
        /// Relayed AdvertiseKeys envelopes, ascending by sender.
        envelopes: Vec<&'a [u8]>,
        /// Sparse graphs only: `(client, r_client)` for every client of U1, ascending
        /// (§9.5.7).
        reveals: Option<Vec<(u32, [u8; 32])>>,
    },
    /// Sparse graphs only, opens round 5: the commitment list `(client, c_client)` of U1,
    /// ascending (kind 6, §9.5.7).
    Commitments {
        /// The commitments of round 0.
        commitments: Vec<(u32, [u8; 32])>,
    },
    /// Opens round 2: the share ciphertexts addressed to the recipient (kind 2).
    Shares {
        /// `(sender, ciphertext)`, ascending by sender.
        ciphertexts: Vec<(u32, &'a [u8])>,
    },
    /// Opens round 3: the survivor set U3 (kind 3).
    Survivors {
        /// U3, ascending.
        survivors: Vec<u32>,
    },
    /// Opens round 4: relayed ConsistencyCheck envelopes (kind 4).
    Signatures {
        /// Envelopes, ascending by sender.
        envelopes: Vec<&'a [u8]>,
    },
    /// The server aborted the round (kind 5).
    Abort {
        /// Why.
        code: AbortCode,
    },
}

/// A decoded server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage<'a> {
    /// The round digest.
    pub round_digest: [u8; 32],
    /// The body.
    pub body: ServerBody<'a>,
}

/// Encodes a server message.
pub fn encode_server_message(round_digest: &[u8; 32], body: &ServerBody<'_>) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    let kind = match body {
        ServerBody::Keys { .. } => 1,
        ServerBody::Shares { .. } => 2,
        ServerBody::Survivors { .. } => 3,
        ServerBody::Signatures { .. } => 4,
        ServerBody::Abort { .. } => 5,
        ServerBody::Commitments { .. } => 6,
    };
    w.map(4)
        .uint(1)
        .uint(VERSION)
        .uint(2)
        .bytes(round_digest)
        .uint(3)
        .uint(kind)
        .uint(4);
    match body {
        ServerBody::Keys {
            members,
            envelopes,
            reveals,
        } => {
            w.map(if reveals.is_some() { 3 } else { 2 })
                .uint(1)
                .array(members.len());
            for m in members {
                w.uint(u64::from(*m));
            }
            w.uint(2).array(envelopes.len());
            for e in envelopes {
                w.raw(e);
            }
            if let Some(reveals) = reveals {
                w.uint(3);
                write_pairs(&mut w, reveals.iter().map(|(i, r)| (*i, &r[..])));
            }
        }
        ServerBody::Commitments { commitments } => {
            w.map(1).uint(1);
            write_pairs(&mut w, commitments.iter().map(|(i, c)| (*i, &c[..])));
        }
        ServerBody::Shares { ciphertexts } => {
            w.map(1).uint(1);
            write_pairs(&mut w, ciphertexts.iter().map(|(i, c)| (*i, *c)));
        }
        ServerBody::Survivors { survivors } => {
            w.map(1).uint(1).array(survivors.len());
            for m in survivors {
                w.uint(u64::from(*m));
            }
        }
        ServerBody::Signatures { envelopes } => {
            w.map(1).uint(1).array(envelopes.len());
            for e in envelopes {
                w.raw(e);
            }
        }
        ServerBody::Abort { code } => {
            w.map(1).uint(1).uint(*code as u64);
        }
    }
    w.finish()
}

fn read_envelopes<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<Vec<&'a [u8]>, DecodeError> {
    let n = r.array("envelopes", limits.clients as usize, MIN_ENVELOPE)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.item_bytes(0)?);
    }
    Ok(out)
}

/// Decodes a server message strictly (relayed envelopes are returned raw; decode each with
/// [`decode_client_message`]).
pub fn decode_server_message<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<ServerMessage<'a>, DecodeError> {
    let mut r = Reader::new(bytes);
    r.map(4)?;
    r.key(1)?;
    if r.uint("version", u64::MAX)? != VERSION {
        return Err(DecodeError::Invalid("unsupported version"));
    }
    r.key(2)?;
    let round_digest = r.bytes_n::<32>("round digest")?;
    r.key(3)?;
    let kind = r.uint("kind", 6)?;
    r.key(4)?;
    let body = match kind {
        1 => {
            r.map(if limits.sparse { 3 } else { 2 })?;
            r.key(1)?;
            let members = read_index_list(&mut r, "members", limits)?;
            r.key(2)?;
            let envelopes = read_envelopes(&mut r, limits)?;
            let reveals = if limits.sparse {
                r.key(3)?;
                Some(read_pairs32(&mut r, "reveals", limits)?)
            } else {
                None
            };
            ServerBody::Keys {
                members,
                envelopes,
                reveals,
            }
        }
        2 => {
            r.map(1)?;
            r.key(1)?;
            ServerBody::Shares {
                ciphertexts: read_pairs(&mut r, "ciphertexts", limits, SHARE_CIPHERTEXT_LEN)?,
            }
        }
        3 => {
            r.map(1)?;
            r.key(1)?;
            ServerBody::Survivors {
                survivors: read_index_list(&mut r, "survivors", limits)?,
            }
        }
        4 => {
            r.map(1)?;
            r.key(1)?;
            ServerBody::Signatures {
                envelopes: read_envelopes(&mut r, limits)?,
            }
        }
        5 => {
            r.map(1)?;
            r.key(1)?;
            let code = match r.uint("abort code", 3)? {
                1 => AbortCode::TooFewClients,
                2 => AbortCode::ReconstructionFailed,
                3 => AbortCode::Cancelled,
                _ => return Err(DecodeError::Invalid("unknown abort code")),
            };
            ServerBody::Abort { code }
        }
        6 if limits.sparse => {
            r.map(1)?;
            r.key(1)?;
            ServerBody::Commitments {
                commitments: read_pairs32(&mut r, "commitments", limits)?,
            }
        }
        6 => {
            return Err(DecodeError::Invalid("no commitment list with a full graph"));
        }
        _ => return Err(DecodeError::Invalid("unknown server message kind")),
    };
    r.finish()?;
    Ok(ServerMessage { round_digest, body })
}
