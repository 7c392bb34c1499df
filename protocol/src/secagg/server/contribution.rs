//! The server's side of the graph contribution (sparse graphs only, §9.5.7): send the
//! commitment list, collect the reveals, and open ShareKeys with the graph every client
//! computes from them. The server opens ShareKeys only when every committed client
//! revealed: dropping a reveal after seeing the others would choose among graphs (§17.3).

use crate::secagg::graph::{self, Graph};
use crate::secagg::messages::{self, Round, ServerBody};

use super::{AbortReason, Outgoing, Reject, Server};

impl Server {
    /// Accepts a reveal that matches the sender's round-0 commitment.
    pub(super) fn accept_contribution(
        &mut self,
        u: u32,
        contribution: [u8; 32],
    ) -> Result<(), Reject> {
        let committed = self.advertised.get(&u).and_then(|a| a.graph_commitment);
        if committed
            != Some(quorate_crypto::secagg::kdf::graph_commitment(
                &contribution,
                &self.digest,
                u,
            ))
        {
            return Err(Reject::Invalid {
                sender: u,
                problem: "graph contribution does not match its commitment",
            });
        }
        self.reveals.insert(u, contribution);
        Ok(())
    }

    /// Closes round 0 of a sparse-graph round: sends every client of U1 the commitment
    /// list of U1.
    pub(super) fn open_graph_contribution(&mut self) {
        self.commitments = self
            .advertised
            .iter()
            .filter_map(|(u, a)| a.graph_commitment.map(|c| (*u, c)))
            .collect();
        self.commitments_digest = Some(graph::commitments_digest(&self.digest, &self.commitments));
        let bytes = messages::encode_server_message(
            &self.digest,
            &ServerBody::Commitments {
                commitments: self.commitments.clone(),
            },
        );
        for &u in self.advertised.keys() {
            self.outbox.push(Outgoing {
                to: u,
                bytes: bytes.clone(),
            });
        }
        self.round = Round::GraphContribution;
    }

    /// Closes round 5: aborts unless every committed client revealed, else computes the
    /// graph and opens ShareKeys.
    pub(super) fn close_graph_contribution(&mut self) {
        if self.reveals.len() != self.commitments.len() {
            self.abort(AbortReason::MissingContributions {
                have: self.reveals.len(),
                need: self.commitments.len(),
            });
            return;
        }
        let reveals: Vec<(u32, [u8; 32])> = self.reveals.iter().map(|(u, r)| (*u, *r)).collect();
        let seed = graph::contributed_seed(&self.digest, &self.commitments, &reveals);
        self.open_share_keys(&seed, Some(reveals));
    }

    /// Sends each client of U1 the list U1, the round-0 envelopes of its neighbours and,
    /// with a sparse graph, every reveal; opens ShareKeys (§9.5.1).
    pub(super) fn open_share_keys(
        &mut self,
        seed: &[u8; 32],
        reveals: Option<Vec<(u32, [u8; 32])>>,
    ) {
        let members: Vec<u32> = self.advertised.keys().copied().collect();
        let graph = Graph::new(self.cfg.graph, &members, seed);
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
                    reveals: reveals.clone(),
                },
            );
            self.outbox.push(Outgoing { to: u, bytes });
        }
        self.graph = Some(graph);
        self.round = Round::ShareKeys;
    }
}
