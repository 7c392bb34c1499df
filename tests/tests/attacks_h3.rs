//! Finding H3 (issue #13): an honest node could be convicted. The client chose the policy and
//! the quorum, and conviction ignored the receipts' provider and runtime, so two witnesses
//! on another execution provider (or a colluding pair acting as a client with its own quorum
//! of 2) could prove an honest node "wrong". Each test performs the attack; on the code
//! before mesh governance (§10.6) each one convicted the honest node or ran the job.
//!
//! Rule (§14.7 step 5, §17 "Conviction under governance (H3)"): the roster grants policies
//! and a minimum quorum per model; nodes refuse other policies; a bundle convicts only under
//! a granted policy and quorum, and only with witnesses the grant's scope admits against the
//! accused (for `same_provider`: equal provider and runtime strings).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_crypto::{KeyId, PublicKey, SecretKey};
use quorate_node::files::load_secret_key;
use quorate_node::mesh::client::MeshClient;
use quorate_protocol::evidence::{Bundle, BundleEntry, check_bundle};
use quorate_protocol::governance::{Governance, Grant, Scope, VerificationRule};
use quorate_protocol::messages::{ErrorCode, InferRequest, Request, Response};
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::{Commitment, JobKind, ReceiptPayload};
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_tests::{quorate, quorate_bin, repo_root, text};

const CPU: &str = "CPUExecutionProvider";
const OPENVINO: &str = "OpenVINOExecutionProvider:CPU:bf16";
const RUNTIME: &str = "onnxruntime 1.31.1";
const MODEL: Digest32 = [0x33; 32];

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn kid(k: &SecretKey) -> KeyId {
    k.public_key().key_id()
}

fn f32_out(values: &[f32]) -> Tensor {
    Tensor::from_f32("probabilities", vec![1, values.len() as u64], values).unwrap()
}

fn label(class: i64) -> Tensor {
    Tensor::new("label", DType::I64, vec![1], class.to_le_bytes().to_vec()).unwrap()
}

/// A replica's receipt for the shared job, signed by `signer` that ran on `provider`.
fn entry(signer: &SecretKey, policy: &Policy, provider: &str, out: Tensor, i: u8) -> BundleEntry {
    let input = Tensor::from_f32("features", vec![1, 2], &[0.5, -1.5]).unwrap();
    let salt = [i; 32];
    let payload = ReceiptPayload {
        job_id: [0x11; 16],
        nonce: vec![0x22; 32],
        kind: JobKind::Infer,
        model_digest: MODEL,
        inputs: vec![Commitment::to(&input, Some(&[0x44; 32]))],
        outputs: vec![Commitment::to(&out, Some(&salt))],
        provider: provider.into(),
        runtime: RUNTIME.into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: Some(policy.digest().unwrap()),
    };
    BundleEntry {
        receipt: payload.sign(signer).unwrap(),
        outputs: vec![out],
        salts: Some(vec![salt]),
    }
}

fn trust_of(keys: &[&SecretKey]) -> impl Fn(&KeyId) -> Option<PublicKey> + use<> {
    let keys: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
    move |kid| keys.iter().find(|k| k.key_id() == *kid).copied()
}

/// The default governance with one rule for [`MODEL`]: `grants`, and `min_quorum`.
fn governance_for_model(grants: Vec<Grant>, min_quorum: u64) -> Governance {
    let mut g = Governance::default();
    g.verification.insert(
        0,
        VerificationRule {
            model: Some(MODEL),
            grants,
            min_quorum,
        },
    );
    g
}

/// What the checker applied before governance: the bundle's own policy and quorum, any
/// signer a witness. Under it each attack below convicts the honest node, which shows the
/// bundles are real attacks (valid signatures, commitments, one job) and that only the
/// governance stops them; it is also what a roster granting `any_provider` to an
/// uncalibrated policy would bring back (§17.10, what remains (c)).
fn anything_goes(policy: Policy) -> Governance {
    governance_for_model(
        vec![Grant {
            policy,
            scope: Scope::AnyProvider,
        }],
        2,
    )
}

