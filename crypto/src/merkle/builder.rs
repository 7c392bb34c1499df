//! A [`Tree`] of a size known up front, built as its leaves arrive: each subtree root is
//! hashed as soon as its last leaf is in, so the hashing [`Tree::new`] would do at the end is
//! spread over the arrivals. A batch (§5.1) gets its leaves one run at a time, on a thread
//! that has time between them, and is then signed with its tree already built.

use super::{Digest32, Tree, node_hash, split};

/// The tree over `size` leaves, filled in order by [`TreeBuilder::push`].
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    /// As [`Tree`]'s: subtree roots in pre-order, each set once its last leaf is in.
    nodes: Vec<Digest32>,
    size: usize,
    len: usize,
}

impl TreeBuilder {
    /// A tree that will hold exactly `size` leaves.
    pub fn new(size: usize) -> Self {
        Self {
            nodes: vec![[0; 32]; (2 * size).saturating_sub(1)],
            size,
            len: 0,
        }
    }

    /// Leaves pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first leaf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the next leaf (already hashed); false, changing nothing, once the tree is full.
    pub fn push(&mut self, leaf: Digest32) -> bool {
        if self.len == self.size {
            return false;
        }
        place(&mut self.nodes, self.size, self.len, leaf);
        self.len += 1;
        true
    }

    /// The tree, equal to [`Tree::new`] over the same leaves, once all `size` are in.
    pub fn finish(self) -> Option<Tree> {
        (self.len == self.size).then_some(Tree {
            nodes: self.nodes,
            leaves: self.size,
        })
    }
}

/// Sets leaf `i` of the subtree of `n` leaves whose pre-order roots are `nodes`, then every
/// subtree root it completes: a subtree is complete when its last leaf arrives, by which time
/// its left half is.
fn place(nodes: &mut [Digest32], n: usize, i: usize, leaf: Digest32) {
    if n == 1 {
        nodes[0] = leaf;
        return;
    }
    let k = split(n as u64) as usize;
    let (top, rest) = nodes.split_at_mut(1);
    let (left, right) = rest.split_at_mut(2 * k - 1);
    if i < k {
        place(left, k, i, leaf);
    } else {
        place(right, n - k, i - k, leaf);
    }
    if i == n - 1 {
        top[0] = node_hash(&left[0], &right[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::leaf_hash;
    use super::*;

    #[test]
    fn a_tree_built_leaf_by_leaf_is_the_tree_over_its_leaves() {
        for n in 0..=70usize {
            let leaves: Vec<Digest32> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let mut b = TreeBuilder::new(n);
            for (i, l) in leaves.iter().enumerate() {
                assert!(b.clone().finish().is_none());
                assert!(b.push(*l));
                assert_eq!(b.len(), i + 1);
            }
            assert!(!b.push([9; 32]));
            let (built, whole) = (b.finish().unwrap(), Tree::new(&leaves));
            assert_eq!(built.nodes, whole.nodes);
            assert_eq!(built.root(), whole.root());
        }
    }
}
