//! The neighbour graph (§9.6): who masks with and shares to whom.
//!
//! Full graph (SecAgg): every member of U1 neighbours every other. Sparse graph (SecAgg+,
//! Bell et al. 2020): the Harary graph H(N, k) on the N = |U1| members, relabelled by a
//! uniformly random permutation. The member at position `p` neighbours the members at
//! positions `p ± 1, …, p ± k/2 (mod N)`. The permutation is a Fisher–Yates shuffle
//! driven by the deterministic generator seeded with the graph seed of §9.4.2:
//! `graph_seed(round digest, SHA-256(U1), commitments digest, reveals digest)`, where every
//! client of `U1` committed to a random contribution in round 0 and revealed it in the
//! GraphContribution round (§9.5.7), so clients and server compute the same graph and the
//! server cannot choose it (§17.3).

use quorate_crypto::secagg::kdf;
use quorate_crypto::secagg::rng::{DeterministicRng, SecretRng};
use sha2::{Digest, Sha256};

use super::config::GraphKind;

/// The neighbour graph over the members of U1.
#[derive(Debug, Clone)]
pub struct Graph {
    members: Vec<u32>,
    /// For sparse graphs: position of each member (indexed like `members`), and the
    /// member at each position.
    positions: Option<(Vec<usize>, Vec<u32>)>,
    half: usize,
}

/// Domain tag of the digest of the commitment list (§9.5.7).
pub const TAG_COMMITMENTS: &[u8] = b"quorate/v1/secagg/graph-commitments\0";
/// Domain tag of the digest of the reveals (§9.5.7).
pub const TAG_REVEALS: &[u8] = b"quorate/v1/secagg/graph-reveals\0";

/// The digest of a list of `(client, 32 bytes)` pairs under `tag`:
/// SHA-256(tag || round digest || (index as u32 BE || value)*).
fn pairs_digest(tag: &[u8], round: &[u8; 32], pairs: &[(u32, [u8; 32])]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(round);
    for (i, v) in pairs {
        h.update(i.to_be_bytes());
        h.update(v);
    }
    h.finalize().into()
}

/// The digest of the commitment list `(client, c_client)` of `U1`, ascending (§9.5.7).
pub fn commitments_digest(round: &[u8; 32], commitments: &[(u32, [u8; 32])]) -> [u8; 32] {
    pairs_digest(TAG_COMMITMENTS, round, commitments)
}

/// The digest of the reveals `(client, r_client)` of `U1`, ascending (§9.5.7).
pub fn reveals_digest(round: &[u8; 32], reveals: &[(u32, [u8; 32])]) -> [u8; 32] {
    pairs_digest(TAG_REVEALS, round, reveals)
}

/// The sparse-graph seed (§9.4.2) of a round whose members committed to `commitments` and
/// revealed `reveals` (both ascending by client; their indices are `U1`). The caller has
/// checked every reveal against its commitment.
pub fn contributed_seed(
    round: &[u8; 32],
    commitments: &[(u32, [u8; 32])],
    reveals: &[(u32, [u8; 32])],
) -> [u8; 32] {
    let members: Vec<u32> = commitments.iter().map(|(i, _)| *i).collect();
    kdf::graph_seed(
        round,
        &members_digest(&members),
        &commitments_digest(round, commitments),
        &reveals_digest(round, reveals),
    )
}

/// Whether every committed client revealed exactly the contribution it committed to
/// (same clients, same order, `graph_commitment(r) = c` for each).
pub fn reveals_match(
    round: &[u8; 32],
    commitments: &[(u32, [u8; 32])],
    reveals: &[(u32, [u8; 32])],
) -> bool {
    commitments.len() == reveals.len()
        && commitments
            .iter()
            .zip(reveals)
            .all(|((i, c), (j, r))| i == j && kdf::graph_commitment(r, round, *i) == *c)
}

/// The digest of a member list that seeds the graph.
pub fn members_digest(members: &[u32]) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in members {
        h.update(m.to_be_bytes());
    }
    h.finalize().into()
}

fn uniform_below(rng: &mut DeterministicRng, bound: u64) -> u64 {
    // Rejection sampling: uniform in 0..bound.
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let mut b = [0u8; 8];
        if rng.fill_bytes(&mut b).is_err() {
            return 0;
        }
        let v = u64::from_le_bytes(b);
        if v < zone {
            return v % bound;
        }
    }
}