#[test]
fn attack_h3_exact_policy_convicts_honest_node_on_other_provider() {
    let (a, b, honest) = (key(0x61), key(0x62), key(0x63));
    let exact = Policy::Exact;
    // Two nodes on OpenVINO (bf16) agree bit for bit; the honest CPU node differs in the
    // last bits, as honest runs on another provider do.
    let bundle = Bundle {
        policy: exact,
        quorum: 2,
        entries: vec![
            entry(&a, &exact, OPENVINO, f32_out(&[0.25, 0.75]), 1),
            entry(&b, &exact, OPENVINO, f32_out(&[0.25, 0.75]), 2),
            entry(
                &honest,
                &exact,
                CPU,
                f32_out(&[0.250_000_1, 0.749_999_9]),
                3,
            ),
        ],
        accused: vec![kid(&honest)],
    };
    let trust = trust_of(&[&a, &b, &honest]);
    let before = check_bundle(&bundle, &trust, &anything_goes(exact)).unwrap();
    assert_eq!(before.convicted, vec![kid(&honest)]);
    let r = check_bundle(&bundle, &trust, &Governance::default()).unwrap();
    assert!(r.convicted.is_empty(), "honest node convicted: {r:?}");
    assert_eq!(r.unproven.len(), 1);
    assert_eq!(r.unproven[0].kid, kid(&honest));
    assert_eq!(r.unproven[0].code, "too_few_witnesses");
    assert!(
        r.unproven[0]
            .reason
            .contains("only 0 witnesses of the accused's provider"),
        "{}",
        r.unproven[0].reason
    );
    // The same holds when a tolerance of 0 is granted with scope same_provider.
    let zero = Policy::Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };
    let mut bundle0 = bundle.clone();
    bundle0.policy = zero;
    bundle0.entries = vec![
        entry(&a, &zero, OPENVINO, f32_out(&[0.25, 0.75]), 1),
        entry(&b, &zero, OPENVINO, f32_out(&[0.25, 0.75]), 2),
        entry(&honest, &zero, CPU, f32_out(&[0.250_000_1, 0.749_999_9]), 3),
    ];
    let g = governance_for_model(
        vec![Grant {
            policy: zero,
            scope: Scope::SameProvider,
        }],
        2,
    );
    let r = check_bundle(&bundle0, &trust, &g).unwrap();
    assert!(r.convicted.is_empty(), "honest node convicted: {r:?}");
}

#[test]
fn attack_h3_integer_output_near_boundary() {
    // An argmax label near a decision boundary: the CPU node says class 1, two nodes on
    // another provider say class 0. Integers are compared exactly under every policy, so
    // `default` (granted by the default governance) would have convicted the CPU node.
    let (a, b, honest) = (key(0x61), key(0x62), key(0x63));
    let p = Policy::Default;
    let bundle = Bundle {
        policy: p,
        quorum: 2,
        entries: vec![
            entry(&a, &p, OPENVINO, label(0), 1),
            entry(&b, &p, OPENVINO, label(0), 2),
            entry(&honest, &p, CPU, label(1), 3),
        ],
        accused: vec![kid(&honest)],
    };
    let trust = trust_of(&[&a, &b, &honest]);
    let before = check_bundle(&bundle, &trust, &anything_goes(p)).unwrap();
    assert_eq!(before.convicted, vec![kid(&honest)]);
    let r = check_bundle(&bundle, &trust, &Governance::default()).unwrap();
    assert!(r.convicted.is_empty(), "honest node convicted: {r:?}");
    assert_eq!(r.unproven[0].code, "too_few_witnesses");
}

#[test]
fn attack_h3_real_liar_on_same_provider_still_convicted() {
    let (a, b, liar, other) = (key(0x61), key(0x62), key(0x63), key(0x64));
    let exact = Policy::Exact;
    let bundle = Bundle {
        policy: exact,
        quorum: 2,
        entries: vec![
            entry(&a, &exact, CPU, f32_out(&[0.25, 0.75]), 1),
            entry(&b, &exact, CPU, f32_out(&[0.25, 0.75]), 2),
            entry(&liar, &exact, CPU, f32_out(&[0.35, 0.65]), 3),
            // An honest node of another provider in the same job: no witness of its provider
            // contradicts it, so it is not convicted, and it does not count against the liar.
            entry(
                &other,
                &exact,
                OPENVINO,
                f32_out(&[0.250_000_1, 0.749_999_9]),
                4,
            ),
        ],
        accused: vec![kid(&liar)],
    };
    let trust = trust_of(&[&a, &b, &liar, &other]);
    let r = check_bundle(&bundle, &trust, &Governance::default()).unwrap();
    assert_eq!(r.convicted, vec![kid(&liar)]);
    assert!(r.unproven.is_empty());
    // Under a min_quorum of 3 the two CPU witnesses are not enough...
    let g3 = governance_for_model(Governance::default().verification[0].grants.clone(), 3);
    let mut q3 = bundle.clone();
    q3.quorum = 3;
    let r = check_bundle(&q3, &trust, &g3).unwrap();
    assert!(r.convicted.is_empty());
    assert!(
        r.unproven[0]
            .reason
            .contains("only 2 witnesses of the accused's provider"),
        "{}",
        r.unproven[0].reason
    );
    // ...but with any_provider granted (a calibrated policy) the OpenVINO node's receipt
    // counts too, when it also disagrees with the liar.
    let g_any = governance_for_model(
        vec![Grant {
            policy: exact,
            scope: Scope::AnyProvider,
        }],
        3,
    );
    let mut any = q3.clone();
    any.entries[3] = entry(&other, &exact, OPENVINO, f32_out(&[0.25, 0.75]), 4);
    let r = check_bundle(&any, &trust, &g_any).unwrap();
    assert_eq!(r.convicted, vec![kid(&liar)]);
}

