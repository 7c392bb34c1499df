//! Entry points for fuzz targets (`fuzz/`) and for the corpus replay test, so both drive
//! exactly the same code. Each asserts the round-trip property of what it decodes.

use crate::{batch_receipt, receipt, tensor_file};

/// Receipt decoding (§4, §5): anything that parses re-encodes to the same payload bytes, and
/// checking the signature never panics.
pub fn receipt(data: &[u8]) {
    if let Ok(r) = batch_receipt::parse_any(data) {
        let payload = r.payload();
        let again = payload
            .to_cbor()
            .ok()
            .and_then(|b| receipt::ReceiptPayload::from_cbor(&b).ok());
        assert_eq!(again.as_ref(), Some(payload), "payload does not round-trip");
        let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
        let _ = r.sign1().verify(&key);
    }
}

/// `.npy` decoding (§3.5): anything that parses writes back to a file that parses the same.
pub fn tensor_npy(data: &[u8]) {
    if let Ok(t) = tensor_file::parse_npy(data, "x") {
        let again = tensor_file::parse_npy(&tensor_file::to_npy(&t), "x");
        assert_eq!(again.as_ref(), Ok(&t), "npy does not round-trip");
    }
}

/// JSON tensor-list decoding (§3.5): anything that parses writes back to JSON that parses the same.
pub fn tensor_json(data: &[u8]) {
    if let Ok(list) = tensor_file::parse_json(data) {
        let doc = tensor_file::tensors_json(list.iter().map(|r| (&r.tensor, r.salt.as_ref())));
        let again = tensor_file::parse_json(doc.to_string().as_bytes());
        assert_eq!(again.as_ref(), Ok(&list), "tensor JSON does not round-trip");
    }
}

/// Roster decoding (§10): `data` is tried both as a signed roster (every check up to the
/// signature, which a fuzzer cannot forge) and as the signed content itself, so the content
/// decoder is reached without a signature. Anything that decodes re-encodes to exactly the
/// same bytes (it was deterministic CBOR) and decodes again to the same roster.
pub fn roster(data: &[u8]) {
    use crate::roster::Roster;
    let authority = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
    let _ = Roster::verify(data, &authority, 1_763_900_000);
    if let Ok(r) = Roster::from_cbor(data) {
        let again = r.to_cbor().ok();
        assert_eq!(
            again.as_deref(),
            Some(data),
            "roster does not re-encode to its bytes"
        );
        let decoded = again.as_deref().map(Roster::from_cbor);
        assert_eq!(decoded, Some(Ok(r)), "roster does not round-trip");
    }
}

/// Mesh message decoding (§11): `data` is decoded as a request and as a response; anything
/// that decodes encodes to bytes that decode to the same message. Those bytes are `data`
/// itself, except for an error response with a code this version does not know, which
/// decodes as `internal` (§11.5).
pub fn messages(data: &[u8]) {
    use crate::messages::{ErrorCode, Request, Response};
    if let Ok(r) = Request::decode(data) {
        let bytes = r.encode().ok();
        assert_eq!(bytes.as_deref(), Some(data), "request does not re-encode");
        let again = bytes.and_then(|b| Request::decode(&b).ok());
        assert_eq!(again.as_ref(), Some(&r), "request does not round-trip");
    }
    if let Ok(r) = Response::decode(data) {
        let bytes = r.encode().ok();
        let unknown_code = matches!(&r, Response::Error(e) if e.code == ErrorCode::Internal);
        if !unknown_code {
            assert_eq!(bytes.as_deref(), Some(data), "response does not re-encode");
        }
        let again = bytes.and_then(|b| Response::decode(&b).ok());
        assert_eq!(again.as_ref(), Some(&r), "response does not round-trip");
    }
}

/// Receipt-chain decoding (§13.2): anything that decodes re-encodes to exactly the same bytes,
/// and checking it (with one fixed trusted key) never panics.
pub fn chain(data: &[u8]) {
    use crate::chain::{ReceiptChain, check_chain};
    if let Ok(c) = ReceiptChain::from_cbor(data) {
        let again = c.to_cbor().ok();
        assert_eq!(again.as_deref(), Some(data), "chain does not re-encode");
        let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
        let _ = check_chain(&c, Some(&c.declared()), &|_| Some(key));
    }
}

