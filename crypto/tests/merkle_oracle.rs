//! `merkle.rs` against an independent RFC 9162 implementation (`ct-merkle`): the same roots,
//! the same inclusion and consistency proofs, hash for hash (§18.2).

#![allow(clippy::unwrap_used)]

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, RootHash};
use quorate_crypto::merkle::{self, MerkleLog};
use sha2::Sha256;

fn concat(hashes: &[[u8; 32]]) -> Vec<u8> {
    hashes.concat()
}

#[test]
fn roots_and_proofs_match_ct_merkle() {
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut ours = MerkleLog::new();
    for n in 1..=45u64 {
        let value = format!("receipt {n}").into_bytes();
        ours.push(merkle::leaf_hash(&value)).unwrap();
        theirs.push(value);
        let their_root = theirs.root();
        assert_eq!(their_root.as_bytes().as_slice(), ours.root(n).unwrap());
        for i in 0..n {
            let proof = theirs.prove_inclusion(i as usize);
            assert_eq!(
                proof.as_bytes(),
                concat(&ours.inclusion_proof(i, n).unwrap()),
                "inclusion i={i} n={n}"
            );
        }
        for m in 1..n {
            let proof = theirs.prove_consistency((n - m) as usize);
            let mine = ours.consistency_proof(m, n).unwrap();
            assert_eq!(proof.as_bytes(), concat(&mine), "consistency m={m} n={n}");
            // And their verifier accepts our proof between our roots.
            let old = RootHash::<Sha256>::new(ours.root(m).unwrap().into(), m);
            let digests: Vec<_> = mine.iter().map(|h| (*h).into()).collect();
            their_root
                .verify_consistency(&old, &ConsistencyProof::from_digests(digests.iter()))
                .unwrap();
        }
    }
}