// ---- Offline: `quorate verify` on a colluding pair's self-made bundle ----

/// Writes `admin.pub` and a roster signed by `admin` listing `nodes` with `governance`.
fn write_roster(dir: &Path, admin: &SecretKey, nodes: &[&SecretKey], governance: Governance) {
    let entries = nodes
        .iter()
        .enumerate()
        .map(|(i, k)| Entry {
            name: format!("node-{}", i + 1),
            key: k.public_key(),
            role: Role::Node,
            addresses: vec![format!("127.0.0.1:{}", 7000 + i)],
            models: vec![MODEL],
            providers: vec!["cpu".into()],
        })
        .collect();
    let now = quorate_node::clock::unix_now();
    let roster = Roster {
        governance,
        mesh: "h3".into(),
        serial: 1,
        issued_at: now,
        expires_at: now + 3600,
        entries,
    };
    std::fs::write(dir.join("roster.cose"), roster.sign(admin).unwrap()).unwrap();
    std::fs::write(
        dir.join("admin.pub"),
        admin.public_key().to_pem().unwrap().as_bytes(),
    )
    .unwrap();
}

fn verify_bundle_json(dir: &Path, bundle: &Bundle) -> (bool, serde_json::Value) {
    let path = dir.join("self-made.bundle");
    std::fs::write(&path, bundle.encode().unwrap()).unwrap();
    let o = quorate([
        "verify",
        path.to_str().unwrap(),
        "--roster",
        dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        dir.join("admin.pub").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("verify printed no JSON: {}", text(&o)));
    (o.status.success(), v)
}

#[test]
fn attack_h3_colluding_pair_convicts_with_own_quorum_of_two() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, c1, c2, honest) = (key(0x70), key(0x61), key(0x62), key(0x63));
    // The roster grants exact for the model, but only with a quorum of 3.
    write_roster(
        dir.path(),
        &admin,
        &[&c1, &c2, &honest],
        governance_for_model(
            vec![Grant {
                policy: Policy::Exact,
                scope: Scope::SameProvider,
            }],
            3,
        ),
    );
    // The pair acts as a client: it runs the job on itself and the honest node, signs a
    // made-up output, and writes a bundle with its own quorum of 2.
    let exact = Policy::Exact;
    let bundle = Bundle {
        policy: exact,
        quorum: 2,
        entries: vec![
            entry(&c1, &exact, CPU, f32_out(&[0.9, 0.1]), 1),
            entry(&c2, &exact, CPU, f32_out(&[0.9, 0.1]), 2),
            entry(&honest, &exact, CPU, f32_out(&[0.25, 0.75]), 3),
        ],
        accused: vec![kid(&honest)],
    };
    let trust = trust_of(&[&c1, &c2, &honest]);
    let before = check_bundle(&bundle, &trust, &anything_goes(exact)).unwrap();
    assert_eq!(before.convicted, vec![kid(&honest)]);
    let (ok, v) = verify_bundle_json(dir.path(), &bundle);
    assert!(!ok, "{v}");
    let b = &v["bundles"][0];
    assert_eq!(b["convicted"], serde_json::json!([]), "{v}");
    assert_eq!(b["unproven"][0]["signer"], "node-3", "{v}");
    assert_eq!(b["unproven"][0]["code"], "quorum_below_minimum", "{v}");
    let reason = b["unproven"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("quorum below the roster minimum") && reason.contains("minimum of 3"),
        "{reason}"
    );
    assert_eq!(b["governance"]["source"], "roster", "{v}");
    assert_eq!(b["governance"]["min_quorum"], 3, "{v}");
    // Raising the quorum in the bundle does not help: there are only 2 witnesses.
    let mut q3 = bundle.clone();
    q3.quorum = 3;
    let (ok, v) = verify_bundle_json(dir.path(), &q3);
    assert!(!ok, "{v}");
    assert_eq!(v["bundles"][0]["convicted"], serde_json::json!([]), "{v}");
}

