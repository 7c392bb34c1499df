//! Vectors of `spec/vectors/v1/verified/` (§14): policies and evidence bundles.
//!
//! `QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test verified_vectors` writes
//! the files; without the variable the generator test checks the files on disk are exactly
//! what it produces. The conformance test checks every file against the implementation from
//! the file's own contents (hex bytes, trusted keys, expected convictions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quorate_crypto::{KeyId, PublicKey, SecretKey};
use quorate_protocol::cbor;
use quorate_protocol::evidence::{Bundle, BundleEntry, check_bundle_bytes};
use quorate_protocol::governance::{Governance, Grant, Scope, VerificationRule};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use quorate_tests::{check_or_regenerate, check_vector_header, read_json, vector_files};
use serde_json::{Value, json};

const GENERATED_BY: &str = "tests/tests/verified_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test verified_vectors)";

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn kid_hex(k: &SecretKey) -> String {
    k.public_key().key_id().to_string()
}

const POLICY: Policy = Policy::Tolerance {
    atol: 1e-3,
    rtol: 0.0,
};

const CPU: &str = "CPUExecutionProvider";
const OPENVINO: &str = "OpenVINOExecutionProvider";
const MODEL: [u8; 32] = [0x33; 32];

/// The governance most bundle vectors are judged under: the default, also granting
/// [`POLICY`] with scope same_provider (min_quorum 2).
fn granting_policy() -> Governance {
    let mut g = Governance::default();
    g.verification[0].grants.push(Grant {
        policy: POLICY,
        scope: Scope::SameProvider,
    });
    g
}

/// Roster field 7 as the vectors carry it: hex of its CBOR, or null for the default
/// governance (a roster without field 7).
fn governance_hex(g: &Governance) -> Value {
    if *g == Governance::default() {
        Value::Null
    } else {
        Value::String(hex::encode(cbor::encode(&g.to_value().unwrap()).unwrap()))
    }
}

fn governance_of(v: &Value) -> Governance {
    match v {
        Value::Null => Governance::default(),
        h => Governance::from_value(&cbor::decode_deterministic(&unhex(h), 1 << 20).unwrap())
            .unwrap(),
    }
}

/// One replica's signed answer for the shared job: output `y = values`.
fn entry(signer: &SecretKey, values: &[f32], job_id: [u8; 16], salt: u8) -> BundleEntry {
    entry_on(signer, values, job_id, salt, &POLICY, CPU)
}

/// [`entry`] under `policy`, signed by a node that ran on `provider`.
fn entry_on(
    signer: &SecretKey,
    values: &[f32],
    job_id: [u8; 16],
    salt: u8,
    policy: &Policy,
    provider: &str,
) -> BundleEntry {
    let input = Tensor::from_f32("features", vec![1, 2], &[0.5, -1.5]).unwrap();
    let out = Tensor::from_f32("probabilities", vec![1, 2], values).unwrap();
    let out_salt = [salt; 32];
    let payload = ReceiptPayload {
        job_id,
        nonce: vec![0x22; 32],
        kind: JobKind::Infer,
        model_digest: MODEL,
        inputs: vec![Commitment::to(&input, Some(&[0x44; 32]))],
        outputs: vec![Commitment::to(&out, Some(&out_salt))],
        provider: provider.into(),
        runtime: "onnxruntime 1.31.1".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: Some(policy.digest().unwrap()),
    };
    BundleEntry {
        receipt: payload.sign(signer).unwrap(),
        outputs: vec![out],
        salts: Some(vec![out_salt]),
    }
}

const JOB: [u8; 16] = [0x11; 16];

fn nodes() -> Vec<SecretKey> {
    (0x61..=0x64).map(key).collect()
}

fn good_bundle() -> Bundle {
    let k = nodes();
    Bundle {
        policy: POLICY,
        quorum: 2,
        entries: vec![
            entry(&k[0], &[0.25, 0.75], JOB, 1),
            entry(&k[1], &[0.2504, 0.7496], JOB, 2),
            entry(&k[2], &[0.35, 0.65], JOB, 3),
        ],
        accused: vec![k[2].public_key().key_id()],
    }
}

fn bundle_vector(
    description: &str,
    b: &Bundle,
    expect_valid: bool,
    convicted: &[&SecretKey],
    unproven: &[&SecretKey],
    error: Option<&str>,
) -> Value {
    governed_vector(
        description,
        &granting_policy(),
        b,
        expect_valid,
        convicted,
        &unproven
            .iter()
            .map(|k| (*k, "not_outvoted"))
            .collect::<Vec<_>>(),
        error,
    )
}