/// Evidence bundles (§14.6, §14.7): anything that decodes re-encodes to the same bytes, and
/// checking it against fixed trusted keys never panics and convicts only its own signers.
pub fn evidence_bundle(data: &[u8]) {
    use crate::evidence::{Bundle, check_bundle};
    let Ok(b) = Bundle::decode(data) else { return };
    assert_eq!(
        b.encode().ok().as_deref(),
        Some(data),
        "bundle does not re-encode"
    );
    // The keys of the spec vectors (seeds 0x61..=0x64), so corpus seeds reach the checks.
    let keys: Vec<quorate_crypto::PublicKey> = (0x61..=0x64u8)
        .map(|s| quorate_crypto::SecretKey::from_seed(&[s; 32]).public_key())
        .collect();
    // A governance granting the bundle's own policy, so inputs reach the conviction rule.
    let mut governance = crate::governance::Governance::default();
    if !governance.verification[0]
        .grants
        .iter()
        .any(|g| g.policy == b.policy)
    {
        governance.verification[0]
            .grants
            .push(crate::governance::Grant {
                policy: b.policy,
                scope: crate::governance::Scope::SameProvider,
            });
    }
    let trust = |kid: &quorate_crypto::KeyId| keys.iter().find(|k| k.key_id() == *kid).copied();
    if let Ok(r) = check_bundle(&b, &trust, &governance) {
        assert!(r.convicted.iter().all(|k| r.signers.contains(k)));
        // A conviction needs at least `quorum` other signers.
        assert!(r.convicted.is_empty() || r.signers.len() > r.quorum);
    }
}