impl Graph {
    /// The graph for `members` (strictly increasing client indices) from the graph seed
    /// `seed` (§9.4.2; see [`contributed_seed`]). A full graph does not use the seed.
    pub fn new(kind: GraphKind, members: &[u32], seed: &[u8; 32]) -> Self {
        let members = members.to_vec();
        let n = members.len();
        match kind {
            GraphKind::Sparse { degree } if degree < n.saturating_sub(1) => {
                let mut rng = DeterministicRng::from_seed(seed);
                let mut at: Vec<u32> = members.clone();
                for i in (1..n).rev() {
                    let j = uniform_below(&mut rng, i as u64 + 1) as usize;
                    at.swap(i, j);
                }
                let mut pos = vec![0usize; n];
                for (p, m) in at.iter().enumerate() {
                    if let Ok(i) = members.binary_search(m) {
                        pos[i] = p;
                    }
                }
                Self {
                    members,
                    positions: Some((pos, at)),
                    half: degree / 2,
                }
            }
            _ => Self {
                members,
                positions: None,
                half: 0,
            },
        }
    }

    /// The members (U1), ascending.
    pub fn members(&self) -> &[u32] {
        &self.members
    }

    /// Whether `u` is a member.
    pub fn contains(&self, u: u32) -> bool {
        self.members.binary_search(&u).is_ok()
    }

    /// The neighbours of member `u`, ascending; empty if `u` is not a member.
    pub fn neighbours(&self, u: u32) -> Vec<u32> {
        let Ok(i) = self.members.binary_search(&u) else {
            return Vec::new();
        };
        match &self.positions {
            None => self.members.iter().copied().filter(|&v| v != u).collect(),
            Some((pos, at)) => {
                let n = at.len();
                let p = pos[i];
                let mut out: Vec<u32> = (1..=self.half)
                    .flat_map(|d| [at[(p + d) % n], at[(p + n - d) % n]])
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            }
        }
    }

    /// Whether `u` and `v` are distinct neighbouring members.
    pub fn adjacent(&self, u: u32, v: u32) -> bool {
        if u == v {
            return false;
        }
        let (Ok(i), Ok(j)) = (
            self.members.binary_search(&u),
            self.members.binary_search(&v),
        ) else {
            return false;
        };
        match &self.positions {
            None => true,
            Some((pos, at)) => {
                let n = at.len();
                let d = pos[i].abs_diff(pos[j]);
                d.min(n - d) <= self.half
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn full_graph() {
        let g = Graph::new(GraphKind::Full, &[0, 2, 5], &[0; 32]);
        assert_eq!(g.neighbours(2), vec![0, 5]);
        assert!(g.adjacent(0, 5));
        assert!(!g.adjacent(0, 0));
        assert!(!g.adjacent(0, 1));
        assert!(g.neighbours(1).is_empty());
    }

    #[test]
    fn sparse_graph_is_regular_symmetric_and_seeded() {
        let members: Vec<u32> = (0..50).map(|i| i * 2 + 1).collect();
        let g = Graph::new(GraphKind::Sparse { degree: 6 }, &members, &[3; 32]);
        for &u in &members {
            let nb = g.neighbours(u);
            assert_eq!(nb.len(), 6);
            for &v in &nb {
                assert!(g.adjacent(u, v) && g.adjacent(v, u));
                assert!(g.neighbours(v).contains(&u));
            }
            let count = members.iter().filter(|&&v| g.adjacent(u, v)).count();
            assert_eq!(count, 6);
        }
        let g2 = Graph::new(GraphKind::Sparse { degree: 6 }, &members, &[3; 32]);
        let g3 = Graph::new(GraphKind::Sparse { degree: 6 }, &members, &[4; 32]);
        assert_eq!(g.neighbours(1), g2.neighbours(1));
        assert!(members.iter().any(|&u| g.neighbours(u) != g3.neighbours(u)));
        // A degree too large for the member count degenerates to the full graph.
        let small = Graph::new(GraphKind::Sparse { degree: 6 }, &[1, 2, 3, 4], &[3; 32]);
        assert_eq!(small.neighbours(1), vec![2, 3, 4]);
    }

    #[test]
    fn contributed_seed_checks_and_binds_every_reveal() {
        let round = [9u8; 32];
        let reveals: Vec<(u32, [u8; 32])> = (0..5u32).map(|i| (i * 3, [i as u8; 32])).collect();
        let commitments: Vec<(u32, [u8; 32])> = reveals
            .iter()
            .map(|(i, r)| (*i, kdf::graph_commitment(r, &round, *i)))
            .collect();
        assert!(reveals_match(&round, &commitments, &reveals));
        assert!(!reveals_match(&round, &commitments, &reveals[1..]));
        let mut wrong = reveals.clone();
        wrong[2].1[0] ^= 1;
        assert!(!reveals_match(&round, &commitments, &wrong));
        let seed = contributed_seed(&round, &commitments, &reveals);
        assert_ne!(seed, contributed_seed(&[8u8; 32], &commitments, &reveals));
        let mut other = reveals.clone();
        other[4].1[31] ^= 1;
        assert_ne!(seed, contributed_seed(&round, &commitments, &other));
    }
}