#[test]
fn attack_h3_colluding_pair_self_made_bundle_under_ungranted_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, c1, c2, honest) = (key(0x70), key(0x61), key(0x62), key(0x63));
    write_roster(
        dir.path(),
        &admin,
        &[&c1, &c2, &honest],
        Governance::default(),
    );
    // tolerance:atol=0,rtol=0 is exact under another name, with no scope from the roster:
    // the default governance does not grant it.
    let zero = Policy::Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };
    let bundle = Bundle {
        policy: zero,
        quorum: 2,
        entries: vec![
            entry(&c1, &zero, OPENVINO, f32_out(&[0.25, 0.75]), 1),
            entry(&c2, &zero, OPENVINO, f32_out(&[0.25, 0.75]), 2),
            entry(&honest, &zero, CPU, f32_out(&[0.250_000_1, 0.749_999_9]), 3),
        ],
        accused: vec![kid(&honest)],
    };
    let trust = trust_of(&[&c1, &c2, &honest]);
    let before = check_bundle(&bundle, &trust, &anything_goes(zero)).unwrap();
    assert_eq!(before.convicted, vec![kid(&honest)]);
    let (ok, v) = verify_bundle_json(dir.path(), &bundle);
    assert!(!ok, "{v}");
    let b = &v["bundles"][0];
    assert_eq!(b["convicted"], serde_json::json!([]), "{v}");
    assert_eq!(b["unproven"][0]["code"], "policy_not_granted", "{v}");
    assert!(
        b["unproven"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("policy not granted by the roster"),
        "{v}"
    );
    assert_eq!(b["governance"]["granted"], false, "{v}");
    // Given bare keys instead of the roster, the default governance applies and says so.
    let o = quorate([
        "verify",
        dir.path().join("self-made.bundle").to_str().unwrap(),
        "--trust",
        write_pub(dir.path(), &c1).to_str().unwrap(),
        "--trust",
        write_pub(dir.path(), &c2).to_str().unwrap(),
        "--trust",
        write_pub(dir.path(), &honest).to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no roster given: the default governance"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("policy not granted"), "{}", text(&o));
}

fn write_pub(dir: &Path, k: &SecretKey) -> PathBuf {
    let p = dir.join(format!("{}.pub", kid(k)));
    std::fs::write(&p, k.public_key().to_pem().unwrap()).unwrap();
    p
}

// ---- Real node processes: nodes and clients refuse what the roster does not grant ----

fn models() -> PathBuf {
    repo_root().join("models")
}

fn request(policy: Option<&Policy>) -> InferRequest {
    InferRequest {
        job_id: quorate_crypto::random::bytes().unwrap(),
        nonce: quorate_crypto::random::bytes::<32>().unwrap().to_vec(),
        kind: JobKind::Infer,
        model: sha256(&std::fs::read(models().join("mlp.onnx")).unwrap()),
        inputs: vec![
            quorate_protocol::tensor_file::parse_npy(
                &std::fs::read(models().join("samples/features.npy")).unwrap(),
                "features",
            )
            .unwrap(),
        ],
        input_salts: Some(vec![quorate_crypto::random::bytes().unwrap()]),
        policy: policy.map(|p| p.digest().unwrap()),
        previous: None,
    }
}

fn ask(
    rt: &tokio::runtime::Runtime,
    client: &MeshClient,
    node: &Entry,
    r: InferRequest,
) -> Response {
    rt.block_on(client.request(node, &Request::Infer(r)))
        .unwrap()
}

/// Waits until node-1's log holds `needle` (the node logs each roster reload).
fn wait_log(mesh: &LocalMesh, needle: &str) {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(mesh.log_of("node-1")).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node-1 did not log {needle:?}; its log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn attack_h3_node_refuses_job_with_policy_not_granted() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(20),
    )
    .unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let zero = Policy::Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };
    // A verified job under a policy the roster does not grant: refused, nothing signed.
    match ask(&rt, &client, &node, request(Some(&zero))) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::NotAllowed, "{}", e.message);
            assert!(
                e.message
                    .contains("not allowed for this model by the roster's governance"),
                "{}",
                e.message
            );
        }
        other => panic!("the node ran a job under a policy the roster does not grant: {other:?}"),
    }
    // Granted policies and plain jobs (no policy) still run.
    for p in [Some(&Policy::Exact), Some(&Policy::Default), None] {
        assert!(
            matches!(ask(&rt, &client, &node, request(p)), Response::Infer(_)),
            "{p:?}"
        );
    }
    // The roster authority grants the policy in a new roster: after the reload the node
    // runs it (the node reads the current roster's governance for every job).
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let model = request(None).model;
    let mut r2 = mesh.roster.clone();
    r2.serial = 2;
    r2.governance = Governance::default();
    r2.governance.verification.insert(
        0,
        VerificationRule {
            model: Some(model),
            grants: vec![Grant {
                policy: zero,
                scope: Scope::SameProvider,
            }],
            min_quorum: 2,
        },
    );
    let tmp = dir.path().join("roster.cose.tmp");
    std::fs::write(&tmp, r2.sign(&admin).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.path().join("roster.cose")).unwrap();
    let pid = mesh.nodes[0].1.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_log(&mesh, "roster serial 1 -> 2");
    assert!(matches!(
        ask(&rt, &client, &node, request(Some(&zero))),
        Response::Infer(_)
    ));
    // ...and now refuses `exact` on that model, which the new rule does not grant.
    match ask(&rt, &client, &node, request(Some(&Policy::Exact))) {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::NotAllowed, "{}", e.message),
        other => panic!("{other:?}"),
    }
    client.close();
    mesh.stop_all().unwrap();
}