/// The verified-job state machine (§14.4, §14.5) driven by a script: byte 0 picks the
/// replicas, byte 1 the quorum, byte 2 the candidates; then each byte answers one pending
/// replica (low bits: which, high bits: an output value or a failure). Checks that only idle
/// candidates are dispatched, and that a verdict always has a pairwise-agreeing group of at
/// least the quorum.
pub fn verified_job(data: &[u8]) {
    use crate::policy::Policy;
    use crate::tensor::Tensor;
    use crate::verified_job::{Slot, Step, VerifiedJob};
    let [r, q, c, script @ ..] = data else { return };
    let replicas = usize::from(r % 6);
    let quorum = usize::from(q % 7);
    let candidates = usize::from(c % 10);
    let policy = Policy::Tolerance {
        atol: 0.5,
        rtol: 0.0,
    };
    let Ok((mut job, mut step)) = VerifiedJob::new(policy, replicas, quorum, candidates) else {
        return;
    };
    let mut dispatched = vec![false; candidates];
    for &b in script {
        if let Step::Dispatch(list) = &step {
            for &i in list {
                assert!(
                    i < candidates && !dispatched[i],
                    "candidate dispatched twice"
                );
                dispatched[i] = true;
            }
        }
        if matches!(step, Step::Decided | Step::Failed(_)) {
            break;
        }
        let pending: Vec<usize> = (0..candidates)
            .filter(|&i| job.slots()[i] == Slot::Pending)
            .collect();
        let Some(&i) = pending.get(usize::from(b & 0x0f) % pending.len().max(1)) else {
            break;
        };
        step = match b >> 4 {
            15 => job.on_failure(i, "failed"),
            v => {
                // Values 0.0, 0.4, 0.8, …: neighbours agree, the relation is not transitive.
                let y = f32::from(v) * 0.4;
                let out = Tensor::from_f32("y", vec![1], &[y])
                    .ok()
                    .into_iter()
                    .collect();
                job.on_result(i, out)
            }
        };
    }
    if let Some(v) = job.verdict() {
        assert!(v.agreeing.len() >= quorum, "accepted below quorum");
        let outs: Vec<&[Tensor]> = v
            .agreeing
            .iter()
            .filter_map(|&i| match &job.slots()[i] {
                Slot::Answered(o) => Some(o.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(
            outs.len(),
            v.agreeing.len(),
            "agreeing replica without an answer"
        );
        for a in &outs {
            for b in &outs {
                assert!(
                    policy.agree_all(a, b),
                    "agreeing group not pairwise agreeing"
                );
            }
        }
    }
}

/// Ensemble messages (§15.3): requests and responses round-trip exactly, and a decoded
/// parameters map re-validates.
pub fn ensemble_messages(data: &[u8]) {
    messages(data);
    if let Ok(v) = crate::cbor::decode_deterministic(data, 1 << 20)
        && let Ok(p) = crate::ensemble::EnsembleParams::from_value(&v)
    {
        assert!(p.validate().is_ok(), "decoded parameters do not validate");
        let _ = p.round_config().digest();
    }
    let _ = crate::ensemble::decode_transcript(data);
}

/// Aggregate receipts (§15.5): strict parsing, and the audit of a parsed payload against a
/// transcript taken from the rest of the input never panics.
pub fn ensemble_aggregate(data: &[u8]) {
    let split = data
        .get(..2)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let (agg, rest) = data
        .get(2..)
        .map_or((&[][..], &[][..]), |d| d.split_at(split.min(d.len())));
    if let Ok(a) = crate::ensemble::parse_aggregate(agg) {
        let _ = crate::ensemble_audit::audit(&a.payload, rest, &[]);
    }
    let _ = crate::ensemble::parse_aggregate(data);
}

/// Encrypted-inference messages (§16): anything that decodes re-encodes to the same bytes, and
/// checking a decoded result's receipt never panics.
pub fn fhe_messages(data: &[u8]) {
    use crate::fhe::{Expected, FheRequest, FheResponse, check_receipt};
    use crate::messages::{Request, Response};
    if let Ok(Request::Fhe(r)) = Request::decode(data) {
        let again = Request::Fhe(r.clone()).encode().ok();
        assert_eq!(again.as_deref(), Some(data), "request does not re-encode");
        if let FheRequest::KeyChunk(c) = &r {
            assert!(
                c.offset + c.data.len() as u64 <= c.total_len,
                "chunk past the end"
            );
        }
    }
    if let Ok(Response::Fhe(r)) = Response::decode(data) {
        let again = Response::Fhe(r.clone()).encode().ok();
        assert_eq!(again.as_deref(), Some(data), "response does not re-encode");
        if let FheResponse::Result { receipt, .. } = &r {
            let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
            let expected = Expected {
                job_id: &[0; 16],
                nonce: &[0; 16],
                model: [0; 32],
                inputs: vec![],
                outputs: vec![],
            };
            let _ = check_receipt(receipt, &expected, &key);
        }
    }
}

/// Transparency-log decoding (§18): `data` is tried as a signed tree head, a promise, an
/// inclusion receipt, a consistency receipt, an equivocation bundle, a bare proof and a
/// receipt carrying header 394. Whatever decodes re-encodes to the bytes it came from, and
/// recomputing roots and checking signatures never panics.
pub fn tlog(data: &[u8]) {
    use crate::tlog::{
        ConsistencyProof, ConsistencyReceipt, EquivocationBundle, InclusionProof, InclusionReceipt,
        Promise, TreeHead,
    };
    let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
    if let Ok(h) = TreeHead::parse(data) {
        assert_eq!(h.body.to_cbor().ok(), Some(h.sign1.payload.clone()), "head");
        let _ = h.sign1.verify(&key);
    }
    if let Ok(p) = Promise::parse(data) {
        assert_eq!(
            p.body.to_cbor().ok(),
            Some(p.sign1.payload.clone()),
            "promise"
        );
    }
    if let Ok(r) = InclusionReceipt::parse(data) {
        assert_eq!(
            r.proof.to_cbor().ok(),
            Some(r.cose.proof.clone()),
            "inclusion"
        );
        if let Some(root) = r.root_for(&[0; 32]) {
            let _ = r
                .cose
                .to_be_signed(&root)
                .map(|m| key.verify(&m, &r.cose.signature));
        }
    }
    if let Ok(r) = ConsistencyReceipt::parse(data) {
        assert_eq!(
            r.proof.to_cbor().ok(),
            Some(r.cose.proof.clone()),
            "consistency"
        );
        let _ = r.new_root();
    }
    if let Ok(b) = EquivocationBundle::from_cbor(data) {
        assert_eq!(b.to_cbor().ok().as_deref(), Some(data), "bundle");
    }
    if let Ok(p) = InclusionProof::from_cbor(data) {
        assert_eq!(p.to_cbor().ok().as_deref(), Some(data), "inclusion proof");
    }
    if let Ok(p) = ConsistencyProof::from_cbor(data) {
        assert_eq!(p.to_cbor().ok().as_deref(), Some(data), "consistency proof");
    }
    if let Ok(leaf) = crate::tlog::leaf_bytes(data) {
        assert_eq!(crate::tlog::leaf_bytes(&leaf).ok(), Some(leaf), "leaf form");
        if let Ok(list) = crate::tlog::inclusion_receipts_of(data) {
            let again = crate::tlog::attach_inclusion_receipts(data, &list);
            assert_eq!(again.ok().as_deref(), Some(data), "header 394");
            // The quick test read off the heads never claims an empty header wrongly.
            if crate::tlog::unprotected_header_is_empty(data) {
                assert!(list.is_empty(), "empty header");
            }
        }
    }
}
