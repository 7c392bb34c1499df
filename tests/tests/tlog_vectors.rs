//! §18 vectors: signed tree heads, inclusion and consistency receipts, promises,
//! equivocation bundles and audit logs against a head, good and `_bad_`, generated here
//! (`QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test tlog_vectors`) and
//! checked by the conformance test below through `quorate-verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "tlog_vectors/check.rs"]
mod check;
#[path = "tlog_vectors/documents.rs"]
mod documents;
#[path = "tlog_vectors/fixture.rs"]
mod fixture;
#[path = "tlog_vectors/judgements.rs"]
mod judgements;
#[path = "tlog_vectors/tamper.rs"]
mod tamper;

use std::collections::BTreeMap;

use quorate_crypto::PublicKey;
use quorate_tests::{check_or_regenerate, check_vector_header, read_json, vector_files};
use serde_json::Value;

use check::{bytes, check};

fn generate() -> BTreeMap<String, Value> {
    let f = fixture::fixture();
    let mut out = BTreeMap::new();
    documents::heads_and_inclusions(&f, &mut out);
    judgements::judgements(&f, &mut out);
    out
}

#[test]
fn tlog_vectors_are_current() {
    check_or_regenerate("v1/tlog", &generate());
}

#[test]
fn tlog_vectors_conform() {
    let files = vector_files("v1/tlog");
    assert!(files.len() >= 25, "tlog vectors missing: {}", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(&path);
        check_vector_header(&name, &v);
        let key = PublicKey::from_bytes(&bytes(&v, "public_key")).unwrap();
        let got = check(&v, &key);
        match v["expect"].as_str().unwrap() {
            "valid" => assert_eq!(got, None, "{name}"),
            _ => assert_eq!(got.as_deref(), v["error"].as_str(), "{name}"),
        }
    }
}