#[test]
fn attack_h3_clients_refuse_ungranted_policy_and_small_quorum_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(dir.path(), 3, &models(), &quorate_bin()).unwrap();
    // The same mesh under a roster demanding a quorum of 3, for the client only.
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let mut strict = mesh.roster.clone();
    strict.governance.verification[0].min_quorum = 3;
    let strict_path = dir.path().join("roster-q3.cose");
    std::fs::write(&strict_path, strict.sign(&admin).unwrap()).unwrap();
    let admin_pub = dir.path().join("admin.pub");
    let input = models().join("samples/features.json");
    let infer = |roster: &Path, extra: &[&str], out: &str| {
        let out = dir.path().join(out);
        let mut args: Vec<String> = vec![
            "infer".into(),
            "--roster".into(),
            roster.display().to_string(),
            "--admin".into(),
            admin_pub.display().to_string(),
            "--key".into(),
            mesh.client_key_path.display().to_string(),
            "--model".into(),
            "mlp".into(),
            "--input".into(),
            input.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        (quorate(args), out)
    };
    let roster = dir.path().join("roster.cose");
    // A policy the default governance does not grant: refused by the client itself.
    let (o, out) = infer(
        &roster,
        &["--replicas", "3", "--policy", "tolerance:atol=0,rtol=0"],
        "tol",
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("refused before sending"), "{}", text(&o));
    assert!(
        text(&o).contains("is not allowed for this model"),
        "{}",
        text(&o)
    );
    assert!(!out.join("verdict.json").exists());
    // A quorum of 2 where the roster asks for 3.
    let (o, _) = infer(
        &strict_path,
        &["--replicas", "3", "--quorum", "2", "--policy", "exact"],
        "q2",
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("quorum 2 is below the minimum of 3 set by the roster's governance"),
        "{}",
        text(&o)
    );
    // Within the governance, the job runs.
    let (o, out) = infer(
        &strict_path,
        &["--replicas", "3", "--quorum", "3", "--policy", "exact"],
        "q3",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("verdict.json").is_file());
    // `quorate pipeline` refuses the same way, before any stage is sent.
    let o = quorate([
        "pipeline",
        "--roster",
        strict_path.to_str().unwrap(),
        "--admin",
        dir.path().join("admin.pub").to_str().unwrap(),
        "--key",
        mesh.client_key_path.to_str().unwrap(),
        "--model",
        "mlp",
        "--at",
        "h1,h2",
        "--replicas",
        "2",
        "--input",
        models().join("samples/features.npy").to_str().unwrap(),
        "--out",
        dir.path().join("pipe").to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("pipeline refused before sending")
            && text(&o).contains("below the minimum of 3"),
        "{}",
        text(&o)
    );
    let o = quorate([
        "pipeline",
        "--roster",
        roster.to_str().unwrap(),
        "--admin",
        dir.path().join("admin.pub").to_str().unwrap(),
        "--key",
        mesh.client_key_path.to_str().unwrap(),
        "--model",
        "mlp",
        "--at",
        "h1,h2",
        "--replicas",
        "2",
        "--policy",
        "tolerance:atol=0,rtol=0",
        "--input",
        models().join("samples/features.npy").to_str().unwrap(),
        "--out",
        dir.path().join("pipe2").to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("is not allowed for this model"),
        "{}",
        text(&o)
    );
    mesh.stop_all().unwrap();
}