/// A bundle vector judged under `governance` (§10.6); `unproven` pairs each accused node the
/// bundle does not prove wrong with the reason code of §14.7.
fn governed_vector(
    description: &str,
    governance: &Governance,
    b: &Bundle,
    expect_valid: bool,
    convicted: &[&SecretKey],
    unproven: &[(&SecretKey, &str)],
    error: Option<&str>,
) -> Value {
    json!({
        "generated_by": GENERATED_BY,
        "expect": if expect_valid { "valid" } else { "invalid" },
        "description": description,
        "trusted_keys": nodes().iter().map(|k| hex::encode(k.public_key().to_bytes())).collect::<Vec<_>>(),
        "governance": governance_hex(governance),
        "bundle": hex::encode(b.encode().unwrap()),
        "convicted": convicted.iter().map(|k| kid_hex(k)).collect::<Vec<_>>(),
        "unproven": unproven.iter().map(|(k, _)| kid_hex(k)).collect::<Vec<_>>(),
        "unproven_codes": unproven.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        "error": error,
    })
}

fn generate() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, cli) in [
        ("policy_exact.json", "exact"),
        ("policy_default.json", "default"),
        ("policy_tolerance.json", "tolerance:atol=1e-5,rtol=1e-4"),
        ("policy_cosine.json", "cosine:min=0.999"),
        ("policy_argmax.json", "argmax"),
        ("policy_topk.json", "topk:k=5"),
    ] {
        let p = Policy::parse(cli).unwrap();
        out.insert(
            name.to_string(),
            json!({
                "generated_by": GENERATED_BY,
                "expect": "valid",
                "cli": cli,
                "cbor": hex::encode(p.to_cbor().unwrap()),
                "digest": hex::encode(p.digest().unwrap()),
            }),
        );
    }
    for (name, cbor, why) in [
        // {1: 1, 2: 2, 3: -1.0, 4: 0.0}: negative tolerance.
        (
            "policy_bad_negative_atol.json",
            "a40101020203f9bc0004f90000",
            "atol must be >= 0",
        ),
        // {1: 1, 2: 1, 3: 0.5, 4: 0.5}: exact carries no tolerances.
        (
            "policy_bad_exact_with_tolerances.json",
            "a40101020103f9380004f93800",
            "kind 1 has exactly fields 1 and 2",
        ),
        // {1: 1, 2: 2, 3: 0.5 as float64, 4: 0.0}: not the shortest float encoding.
        (
            "policy_bad_noncanonical_float.json",
            "a40101020203fb3fe000000000000004f90000",
            "floats use their shortest exact encoding (§1.3)",
        ),
        // {1: 1, 2: 4, 3: 1.5}: a cosine bound above 1.
        (
            "policy_bad_cosine_above_one.json",
            "a30101020403f93e00",
            "cosine min must be in [0, 1]",
        ),
        // {1: 1, 2: 4}: cosine without its bound.
        (
            "policy_bad_cosine_missing_min.json",
            "a201010204",
            "kind 4 has exactly fields 1, 2 and 3",
        ),
        // {1: 1, 2: 5, 3: 1}: argmax takes no parameter.
        (
            "policy_bad_argmax_with_parameter.json",
            "a3010102050301",
            "kind 5 has exactly fields 1 and 2",
        ),
        // {1: 1, 2: 6, 3: 0}: top-0.
        (
            "policy_bad_topk_zero.json",
            "a3010102060300",
            "topk k must be in 1..=1024",
        ),
        // {1: 1, 2: 9}: unknown kind.
        (
            "policy_bad_unknown_kind.json",
            "a201010209",
            "kind 9 is not defined",
        ),
    ] {
        out.insert(
            name.to_string(),
            json!({"generated_by": GENERATED_BY, "expect": "invalid", "cbor": cbor, "reason": why}),
        );
    }

    let k = nodes();
    let good = good_bundle();
    out.insert(
        "bundle_good_one_liar.json".into(),
        bundle_vector(
            "three replicas; the third's signed outputs differ by 0.1 from two agreeing ones (atol 1e-3): it alone is proven wrong",
            &good,
            true,
            &[&k[2]],
            &[],
            None,
        ),
    );
    let mut within = good.clone();
    within.entries[2] = entry(&k[2], &[0.2508, 0.7492], JOB, 3);
    out.insert(
        "bundle_bad_accuses_within_tolerance.json".into(),
        bundle_vector(
            "the accused node's outputs are within the tolerance of the others: valid signatures, nobody convicted, the accusation is unproven",
            &within,
            false,
            &[],
            &[&k[2]],
            None,
        ),
    );
    let mut lone = good.clone();
    lone.entries.remove(1);
    lone.quorum = 1;
    lone.accused = vec![k[0].public_key().key_id()];
    out.insert(
        "bundle_bad_lone_witness.json".into(),
        governed_vector(
            "one witness against one node, quorum 1: below the roster's min_quorum 2, so nobody is convicted",
            &granting_policy(),
            &lone,
            false,
            &[],
            &[(&k[0], "quorum_below_minimum")],
            None,
        ),
    );
    governance_vectors(&mut out);
    let mut framed = good.clone();
    framed.accused = vec![k[0].public_key().key_id(), k[2].public_key().key_id()];
    out.insert(
        "bundle_bad_frames_honest_node.json".into(),
        bundle_vector(
            "the author also accuses an honest node: only the liar is convicted; the honest node's accusation is unproven",
            &framed,
            false,
            &[&k[2]],
            &[&k[0]],
            None,
        ),
    );
    let mut tampered = good.clone();
    tampered.entries[0].outputs[0] =
        Tensor::from_f32("probabilities", vec![1, 2], &[0.35, 0.65]).unwrap();
    out.insert(
        "bundle_bad_tampered_tensor.json".into(),
        bundle_vector(
            "an honest entry's revealed tensor replaced: it no longer matches the signed commitment; the bundle is void",
            &tampered,
            false,
            &[],
            &[],
            Some("tensor_mismatch"),
        ),
    );
    let mut sig = good.clone();
    let n = sig.entries[1].receipt.len();
    sig.entries[1].receipt[n - 1] ^= 0x01;
    out.insert(
        "bundle_bad_signature.json".into(),
        bundle_vector(
            "the last signature byte of entry 1 flipped",
            &sig,
            false,
            &[],
            &[],
            Some("bad_signature"),
        ),
    );
    let mut stranger = good.clone();
    stranger.entries[1] = entry(&key(0x70), &[0.25, 0.75], JOB, 2);
    out.insert(
        "bundle_bad_unknown_key.json".into(),
        bundle_vector(
            "a witness signed by a key that is not trusted",
            &stranger,
            false,
            &[],
            &[],
            Some("unknown_key"),
        ),
    );
    let mut other = good.clone();
    other.entries[1] = entry(&k[1], &[0.25, 0.75], [0x12; 16], 2);
    out.insert(
        "bundle_bad_other_job.json".into(),
        bundle_vector(
            "a witness's receipt is for another job id",
            &other,
            false,
            &[],
            &[],
            Some("not_same_job"),
        ),
    );
    let mut twice = good.clone();
    twice.entries[1] = entry(&k[0], &[0.25, 0.75], JOB, 2);
    out.insert(
        "bundle_bad_same_signer_twice.json".into(),
        bundle_vector(
            "one node signs two entries to pose as two witnesses",
            &twice,
            false,
            &[],
            &[],
            Some("malformed"),
        ),
    );
    out
}

