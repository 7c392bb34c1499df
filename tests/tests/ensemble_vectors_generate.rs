//! Generator of `spec/vectors/v1/ensemble/` (§15): parameters, messages, an aggregate
//! receipt over a simulated round with one dropout, lying variants, and DP calibrations.
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test ensemble_vectors_generate`
//! writes the files; without it this test checks the files equal what it generates.
//! `ensemble_conformance.rs` checks the files against the implementation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use quorate_crypto::SecretKey;
use quorate_protocol::cbor;
use quorate_protocol::ensemble::{
    AggregatePayload, EnsembleInput, EnsembleParams, EnsembleReply, EnsembleRound, EnsembleStart,
    Mode, TranscriptEntry, encode_transcript, masked_tensor, receipt_digest, transcript_digest,
};
use quorate_protocol::ensemble_dp;
use quorate_protocol::messages::{Request, Response};
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::secagg::encoding::FixedPoint;
use quorate_protocol::secagg::messages::{ClientBody, Limits, decode_client_message};
use quorate_protocol::secagg::{Outcome, Round, sim};
use quorate_protocol::tensor::Tensor;
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/ensemble_vectors_generate.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test ensemble_vectors_generate)";
const SEED: [u8; 32] = [0x15; 32];

fn aggregator() -> SecretKey {
    SecretKey::from_seed(&[0x61; 32])
}

fn params() -> EnsembleParams {
    let members = (0..5)
        .map(|i| sim::identity(&SEED, i).public_key())
        .collect();
    EnsembleParams::new(
        Mode::Mean,
        [0x33; 32],
        aggregator().public_key(),
        members,
        (0..5u8).map(|i| [0x70 + i; 32]).collect(),
        2,
        3,
        None,
    )
    .unwrap()
}

fn input() -> Tensor {
    Tensor::from_f32("features", vec![1, 4], &[0.5, -1.0, 2.0, 0.25]).unwrap()
}

fn file(expect: &str, mut v: Value) -> Value {
    v["generated_by"] = json!(GENERATED_BY);
    v["expect"] = json!(expect);
    v
}

/// The full simulated job: payload, transcript bytes, member receipts.
pub fn simulated() -> (AggregatePayload, Vec<u8>, Vec<Vec<u8>>) {
    let p = params();
    let cfg = Arc::new(p.round_config());
    let fp = FixedPoint::new(65536.0, 1.0).unwrap();
    let probs = [
        [0.9f32, 0.1],
        [0.8, 0.2],
        [0.3, 0.7],
        [0.6, 0.4],
        [0.55, 0.45],
    ];
    let inputs: Vec<Vec<u64>> = probs.iter().map(|x| fp.encode(x).unwrap().values).collect();
    // Member 4 drops before its masked input.
    let mut drops = vec![None; 5];
    drops[4] = Some(Round::MaskedInputCollection);
    let r = sim::run(&cfg, &SEED, &inputs, &drops, &mut |_| {}).unwrap();
    let Outcome::Sum(agg) = r.outcome else {
        panic!("simulated round aborted")
    };
    let limits = Limits::of(&cfg);
    let entries: Vec<TranscriptEntry> = r
        .client_messages
        .iter()
        .map(|(i, b)| TranscriptEntry {
            member: *i,
            round: decode_client_message(b, &limits).unwrap().round as u8,
            envelope: b.clone(),
        })
        .collect();
    let transcript = encode_transcript(&entries).unwrap();
    let job_id = [0x44; 16];
    let nonce = vec![0x55; 32];
    let models: Vec<[u8; 32]> = (0..5u8).map(|i| [0x70 + i; 32]).collect();
    let mut receipts = Vec::new();
    for e in entries.iter().filter(|e| e.round == 2) {
        let ClientBody::MaskedInput { packed } =
            decode_client_message(&e.envelope, &limits).unwrap().body
        else {
            panic!()
        };
        let payload = ReceiptPayload {
            job_id,
            nonce: nonce.clone(),
            kind: JobKind::EnsembleMember,
            model_digest: models[e.member as usize],
            inputs: vec![Commitment::to(&input(), Some(&[0x66; 32]))],
            outputs: vec![Commitment::to(&masked_tensor(packed).unwrap(), None)],
            provider: "CPUExecutionProvider".into(),
            runtime: "onnxruntime 1.31.1".into(),
            issued_at: 1_763_900_000,
            previous: None,
            policy: Some(p.digest()),
        };
        receipts.push((
            e.member,
            payload.sign(&sim::identity(&SEED, e.member)).unwrap(),
        ));
    }
    let payload = AggregatePayload {
        job_id,
        nonce,
        params: p,
        models,
        inputs: vec![Commitment::to(&input(), Some(&[0x66; 32]))],
        contributors: agg.contributors.clone(),
        dropped: agg.dropped.clone(),
        sum: agg.sum.clone(),
        transcript: transcript_digest(&transcript),
        member_receipts: receipts
            .iter()
            .map(|(i, r)| (*i, receipt_digest(r)))
            .collect(),
        issued_at: 1_763_900_001,
        epsilon_achieved_micro: None,
    };
    (
        payload,
        transcript,
        receipts.into_iter().map(|(_, r)| r).collect(),
    )
}

fn aggregate_file(
    expect: &str,
    payload: &AggregatePayload,
    transcript: &[u8],
    receipts: &[Vec<u8>],
    error: Option<&str>,
) -> Value {
    let mut v = json!({
        "description": "an aggregate receipt over 5 members (member 4 dropped before its masked input), its transcript and member receipts",
        "aggregator_public_key": hex::encode(aggregator().public_key().to_bytes()),
        "aggregate": hex::encode(payload.sign(&aggregator()).unwrap()),
        "transcript": hex::encode(transcript),
        "member_receipts": receipts.iter().map(hex::encode).collect::<Vec<_>>(),
        "contributors": payload.contributors,
        "decoded_mean": payload.params.decode_sum(&payload.sum, payload.contributors.len()),
    });
    if let Some(e) = error {
        v["error"] = json!(e);
    }
    file(expect, v)
}

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let p = params();
    let enc = cbor::encode(&p.to_value()).unwrap();
    out.insert(
        "params.json".into(),
        file(
            "valid",
            json!({
                "cbor": hex::encode(&enc),
                "digest": hex::encode(p.digest()),
                "round_digest": hex::encode(p.round_config().digest()),
                "modulus_bits": p.modulus_bits,
                "max_input": p.max_input().unwrap(),
            }),
        ),
    );
    let mut bad = p.clone();
    bad.threshold = 6;
    out.insert(
        "params_bad_threshold.json".into(),
        file(
            "invalid",
            json!({"cbor": hex::encode(cbor::encode(&bad.to_value()).unwrap())}),
        ),
    );
    let mut bad = p.clone();
    bad.modulus_bits = 10;
    out.insert(
        "params_bad_overflow_budget.json".into(),
        file(
            "invalid",
            json!({"cbor": hex::encode(cbor::encode(&bad.to_value()).unwrap())}),
        ),
    );

    let start = Request::EnsembleStart(EnsembleStart {
        job_id: [0x44; 16],
        nonce: vec![0x55; 32],
        model: [0x70; 32],
        inputs: Some(vec![input()]),
        params: p.clone(),
        index: 0,
        input_salts: vec![[0x66; 32]],
    });
    // §15.1: a prepared start has no input and no salts; its input comes in round 2.
    let Request::EnsembleStart(mut prepared) = start.clone() else {
        panic!()
    };
    prepared.inputs = None;
    prepared.input_salts = vec![];
    let prepared = Request::EnsembleStart(prepared);
    let input_round = EnsembleInput {
        job_id: [0x44; 16],
        message: vec![0xa0],
        inputs: vec![input()],
        input_salts: vec![[0x66; 32]],
    };
    let round = Request::EnsembleRound(EnsembleRound {
        job_id: [0x44; 16],
        round: 3,
        message: vec![0xa0],
    });
    let reply = Response::Ensemble(EnsembleReply {
        job_id: [0x44; 16],
        round: 2,
        message: vec![0x82, 0x40, 0x40],
        receipt: None,
    });
    out.insert(
        "messages.json".into(),
        file(
            "valid",
            json!({
                "requests": [
                    hex::encode(start.encode().unwrap()),
                    hex::encode(round.encode().unwrap()),
                    hex::encode(prepared.encode().unwrap()),
                    hex::encode(Request::EnsembleInput(input_round.clone()).encode().unwrap()),
                ],
                "responses": [hex::encode(reply.encode().unwrap())],
            }),
        ),
    );
    let mut bad_round = round.encode().unwrap();
    // {1: 4, 2: job, 3: 3, ...}: the round value follows the job id.
    let pos = bad_round.len() - 4;
    assert_eq!(bad_round[pos], 0x03);
    bad_round[pos] = 0x06;
    out.insert(
        "messages_bad_round_out_of_range.json".into(),
        file("invalid", json!({"request": hex::encode(&bad_round)})),
    );
    let mut zero_round = round.encode().unwrap();
    zero_round[pos] = 0x00;
    out.insert(
        "messages_bad_round_zero.json".into(),
        file("invalid", json!({"request": hex::encode(&zero_round)})),
    );
    let Request::EnsembleStart(mut s) = start.clone() else {
        panic!()
    };
    // Index 9: not a member (the encoder writes what it is given; the decoder refuses it).
    s.index = 9;
    let enc = Request::EnsembleStart(s).encode().unwrap();
    out.insert(
        "messages_bad_index.json".into(),
        file("invalid", json!({"request": hex::encode(&enc)})),
    );

    // A prepared start that still carries salts: salts travel with the input.
    let Request::EnsembleStart(mut s) = prepared.clone() else {
        panic!()
    };
    s.input_salts = vec![[0x66; 32]];
    out.insert(
        "messages_bad_prepared_start_with_salts.json".into(),
        file(
            "invalid",
            json!({"request": hex::encode(Request::EnsembleStart(s).encode().unwrap())}),
        ),
    );
    // An input with two salts for its one tensor, and one with no tensor at all.
    let mut two_salts = input_round.clone();
    two_salts.input_salts.push([0x67; 32]);
    out.insert(
        "messages_bad_input_salts.json".into(),
        file(
            "invalid",
            json!({"request": hex::encode(Request::EnsembleInput(two_salts).encode().unwrap())}),
        ),
    );
    let mut empty = input_round;
    empty.inputs.clear();
    empty.input_salts.clear();
    out.insert(
        "messages_bad_input_empty.json".into(),
        file(
            "invalid",
            json!({"request": hex::encode(Request::EnsembleInput(empty).encode().unwrap())}),
        ),
    );

    let (payload, transcript, receipts) = simulated();
    out.insert(
        "aggregate.json".into(),
        aggregate_file("valid", &payload, &transcript, &receipts, None),
    );
    let mut lie = payload.clone();
    lie.sum[1] ^= 1;
    out.insert(
        "aggregate_bad_lying_sum.json".into(),
        aggregate_file("invalid", &lie, &transcript, &receipts, Some("Sum")),
    );
    let mut lie = payload.clone();
    lie.contributors = vec![0, 1, 2, 3, 4];
    lie.dropped = vec![];
    out.insert(
        "aggregate_bad_lying_contributors.json".into(),
        aggregate_file(
            "invalid",
            &lie,
            &transcript,
            &receipts,
            Some("Contributors"),
        ),
    );
    out.insert(
        "aggregate_bad_missing_member_receipt.json".into(),
        aggregate_file(
            "invalid",
            &payload,
            &transcript,
            &receipts[1..],
            Some("Member"),
        ),
    );

    let cases: Vec<Value> = [
        (1.0, 1e-5, Mode::Votes, 2u32, 5usize),
        (0.5, 1e-6, Mode::Votes, 2, 5),
        (2.0, 1e-5, Mode::Mean, 2, 5),
    ]
    .iter()
    .map(|&(e, d, mode, k, n)| {
        let s = if mode == Mode::Mean { 16 } else { 0 };
        let np = ensemble_dp::calibrate(e, d, mode, s, k, n).unwrap();
        json!({
            "epsilon": e, "delta": d, "mode": mode.name(), "classes": k, "members": n,
            "mu_milli": np.mu_milli, "bound": np.bound,
            "epsilon_with_4": ensemble_dp::achieved_epsilon(&np, mode, s, k, 4),
        })
    })
    .collect();
    out.insert("dp.json".into(), file("valid", json!({ "cases": cases })));
    out
}

#[test]
fn ensemble_vectors_are_what_the_generator_writes() {
    let generated = generate();
    for (name, v) in &generated {
        quorate_tests::check_vector_header(name, v);
    }
    quorate_tests::check_or_regenerate("v1/ensemble", &generated);
}
