//! Verified jobs (§14) over real QUIC with real node processes: every misbehaviour of the
//! harness caught and the right node named, evidence bundles checked offline, forged bundles
//! never convicting an honest node, failover when a node dies mid-job, and clear failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::verified::{self, Failed, Outcome};
use quorate_protocol::evidence::{Bundle, check_bundle};
use quorate_protocol::messages::InferRequest;
use quorate_protocol::policy::Policy;
use quorate_protocol::receipt::JobKind;
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;
use quorate_protocol::verified_job::JobError;
use quorate_tests::{quorate, quorate_bin, repo_root, rt, text};

fn models() -> PathBuf {
    repo_root().join("models")
}

fn sample(scale: f32) -> Tensor {
    let t = parse_npy(
        &std::fs::read(models().join("samples/features.npy")).unwrap(),
        "features",
    )
    .unwrap();
    let v: Vec<f32> = t.to_f64_vec().iter().map(|x| *x as f32 * scale).collect();
    Tensor::from_f32("features", t.shape().to_vec(), &v).unwrap()
}

fn request(input: Tensor, policy: &Policy) -> InferRequest {
    InferRequest {
        job_id: quorate_crypto::random::bytes().unwrap(),
        nonce: quorate_crypto::random::bytes::<32>().unwrap().to_vec(),
        kind: JobKind::Infer,
        model: sha256(&std::fs::read(models().join("mlp.onnx")).unwrap()),
        inputs: vec![input],
        input_salts: Some(vec![quorate_crypto::random::bytes().unwrap()]),
        policy: Some(policy.digest().unwrap()),
        previous: None,
    }
}