/// Vectors of conviction under governance (§10.6, §14.7 step 5, §17.N H3).
fn governance_vectors(out: &mut BTreeMap<String, Value>) {
    let k = nodes();
    // The same one-liar bundle, judged under the default governance, which does not grant
    // tolerance:atol=1e-3: a client cannot choose a policy the roster authority did not.
    out.insert(
        "bundle_bad_policy_not_granted.json".into(),
        governed_vector(
            "the one-liar bundle under the default governance (no field 7), which does not grant its tolerance policy: nobody is convicted",
            &Governance::default(),
            &good_bundle(),
            false,
            &[],
            &[(&k[2], "policy_not_granted")],
            None,
        ),
    );
    // Two colluders act as a client with their own quorum of 2; the roster asks for 3.
    let mut three = granting_policy();
    three.verification.insert(
        0,
        VerificationRule {
            model: Some(MODEL),
            grants: vec![Grant {
                policy: POLICY,
                scope: Scope::SameProvider,
            }],
            min_quorum: 3,
        },
    );
    out.insert(
        "bundle_bad_quorum_below_minimum.json".into(),
        governed_vector(
            "two agreeing signers (a colluding pair) against a third with quorum 2, where the roster's rule for the model sets min_quorum 3: nobody is convicted",
            &three,
            &good_bundle(),
            false,
            &[],
            &[(&k[2], "quorum_below_minimum")],
            None,
        ),
    );
    // Two witnesses on another execution provider against an honest CPU node, under exact.
    let exact = Policy::Exact;
    let other = Bundle {
        policy: exact,
        quorum: 2,
        entries: vec![
            entry_on(&k[0], &[0.25, 0.75], JOB, 1, &exact, OPENVINO),
            entry_on(&k[1], &[0.25, 0.75], JOB, 2, &exact, OPENVINO),
            entry_on(&k[2], &[0.2500001, 0.7499999], JOB, 3, &exact, CPU),
        ],
        accused: vec![k[2].public_key().key_id()],
    };
    out.insert(
        "bundle_bad_witnesses_of_other_provider.json".into(),
        governed_vector(
            "policy exact, scope same_provider (default governance): two agreeing witnesses ran on OpenVINOExecutionProvider, the accused on CPUExecutionProvider; witnesses of another provider do not count, so nobody is convicted",
            &Governance::default(),
            &other,
            false,
            &[],
            &[(&k[2], "too_few_witnesses")],
            None,
        ),
    );
    // Three CPU replicas (one lying) and one honest OpenVINO replica, under exact.
    let mixed = Bundle {
        policy: exact,
        quorum: 2,
        entries: vec![
            entry_on(&k[0], &[0.25, 0.75], JOB, 1, &exact, CPU),
            entry_on(&k[1], &[0.25, 0.75], JOB, 2, &exact, CPU),
            entry_on(&k[2], &[0.35, 0.65], JOB, 3, &exact, CPU),
            entry_on(&k[3], &[0.2500001, 0.7499999], JOB, 4, &exact, OPENVINO),
        ],
        accused: vec![k[2].public_key().key_id()],
    };
    out.insert(
        "bundle_good_same_provider_liar.json".into(),
        governed_vector(
            "policy exact, scope same_provider (default governance): two CPU witnesses agree and the third CPU node differs: it is convicted; the OpenVINO node, which no witness of its provider contradicts, is not",
            &Governance::default(),
            &mixed,
            true,
            &[&k[2]],
            &[],
            None,
        ),
    );
}

