//! §18.3 heads and §18.4 inclusion receipts carried in header 394.

use std::collections::BTreeMap;

use ciborium::value::Value as Cbor;
use quorate_protocol::tlog;
use serde_json::{Value, json};

use super::fixture::{Fixture, flip_first_hash, h, head, put, vector};
use super::tamper;

pub fn heads_and_inclusions(f: &Fixture, out: &mut BTreeMap<String, Value>) {
    let Fixture {
        k,
        other,
        log,
        other_log,
        h6,
        inc,
        ..
    } = f;
    // §18.3 heads.
    put(
        out,
        "head_good",
        vector(
            "tree_head",
            "a head of 6 leaves",
            None,
            json!({"head": h(h6), "size": 6, "root": h(&log.tree.root(6).unwrap())}),
        ),
    );
    put(
        out,
        "head_bad_wrong_key",
        vector(
            "tree_head",
            "a head signed by another node's key",
            Some("wrong_key"),
            json!({"head": h(&head(other_log, 6, other))}),
        ),
    );
    put(
        out,
        "head_bad_tampered_size",
        vector(
            "tree_head",
            "size 6 changed to 7 after signing",
            Some("bad_signature"),
            json!({"head": h(&tamper::edit_payload(h6, 3, Cbor::Integer(7.into())))}),
        ),
    );
    put(
        out,
        "head_bad_tampered_root",
        vector(
            "tree_head",
            "root changed after signing",
            Some("bad_signature"),
            json!({"head": h(&tamper::edit_payload(h6, 4, Cbor::Bytes(vec![0; 32])))}),
        ),
    );

    // §18.4 inclusion receipts, carried by the receipt in header 394.
    let carry =
        |r: &[u8]| tlog::attach_inclusion_receipts(&log.receipts[4], &[r.to_vec()]).unwrap();
    put(
        out,
        "inclusion_good",
        vector(
            "inclusion",
            "receipt 4 of a log of 6 with its inclusion receipt in header 394, and the head of that size",
            None,
            json!({"receipt": h(&carry(inc)), "head": h(h6), "leaf_index": 4, "tree_size": 6, "root": h(&log.tree.root(6).unwrap())}),
        ),
    );
    let root6 = log.tree.root(6).unwrap();
    let bad_inclusions = [
        (
            "inclusion_bad_flipped_hash",
            "one bit of the first path hash flipped",
            "bad_signature",
            tamper::edit_proof(inc, |i| flip_first_hash(i)),
        ),
        (
            "inclusion_bad_leaf_index",
            "leaf index 4 changed to 5",
            "bad_signature",
            tamper::edit_proof(inc, |i| i[1] = Cbor::Integer(5.into())),
        ),
        (
            "inclusion_bad_proof_too_long",
            "a path of 65 hashes",
            "proof_too_long",
            tamper::edit_proof(inc, |i| {
                tamper::path(i).resize(65, Cbor::Bytes(vec![0; 32]))
            }),
        ),
        (
            "inclusion_bad_short_path",
            "the last path hash removed",
            "proof_shape",
            tamper::edit_proof(inc, |i| {
                tamper::path(i).pop();
            }),
        ),
        (
            "inclusion_bad_vds",
            "vds 2 instead of RFC9162_SHA256 (1), signed",
            "vds",
            tamper::resign_protected(inc, tlog::HEADER_VDS, Cbor::Integer(2.into()), &root6, k),
        ),
        (
            "inclusion_bad_missing_396",
            "no header 396",
            "missing_proof",
            tamper::set_unprotected(inc, vec![]),
        ),
        (
            "inclusion_bad_size_not_signed",
            "the proof's tree size differs from the signed one",
            "size",
            tamper::edit_proof(inc, |i| i[0] = Cbor::Integer(7.into())),
        ),
    ];
    for (name, what, code, bad) in bad_inclusions {
        put(
            out,
            name,
            vector(
                "inclusion",
                what,
                Some(code),
                json!({"receipt": h(&carry(&bad))}),
            ),
        );
    }
    let elsewhere =
        tlog::attach_inclusion_receipts(&log.receipts[3], std::slice::from_ref(inc)).unwrap();
    put(
        out,
        "inclusion_bad_other_receipt",
        vector(
            "inclusion",
            "receipt 4's inclusion receipt carried by receipt 3",
            Some("bad_signature"),
            json!({"receipt": h(&elsewhere)}),
        ),
    );
}