fn client(mesh: &LocalMesh) -> MeshClient {
    MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Runs a verified job on the named candidates (preferred first).
fn job(
    rt: &tokio::runtime::Runtime,
    mesh: &LocalMesh,
    client: &MeshClient,
    names: &[&str],
    policy: Policy,
    replicas: usize,
    quorum: usize,
) -> Result<Outcome, Failed> {
    let candidates = names
        .iter()
        .map(|n| mesh.roster.by_name(n).unwrap().clone())
        .collect();
    rt.block_on(verified::run(
        client,
        request(sample(1.0), &policy),
        policy,
        replicas,
        quorum,
        candidates,
        &|_| {},
    ))
}

fn trust(mesh: &LocalMesh) -> impl Fn(&quorate_crypto::KeyId) -> Option<quorate_crypto::PublicKey> {
    let keys: Vec<_> = mesh.roster.entries.iter().map(|e| e.key).collect();
    move |kid| keys.iter().find(|k| k.key_id() == *kid).copied()
}

fn kid(mesh: &LocalMesh, name: &str) -> quorate_crypto::KeyId {
    mesh.roster.by_name(name).unwrap().key.key_id()
}

/// `quorate verify FILE --roster --admin --json`.
fn verify_json(mesh: &LocalMesh, file: &Path) -> (bool, serde_json::Value) {
    let o = quorate([
        "verify",
        file.to_str().unwrap(),
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!("verify printed no JSON: {}", text(&o));
    });
    (o.status.success(), v)
}

fn convicted_names(v: &serde_json::Value) -> Vec<String> {
    v["bundles"][0]["convicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["signer"].as_str().unwrap().to_string())
        .collect()
}

const BAD: [(&str, &str); 6] = [
    ("node-3", "noise:1e-3"),
    ("node-5", "sign_flip"),
    ("node-6", "stale"),
    ("node-7", "replay"),
    ("node-8", "sign_other"),
    ("node-9", "garbage"),
];

fn config(i: usize) -> String {
    let name = format!("node-{}", i + 1);
    match BAD.iter().find(|(n, _)| *n == name) {
        Some((_, mode)) => format!("test_misbehave = \"{mode}\"\n"),
        // Honest nodes differ in thread settings.
        None => format!("intra_threads = {}\n", i % 3 + 1),
    }
}

#[test]
fn every_misbehaviour_is_caught_and_bundles_name_exactly_the_guilty() {
    let dir = tempfile::tempdir().unwrap();
    let mesh =
        LocalMesh::start_with_each(dir.path(), 9, &models(), &quorate_bin(), &config).unwrap();
    let rt = rt();
    let _guard = rt.enter();
    let client = client(&mesh);
    let policy = Policy::Default;

    // stale and replay lie with what they answered before: give them a first job.
    for warm in ["node-6", "node-7"] {
        let node = mesh.roster.by_name(warm).unwrap();
        rt.block_on(client.infer(node, &request(sample(3.0), &policy)))
            .unwrap();
    }

    for (bad, mode) in BAD {
        let o = job(
            &rt,
            &mesh,
            &client,
            &["node-1", "node-2", bad, "node-4"],
            policy,
            3,
            2,
        )
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let v = &o.verdict;
        let name = |i: usize| o.name(i).to_string();
        let names = |l: &[usize]| l.iter().map(|&i| name(i)).collect::<Vec<_>>();
        match mode {
            // Signed lies: outvoted, named, and proven wrong by the bundle.
            "noise:1e-3" | "sign_flip" | "stale" => {
                assert_eq!(names(&v.agreeing), ["node-1", "node-2"], "{mode}");
                assert_eq!(names(&v.disagreeing), [bad], "{mode}");
                assert_eq!(names(&v.proven_wrong), [bad], "{mode}");
                let bundle = o.bundle().unwrap();
                let report = check_bundle(&bundle, &trust(&mesh), &mesh.roster.governance).unwrap();
                assert_eq!(report.convicted, vec![kid(&mesh, bad)], "{mode}");
                let path = dir.path().join(format!("{bad}.bundle"));
                std::fs::write(&path, bundle.encode().unwrap()).unwrap();
                let (ok, j) = verify_json(&mesh, &path);
                assert!(ok, "{mode}: {j}");
                assert_eq!(convicted_names(&j), [bad], "{mode}");
            }
            // Answers that fail the receipt check: refused, replaced, the job still verified.
            _ => {
                assert_eq!(names(&v.agreeing), ["node-1", "node-2", "node-4"], "{mode}");
                assert_eq!(v.failed.len(), 1, "{mode}");
                assert_eq!(name(v.failed[0].0), bad, "{mode}");
                assert!(o.bundle().is_none(), "{mode}");
            }
        }
    }

    // Honest replicas with different thread settings agree: nobody accused.
    let o = job(
        &rt,
        &mesh,
        &client,
        &["node-1", "node-2", "node-4"],
        policy,
        3,
        3,
    )
    .unwrap();
    assert!(o.verdict.disagreeing.is_empty() && o.bundle().is_none());

    forged_bundles_never_convict_an_honest_node(&rt, &mesh, &client, dir.path());
    cli_verified_job_writes_verdict_and_evidence(&mesh, dir.path());
}

fn forged_bundles_never_convict_an_honest_node(
    rt: &tokio::runtime::Runtime,
    mesh: &LocalMesh,
    client: &MeshClient,
    dir: &Path,
) {
    let o = job(
        rt,
        mesh,
        client,
        &["node-1", "node-2", "node-3"],
        Policy::Default,
        3,
        2,
    )
    .unwrap();
    let good = o.bundle().unwrap();
    let write = |name: &str, b: &Bundle| {
        let p = dir.join(name);
        std::fs::write(&p, b.encode().unwrap()).unwrap();
        p
    };
    // Accusing an honest node: not proven, verify fails, only the guilty one is convicted.
    let mut accuse = good.clone();
    accuse.accused = vec![kid(mesh, "node-1")];
    // (Recognised by its content type, whatever the file is called.)
    let (ok, j) = verify_json(mesh, &write("accuse.cbor", &accuse));
    assert!(!ok);
    assert_eq!(convicted_names(&j), ["node-3"]);
    assert_eq!(j["bundles"][0]["unproven"][0]["signer"], "node-1");
    // Dropping witnesses: one honest node against the liar convicts nobody.
    let mut few = good.clone();
    few.entries.remove(1);
    few.accused = vec![kid(mesh, "node-1")];
    let (ok, j) = verify_json(mesh, &write("few.bundle", &few));
    assert!(!ok);
    assert!(convicted_names(&j).is_empty());
    // Swapping the liar's tensors into an honest entry: the commitment check voids it all.
    let mut swap = good.clone();
    swap.entries[0].outputs = good.entries[2].outputs.clone();
    let (ok, j) = verify_json(mesh, &write("swap.bundle", &swap));
    assert!(!ok);
    assert!(
        j["bundles"][0]["error"]
            .as_str()
            .unwrap()
            .contains("do not match")
    );
    assert!(convicted_names(&j).is_empty());
    // A receipt altered after signing voids it too.
    let mut sig = good.clone();
    let n = sig.entries[1].receipt.len();
    sig.entries[1].receipt[n - 1] ^= 1;
    let (ok, j) = verify_json(mesh, &write("sig.bundle", &sig));
    assert!(!ok);
    assert!(
        j["bundles"][0]["error"]
            .as_str()
            .unwrap()
            .contains("bad signature")
    );
    // Honest replicas only (their tensors within tolerance): nobody can be convicted.
    let honest = job(
        rt,
        mesh,
        client,
        &["node-1", "node-2", "node-4"],
        Policy::Default,
        3,
        2,
    )
    .unwrap();
    let mut within = Bundle {
        policy: Policy::Default,
        quorum: 2,
        entries: Vec::new(),
        accused: vec![kid(mesh, "node-4")],
    };
    for a in honest.answers.iter().flatten() {
        within
            .entries
            .push(quorate_protocol::evidence::BundleEntry {
                receipt: a.response.receipt.clone(),
                outputs: a.response.outputs.clone(),
                salts: a.response.output_salts.clone(),
            });
    }
    let (ok, j) = verify_json(mesh, &write("within.bundle", &within));
    assert!(!ok);
    assert!(convicted_names(&j).is_empty());
}

fn cli_verified_job_writes_verdict_and_evidence(mesh: &LocalMesh, dir: &Path) {
    let out = dir.join("cli");
    // Idle nodes are equally loaded: the client takes node-1, node-2, node-3 in roster order.
    let o = quorate([
        "infer",
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
        "--key",
        mesh.client_key_path.to_str().unwrap(),
        "--model",
        "mlp",
        "--input",
        models().join("samples/features.json").to_str().unwrap(),
        "--replicas",
        "3",
        // The float32 row of `default` (atol 1e-5, rtol 1e-4); a tolerance policy would be
        // refused: the default governance grants only exact and default (§10.6).
        "--policy",
        "default",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("CAUGHT    node-3"), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(v["proven_wrong"][0]["name"], "node-3", "{v}");
    assert_eq!(v["agreeing"], serde_json::json!(["node-1", "node-2"]));
    let bundle = PathBuf::from(v["evidence"].as_str().unwrap());
    assert!(bundle.starts_with(out.join("evidence")));
    for r in ["node-1", "node-2", "node-3"] {
        assert!(out.join("receipts").join(format!("{r}.cose")).is_file());
    }
    // The whole output folder verifies: receipts and the bundle in one call.
    let o = quorate([
        "verify",
        out.to_str().unwrap(),
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PROVEN WRONG node-3"), "{}", text(&o));
}

#[test]
fn failover_replaces_a_node_killed_mid_job_and_quorum_failures_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start_with_each(dir.path(), 4, &models(), &quorate_bin(), &|i| {
        if i == 0 {
            "test_delay_ms = 30000\n".into()
        } else {
            String::new()
        }
    })
    .unwrap();
    let names = ["node-1", "node-2", "node-3", "node-4"];
    let candidates: Vec<_> = names
        .iter()
        .map(|n| mesh.roster.by_name(n).unwrap().clone())
        .collect();
    let slow = candidates[0].clone();
    let running = {
        let key_path = mesh.client_key_path.clone();
        let roster = mesh.roster.clone();
        let candidates = candidates.clone();
        std::thread::spawn(move || {
            let key = quorate_node::files::load_secret_key(&key_path).unwrap();
            let rt = rt();
            let _guard = rt.enter();
            let client = MeshClient::new(&key, roster, Duration::from_secs(60)).unwrap();
            let policy = Policy::Exact;
            rt.block_on(verified::run(
                &client,
                request(sample(1.0), &policy),
                policy,
                3,
                2,
                candidates,
                &|_| {},
            ))
        })
    };
    // Kill node-1 once it is computing this job.
    let rt = rt();
    let _guard = rt.enter();
    let watcher = client(&mesh);
    rt.block_on(async {
        loop {
            if watcher.health(&slow).await.unwrap().in_flight > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    mesh.kill("node-1").unwrap();
    let o = running.join().unwrap().unwrap();
    assert_eq!(o.verdict.failed.len(), 1);
    assert_eq!(o.name(o.verdict.failed[0].0), "node-1");
    assert_eq!(o.verdict.agreeing, vec![1, 2, 3]);

    // No replacement left: the job fails with a clear error and accepts nothing.
    let e = job(&rt, &mesh, &watcher, &names[..3], Policy::Exact, 3, 3)
        .err()
        .unwrap();
    assert!(
        matches!(e.error, JobError::NoQuorum { quorum: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("quorum not reached"), "{e}");
    assert!(e.to_string().contains("node-1"), "{e}");
    // More replicas than live nodes serving the model.
    let o = quorate([
        "infer",
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
        "--key",
        mesh.client_key_path.to_str().unwrap(),
        "--model",
        "mlp",
        "--input",
        models().join("samples/features.json").to_str().unwrap(),
        "--replicas",
        "4",
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--timeout",
        "5",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("4 replicas needed but only 3 reachable nodes"),
        "{}",
        text(&o)
    );
}

#[test]
fn poisoning_harness_small_run_detects_everything_without_false_positives() {
    let o = quorate([
        "bench",
        "poisoning",
        "--noise",
        "1e-7,1e-2",
        "--activation-noise",
        "1e-7,1e-2",
        "--trials",
        "3",
        "--honest-runs",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    for r in rows {
        assert_eq!(r["detected_above"], r["above_tolerance"], "{r}");
        assert_eq!(r["honest_accused"], 0, "{r}");
    }
    // Noise far below the tolerance is accepted as honest variation; far above it is caught.
    assert_eq!(rows[0]["above_tolerance"], 0);
    assert_eq!(rows[1]["above_tolerance"], 3);
    // The same for noise on the intermediate activation h2 (stage 2 of a split mlp).
    assert_eq!(rows[7]["mode"], "act. noise:1e-7");
    assert_eq!(rows[7]["above_tolerance"], 0);
    assert_eq!(rows[8]["above_tolerance"], 3);
    assert_eq!(rows[8]["detected_above"], 3);
    assert_eq!(v["honest_false_positives"], 0);
}

/// §12.6: a node at its slot limit answers `Busy` and ran nothing; the client waits for it
/// instead of counting it failed. Twelve verified jobs needing all three slow nodes at once
/// (four slots each, 40 ms a job) are all accepted, with every node agreeing.
#[test]
fn busy_nodes_are_waited_for_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start_with(
        dir.path(),
        3,
        &models(),
        &quorate_bin(),
        "test_delay_ms = 40\n",
    )
    .unwrap();
    let rt = rt();
    let _guard = rt.enter();
    let client = client(&mesh);
    let candidates: Vec<_> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|n| mesh.roster.by_name(n).unwrap().clone())
        .collect();
    let jobs = (0..12).map(|_| {
        let policy = Policy::Default;
        verified::run(
            &client,
            request(sample(1.0), &policy),
            policy,
            3,
            3,
            candidates.clone(),
            &|_| {},
        )
    });
    let outcomes = rt.block_on(futures_util::future::join_all(jobs));
    for (k, o) in outcomes.into_iter().enumerate() {
        let o = o.unwrap_or_else(|e| panic!("job {k} failed: {e}"));
        assert!(o.accepted().is_some(), "job {k}: {:?}", o.verdict);
        assert_eq!(o.verdict.agreeing.len(), 3, "job {k}: {:?}", o.verdict);
    }
    client.close();
}
