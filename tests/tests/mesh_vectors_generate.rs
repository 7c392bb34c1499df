//! Generator of `spec/vectors/v1/mesh/` (signed rosters §10, mesh messages §11).
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test mesh_vectors_generate`
//! writes the files; without the variable this test checks that the files on disk are exactly
//! what the generator produces. `mesh_conformance.rs` checks the files against the
//! implementation independently of this generator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "mesh_vectors_generate/messages.rs"]
mod messages;
#[path = "mesh_vectors_generate/rosters.rs"]
mod rosters;

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use quorate_crypto::SecretKey;
use serde_json::Value;

const GENERATED_BY: &str = "tests/tests/mesh_vectors_generate.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test mesh_vectors_generate)";

const ISSUED_AT: u64 = 1_763_900_000;
const VALIDITY: u64 = 30 * 86_400;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn pk_hex(k: &SecretKey) -> String {
    hex::encode(k.public_key().to_bytes())
}

fn int(i: u64) -> Cbor {
    Cbor::Integer(i.into())
}

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    rosters::rosters(&mut out);
    messages::messages(&mut out);
    out
}

#[test]
fn mesh_vectors_on_disk_match_the_generator() {
    quorate_tests::check_or_regenerate("v1/mesh", &generate());
}