#[test]
fn verified_vectors_match_the_generator() {
    check_or_regenerate("v1/verified", &generate());
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn kids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_verified_vector_conforms() {
    let files = vector_files("v1/verified");
    assert!(files.len() >= 26, "found {}", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let v = read_json(&path);
        check_vector_header(&name, &v);
        let valid = v["expect"] == "valid";
        if name.starts_with("policy_") {
            let bytes = unhex(&v["cbor"]);
            let decoded = Policy::from_cbor(&bytes);
            assert_eq!(decoded.is_ok(), valid, "{name}: {decoded:?}");
            if let Ok(p) = decoded {
                assert_eq!(
                    p,
                    Policy::parse(v["cli"].as_str().unwrap()).unwrap(),
                    "{name}"
                );
                assert_eq!(hex::encode(p.digest().unwrap()), v["digest"], "{name}");
                assert_eq!(p.to_cbor().unwrap(), bytes, "{name}");
            }
            continue;
        }
        assert!(name.starts_with("bundle_"), "{name}");
        let trusted: Vec<PublicKey> = v["trusted_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| PublicKey::from_bytes(&unhex(k)).unwrap())
            .collect();
        let trust = |kid: &KeyId| trusted.iter().find(|k| k.key_id() == *kid).copied();
        let governance = governance_of(&v["governance"]);
        let result = check_bundle_bytes(&unhex(&v["bundle"]), &trust, &governance);
        match (&result, v["error"].as_str()) {
            (Err(e), Some(code)) => {
                assert!(!valid, "{name}");
                assert_eq!(e.code(), code, "{name}: {e}");
                assert!(kids(&v["convicted"]).is_empty(), "{name}");
            }
            (Ok(r), None) => {
                let got: Vec<String> = r.convicted.iter().map(|k| k.to_string()).collect();
                assert_eq!(got, kids(&v["convicted"]), "{name}");
                let unproven: Vec<String> = r.unproven.iter().map(|u| u.kid.to_string()).collect();
                assert_eq!(unproven, kids(&v["unproven"]), "{name}");
                let codes: Vec<String> = r.unproven.iter().map(|u| u.code.to_string()).collect();
                assert_eq!(codes, kids(&v["unproven_codes"]), "{name}");
                // A bundle "verifies" only when every accusation in it is proven.
                assert_eq!(r.unproven.is_empty(), valid, "{name}");
            }
            (r, e) => panic!("{name}: got {r:?}, vector says error {e:?}"),
        }
    }
}
