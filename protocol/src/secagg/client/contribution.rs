//! The client's part of the graph contribution (sparse graphs only, §9.5.7): reveal its
//! contribution after seeing the commitment list, then check every reveal before it
//! computes the graph. A server that could choose the graph seed could place corrupt
//! clients around a victim (§17.3); with every member's contribution in the seed, and the
//! list fixed before any honest client reveals, it cannot.

use quorate_crypto::secagg::kdf;
use zeroize::Zeroizing;

use crate::secagg::config::GraphKind;
use crate::secagg::graph;
use crate::secagg::messages::{ClientBody, Round};

use super::{Client, ClientError, Secrets, State};

impl Client {
    /// GraphContribution (§9.5.7): checks that the commitment list holds this client's own
    /// commitment unchanged, keeps the list and its digest, and reveals `r_u`.
    pub(super) fn graph_contribution(
        &mut self,
        secrets: Secrets,
        contribution: Zeroizing<[u8; 32]>,
        commitments: Vec<(u32, [u8; 32])>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let Ok(i) = commitments.binary_search_by_key(&self.me, |(c, _)| *c) else {
            return Err(ClientError::NotAMember("U1"));
        };
        if commitments[i].1 != kdf::graph_commitment(&contribution, &self.digest, self.me) {
            return Err(ClientError::InconsistentView(
                "the commitment list changed my graph commitment",
            ));
        }
        let need = self.cfg.min_survivors.max(2);
        if commitments.len() < need {
            return Err(ClientError::TooFew {
                round: Round::AdvertiseKeys,
                have: commitments.len(),
                need,
            });
        }
        self.commitments_digest = Some(graph::commitments_digest(&self.digest, &commitments));
        let msg = self.sign(&ClientBody::GraphContribution {
            contribution: *contribution,
        });
        self.state = State::Contributed {
            secrets,
            commitments,
        };
        Ok(Some(msg))
    }

    /// The graph seed of ShareKeys (§9.4.2). With a sparse graph: `U1` must be exactly the
    /// clients of the commitment list this client revealed after, and the server must
    /// relay a reveal of every one of them that matches its commitment; otherwise the
    /// client aborts (a server that drops a reveal after seeing the others would be
    /// choosing among graphs again). A full graph uses no seed.
    pub(super) fn checked_graph_seed(
        &self,
        commitments: Option<&[(u32, [u8; 32])]>,
        members: &[u32],
        reveals: Option<&[(u32, [u8; 32])]>,
    ) -> Result<[u8; 32], ClientError> {
        match (self.cfg.graph, commitments, reveals) {
            (GraphKind::Full, None, None) => Ok([0; 32]),
            (GraphKind::Sparse { .. }, Some(commitments), Some(reveals)) => {
                if members.len() != commitments.len()
                    || members.iter().zip(commitments).any(|(m, (c, _))| m != c)
                {
                    return Err(ClientError::InconsistentView(
                        "U1 is not the committed list",
                    ));
                }
                if !graph::reveals_match(&self.digest, commitments, reveals) {
                    return Err(ClientError::InconsistentView(
                        "a graph contribution is missing or does not match its commitment",
                    ));
                }
                Ok(graph::contributed_seed(&self.digest, commitments, reveals))
            }
            _ => Err(ClientError::InconsistentView(
                "graph contributions do not fit the round's graph",
            )),
        }
    }

    /// A relayed neighbour's signed round-0 commitment must be the one in the list this
    /// client revealed after (sparse graphs; §9.5.2).
    pub(super) fn check_neighbour_commitment(
        &self,
        commitments: Option<&[(u32, [u8; 32])]>,
        peer: u32,
        signed: Option<&[u8; 32]>,
    ) -> Result<(), ClientError> {
        let listed = commitments.map(|list| {
            list.binary_search_by_key(&peer, |(c, _)| *c)
                .ok()
                .map(|i| &list[i].1)
        });
        match (listed, signed) {
            (None, None) => Ok(()),
            (Some(Some(l)), Some(s)) if l == s => Ok(()),
            _ => Err(ClientError::BadPeerMessage {
                peer,
                problem: "signed graph commitment differs from the commitment list",
            }),
        }
    }
}
