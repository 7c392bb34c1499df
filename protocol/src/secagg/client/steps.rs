//! The client's steps after AdvertiseKeys, one method each: ShareKeys (§9.5.2),
//! MaskedInputCollection (§9.5.3), ConsistencyCheck (§9.5.4) and Unmasking (§9.5.5).

use std::collections::HashSet;

use quorate_crypto::secagg::aead;
use quorate_crypto::secagg::kdf::{self, PrgSeed, ShareKey};
use quorate_crypto::secagg::prg::{self, Sign};
use quorate_crypto::secagg::shamir::{self, SecretScalar, Share};
use zeroize::Zeroizing;

use crate::secagg::encoding::{self};
use crate::secagg::graph::Graph;
use crate::secagg::messages::{self, ClientBody, Round, SHARE_PLAINTEXT_LEN, ShareValue};

use super::{Client, ClientError, Held, Secrets, State, crypto};

impl Client {
    /// ShareKeys (§9.5.2). `commitments` is the list this client revealed after (sparse
    /// graphs, §9.5.7), `reveals` the contributions the server relays.
    pub(super) fn share_keys(
        &mut self,
        secrets: Secrets,
        commitments: Option<&[(u32, [u8; 32])]>,
        members: &[u32],
        envelopes: &[&[u8]],
        reveals: Option<&[(u32, [u8; 32])]>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let Secrets {
            input,
            cipher_sk,
            mask_sk,
            mask_secret,
            self_secret,
        } = secrets;
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
        let seed = self.checked_graph_seed(commitments, members, reveals)?;
        let graph = Graph::new(self.cfg.graph, members, &seed);
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
            let ClientBody::AdvertiseKeys {
                cipher_pk,
                mask_pk,
                graph_commitment,
            } = &m.body
            else {
                return Err(ClientError::BadPeerMessage {
                    peer: m.sender,
                    problem: "not an AdvertiseKeys body",
                });
            };
            self.check_neighbour_commitment(commitments, m.sender, graph_commitment.as_ref())?;
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
        // The pairwise mask seeds with every neighbour in U1, agreed now rather than in round
        // 2: they depend only on keys known here, and a prepared job (§15.1) so runs its key
        // agreements before its input exists. Round 2 uses those of the neighbours in U2.
        let mut pair_seeds = Vec::with_capacity(neighbours.len());
        for (v, pk) in neighbours.iter().zip(&peer_mask_pk) {
            let shared = mask_sk.agree(pk).map_err(crypto(Some(*v)))?;
            self.counters.x25519_agreements += 1;
            pair_seeds.push(Some(kdf::pairwise_mask_seed(
                shared.as_bytes(),
                &self.digest,
                self.me,
                *v,
            )));
        }
        drop(mask_sk);
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
            self_secret,
            neighbours,
            pair_seeds,
            recv_keys,
            own,
        };
        Ok(Some(msg))
    }

    /// MaskedInputCollection (§9.5.3).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn masked_input_collection(
        &mut self,
        input: Zeroizing<Vec<u64>>,
        self_secret: SecretScalar,
        neighbours: Vec<u32>,
        mut pair_seeds: Vec<Option<PrgSeed>>,
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
            let Some(seed) = pair_seeds[i].take() else {
                return Err(ClientError::InconsistentView(
                    "shares from the same client twice",
                ));
            };
            let sign = if self.me < *v {
                Sign::Add
            } else {
                Sign::Subtract
            };
            masks.push((seed, sign));
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
    pub(super) fn consistency_check(
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
        let digest = messages::survivors_digest_bound(
            &self.digest,
            self.commitments_digest.as_ref(),
            &survivors,
        );
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
    pub(super) fn unmasking(
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
