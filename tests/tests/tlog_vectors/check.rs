//! The conformance check of one §18 vector through `quorate-verify`.

use quorate_crypto::PublicKey;
use quorate_verify::tlog::{self as verify, NotProven, Verdict};
use serde_json::Value;

use super::fixture::h;

pub fn bytes(v: &Value, f: &str) -> Vec<u8> {
    hex::decode(v[f].as_str().unwrap()).unwrap()
}

fn verdict_code(v: &Verdict) -> &'static str {
    match v {
        Verdict::Equivocated(_) => "equivocated",
        Verdict::NotProven(n) => match n {
            NotProven::Malformed(_) => "malformed",
            NotProven::DifferentLogs => "different_logs",
            NotProven::NotSigned(_) => "not_signed",
            NotProven::SameTree => "same_tree",
            NotProven::NoConsistencyReceipt => "no_consistency_receipt",
            NotProven::OtherSizes => "other_sizes",
            NotProven::Consistent => "consistent",
            _ => "other",
        },
    }
}

/// The error code a vector's check gives, or `None` when it verifies (convicts, for bundles).
pub fn check(v: &Value, key: &PublicKey) -> Option<String> {
    let code = |e: verify::TlogVerifyError| Some(e.code().to_string());
    match v["type"].as_str().unwrap() {
        "tree_head" => match verify::verify_tree_head(&bytes(v, "head"), key) {
            Ok(head) => {
                assert_eq!(head.size, v["size"].as_u64().unwrap());
                assert_eq!(h(&head.root), v["root"]);
                None
            }
            Err(e) => code(e),
        },
        "inclusion" => match verify::verify_receipt_inclusions(&bytes(v, "receipt"), key) {
            Ok(list) => {
                assert_eq!(list.len(), 1);
                let head = verify::verify_tree_head(&bytes(v, "head"), key).unwrap();
                assert_eq!((list[0].tree_size, list[0].root), (head.size, head.root));
                assert_eq!(list[0].leaf_index, v["leaf_index"].as_u64().unwrap());
                // The carrying receipt is still a receipt (§4.4).
                let r = quorate_protocol::receipt::parse(&bytes(v, "receipt")).unwrap();
                r.sign1.verify(key).unwrap();
                None
            }
            Err(e) => code(e),
        },
        "consistency" => verify::verify_consistency(
            &bytes(v, "consistency"),
            &bytes(v, "head_a"),
            &bytes(v, "head_b"),
            key,
        )
        .err()
        .and_then(code),
        "promise" => verify::verify_promise(
            &bytes(v, "promise"),
            &bytes(v, "receipt"),
            &bytes(v, "inclusion"),
            key,
        )
        .err()
        .and_then(code),
        "equivocation" => match verify::convict(&bytes(v, "bundle"), key) {
            Verdict::Equivocated(e) => {
                assert_eq!(e.size, v["size"].as_u64().unwrap());
                None
            }
            other => Some(verdict_code(&other).to_string()),
        },
        "audit_log" => verify::verify_audit_log(&bytes(v, "log"), &bytes(v, "head"), key)
            .err()
            .and_then(code),
        t => panic!("unknown vector type {t}"),
    }
}
