//! §18.5 consistency receipts, §18.6 promises, §18.7 equivocation bundles and §18.8.6
//! audit logs against a head.

use std::collections::BTreeMap;

use quorate_protocol::audit_log;
use quorate_protocol::tlog::{EquivocationBundle, Promise, sign_inclusion_receipt};
use serde_json::{Value, json};

use super::fixture::{Fixture, T0, flip_first_hash, h, head, put, vector};
use super::tamper;

pub fn judgements(f: &Fixture, out: &mut BTreeMap<String, Value>) {
    let Fixture {
        k,
        other,
        log,
        fork,
        other_log,
        h3,
        h6,
        h9,
        inc,
        c,
        ..
    } = f;
    // §18.5 consistency receipts between two heads.
    put(
        out,
        "consistency_good",
        vector(
            "consistency",
            "sizes 3 → 9",
            None,
            json!({"consistency": h(c), "head_a": h(h3), "head_b": h(h9)}),
        ),
    );
    put(
        out,
        "consistency_bad_not_linked",
        vector(
            "consistency",
            "the honest receipt 3 → 9 against a forked head of size 3",
            Some("mismatch"),
            json!({"consistency": h(c), "head_a": h(&head(fork, 3, k)), "head_b": h(h9)}),
        ),
    );
    put(
        out,
        "consistency_bad_flipped_hash",
        vector(
            "consistency",
            "one bit of the first proof hash flipped",
            Some("mismatch"),
            json!({"consistency": h(&tamper::edit_proof(c, |i| flip_first_hash(i))), "head_a": h(h3), "head_b": h(h9)}),
        ),
    );

    // §18.6 promises: receipt 4 was issued at T0+4, in the window [T0, T0+5).
    let promise = Promise {
        log_id: k.public_key().key_id(),
        from: T0,
        until: T0 + 5,
        deadline: T0 + 106,
    }
    .sign(k)
    .unwrap();
    let r4 = &log.receipts[4];
    put(
        out,
        "promise_good",
        vector(
            "promise",
            "receipt 4 (issued T0+4) under a promise for [T0, T0+5) by T0+106, included at T0+106",
            None,
            json!({"promise": h(&promise), "receipt": h(r4), "inclusion": h(inc)}),
        ),
    );
    let late = sign_inclusion_receipt(&log.tree, 4, 9, T0 + 109, k).unwrap();
    put(
        out,
        "promise_bad_past_deadline",
        vector(
            "promise",
            "the only inclusion receipt shown is signed after the deadline",
            Some("late"),
            json!({"promise": h(&promise), "receipt": h(r4), "inclusion": h(&late)}),
        ),
    );
    let inc6 = sign_inclusion_receipt(&log.tree, 6, 9, T0 + 100, k).unwrap();
    put(
        out,
        "promise_bad_outside_window",
        vector(
            "promise",
            "receipt 6 was issued at T0+6, after the window [T0, T0+5): the promise does not cover it",
            Some("mismatch"),
            json!({"promise": h(&promise), "receipt": h(&log.receipts[6]), "inclusion": h(&inc6)}),
        ),
    );
    put(
        out,
        "promise_bad_other_receipt",
        vector(
            "promise",
            "receipt 3's bytes shown with receipt 4's inclusion receipt",
            Some("bad_signature"),
            json!({"promise": h(&promise), "receipt": h(&log.receipts[3]), "inclusion": h(inc)}),
        ),
    );

    // §18.7 equivocation bundles: "valid" convicts, "invalid" must not.
    let bundle = |a: &[u8], b: &[u8], c: Option<&[u8]>| {
        h(&EquivocationBundle {
            head_a: a.to_vec(),
            head_b: b.to_vec(),
            consistency: c.map(<[u8]>::to_vec),
        }
        .to_cbor()
        .unwrap())
    };
    let fork_h9 = head(fork, 9, k);
    put(
        out,
        "equivocation_good_same_size",
        vector(
            "equivocation",
            "two heads of size 9 with different roots",
            None,
            json!({"bundle": bundle(h9, &fork_h9, None), "size": 9}),
        ),
    );
    put(
        out,
        "equivocation_good_consistency",
        vector(
            "equivocation",
            "a forked head of size 3 and the node's own receipt 3 → 9 that signs another root for size 3",
            None,
            json!({"bundle": bundle(&head(fork, 3, k), h9, Some(c)), "size": 3}),
        ),
    );
    put(
        out,
        "equivocation_bad_different_logs",
        vector(
            "equivocation",
            "heads of two different logs",
            Some("different_logs"),
            json!({"bundle": bundle(h6, &head(other_log, 6, other), None)}),
        ),
    );
    put(
        out,
        "equivocation_bad_same_root",
        vector(
            "equivocation",
            "the same size and the same root twice",
            Some("same_tree"),
            json!({"bundle": bundle(h9, &head(log, 9, k), None)}),
        ),
    );
    let mut forged = fork_h9.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    put(
        out,
        "equivocation_bad_invalid_signature",
        vector(
            "equivocation",
            "the second head's signature does not verify",
            Some("not_signed"),
            json!({"bundle": bundle(h9, &forged, None)}),
        ),
    );
    put(
        out,
        "equivocation_bad_consistent",
        vector(
            "equivocation",
            "two honest heads and the receipt linking them",
            Some("consistent"),
            json!({"bundle": bundle(h3, h9, Some(c))}),
        ),
    );
    put(
        out,
        "equivocation_bad_no_receipt",
        vector(
            "equivocation",
            "heads of sizes 3 and 9 from a fork, no consistency receipt",
            Some("no_consistency_receipt"),
            json!({"bundle": bundle(&head(fork, 3, k), h9, None)}),
        ),
    );

    // §18.8.6 audit logs against a head.
    let file = |order: &[usize]| {
        let mut f = audit_log::MAGIC.to_vec();
        for &i in order {
            f.extend(audit_log::record(&log.receipts[i]));
        }
        f
    };
    put(
        out,
        "audit_log_good",
        vector(
            "audit_log",
            "nine records against the head of the first six",
            None,
            json!({"log": h(&file(&[0, 1, 2, 3, 4, 5, 6, 7, 8])), "head": h(h6)}),
        ),
    );
    put(
        out,
        "audit_log_bad_reordered",
        vector(
            "audit_log",
            "records 0 and 1 swapped",
            Some("mismatch"),
            json!({"log": h(&file(&[1, 0, 2, 3, 4, 5])), "head": h(h6)}),
        ),
    );
    put(
        out,
        "audit_log_bad_short",
        vector(
            "audit_log",
            "five records against a head of six",
            Some("audit_log"),
            json!({"log": h(&file(&[0, 1, 2, 3, 4])), "head": h(h6)}),
        ),
    );
    // §12.4.3: zeros after the last record are reserved for the next ones.
    let reserved = [file(&[0, 1, 2, 3, 4, 5, 6]), vec![0; 4096]].concat();
    put(
        out,
        "audit_log_good_reserved_tail",
        vector(
            "audit_log",
            "seven records, then 4096 zero bytes reserved for the next, against the head of six",
            None,
            json!({"log": h(&reserved), "head": h(h6)}),
        ),
    );
    // A crash while the sixth record was written into the reserved zeros: its first half
    // reached the disk. The log holds five complete records.
    let mut torn = [file(&[0, 1, 2, 3, 4]), vec![0; 4096]].concat();
    let sixth = audit_log::record(&log.receipts[5]);
    let at = torn.len() - 4096;
    torn[at..at + sixth.len() / 2].copy_from_slice(&sixth[..sixth.len() / 2]);
    put(
        out,
        "audit_log_bad_torn_in_reserved_tail",
        vector(
            "audit_log",
            "five records and half of the sixth written into the reserved zeros, against a head of six",
            Some("audit_log"),
            json!({"log": h(&torn), "head": h(h6)}),
        ),
    );
}
