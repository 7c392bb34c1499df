//! The neighbour graph (§9.6): who masks with and shares to whom.
//!
//! Full graph (SecAgg): every member of U1 neighbours every other. Sparse graph (SecAgg+,
//! Bell et al. 2020): the Harary graph H(N, k) on the N = |U1| members, relabelled by a
//! uniformly random permutation. The member at position `p` neighbours the members at
//! positions `p ± 1, …, p ± k/2 (mod N)`. The permutation is a Fisher–Yates shuffle
//! driven by the deterministic generator seeded with
//! `graph_seed(round digest, SHA-256(U1 as 32-bit big-endian indices))`, so clients and
//! server compute the same graph from public data.

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
    /// The graph for `members` (strictly increasing client indices) in a round with digest
    /// `round`.
    pub fn new(kind: GraphKind, members: &[u32], round: &[u8; 32]) -> Self {
        let members = members.to_vec();
        let n = members.len();
        match kind {
            GraphKind::Sparse { degree } if degree < n.saturating_sub(1) => {
                let seed = kdf::graph_seed(round, &members_digest(&members));
                let mut rng = DeterministicRng::from_seed(&seed);
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
}
