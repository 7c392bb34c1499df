//! The mesh over real QUIC on loopback, with every node a separate `quorate node` process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quorate_cli::local::LocalMesh;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::files::load_secret_key;
use quorate_node::mesh::client::{MeshClient, address_of};
use quorate_protocol::messages::{ErrorCode, InferRequest, Request, Response};
use quorate_protocol::receipt::JobKind;
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;
use quorate_tests::{quorate, quorate_bin, repo_root, rt, text};
use quorate_transport::{PinnedKeys, TlsIdentity, TransportSettings, bind_client, bind_server};

fn models() -> std::path::PathBuf {
    repo_root().join("models")
}

fn sample() -> Tensor {
    parse_npy(
        &std::fs::read(models().join("samples/features.npy")).unwrap(),
        "features",
    )
    .unwrap()
}

fn mlp() -> [u8; 32] {
    sha256(&std::fs::read(models().join("mlp.onnx")).unwrap())
}

fn request(model: [u8; 32], input: Tensor) -> InferRequest {
    InferRequest {
        job_id: quorate_crypto::random::bytes().unwrap(),
        nonce: vec![9; 32],
        kind: JobKind::Infer,
        model,
        inputs: vec![input],
        input_salts: Some(vec![[3; 32]]),
        policy: None,
        previous: None,
    }
}

fn node<'a>(mesh: &'a LocalMesh, name: &str) -> &'a Entry {
    mesh.roster.by_name(name).unwrap()
}

/// Runs `quorate infer` with the mesh's admin key and client key.
fn infer_cli(
    mesh: &LocalMesh,
    roster: &Path,
    model: &str,
    input: &str,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args: Vec<String> = [
        "infer",
        "--roster",
        path_str(roster),
        "--admin",
        path_str(&mesh.dir.join("admin.pub")),
        "--key",
        path_str(&mesh.client_key_path),
        "--model",
        model,
        "--input",
        path_str(&models().join("samples").join(input)),
        "--out",
        path_str(out),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    quorate(args)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn infer_cli_job_succeeds_and_audit_log_verifies_after_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start(dir.path(), 2, &models(), &quorate_bin()).unwrap();
    let out = dir.path().join("out");
    let roster = dir.path().join("roster.cose");
    let o = infer_cli(&mesh, &roster, "mlp", "features.json", &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("receipt.cose").is_file());
    let o = infer_cli(
        &mesh,
        &roster,
        "hospital-2",
        "features.npy",
        &dir.path().join("out2"),
        &["--node", "node-2"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // SIGTERM: the node exits cleanly; its audit log holds every receipt it signed.
    mesh.stop_all().unwrap();
    for (_, child) in &mut mesh.nodes {
        assert!(child.wait().unwrap().success());
    }
    let v = quorate([
        "verify",
        mesh.audit_of("node-1").to_str().unwrap(),
        mesh.audit_of("node-2").to_str().unwrap(),
        out.join("receipt.cose").to_str().unwrap(),
        "--roster",
        dir.path().join("roster.cose").to_str().unwrap(),
        "--admin",
        dir.path().join("admin.pub").to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        text(&v).contains("3 of 3 receipts verified"),
        "{}",
        text(&v)
    );
}

#[test]
fn strangers_and_impostors_are_refused_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 2, &models(), &quorate_bin()).unwrap();
    rt().block_on(async {
        // A client whose key is not in the nodes' roster.
        let stranger = SecretKey::generate().unwrap();
        let mut roster = mesh.roster.clone();
        roster.entries.push(Entry {
            name: "x".into(),
            key: stranger.public_key(),
            role: Role::Client,
            addresses: vec![],
            models: vec![],
            providers: vec![],
        });
        let c = MeshClient::new(&stranger, roster, Duration::from_secs(10)).unwrap();
        let err = c.health(node(&mesh, "node-1")).await.unwrap_err();
        assert!(format!("{err:#}").contains("refused"), "{err:#}");

        // A "node-2" that answers at node-1's address proves node-1's key: the client refuses.
        let mut roster = mesh.roster.clone();
        let n1_addr = node(&mesh, "node-1").addresses.clone();
        roster
            .entries
            .iter_mut()
            .find(|e| e.name == "node-2")
            .unwrap()
            .addresses = n1_addr;
        let c = MeshClient::new(&mesh.client_key, roster, Duration::from_secs(10)).unwrap();
        let impostor = c.roster.by_name("node-2").unwrap().clone();
        let err = c.health(&impostor).await.unwrap_err();
        assert!(format!("{err:#}").contains("expected"), "{err:#}");
        // The genuine node still answers.
        let c = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(c.health(node(&mesh, "node-1")).await.is_ok());
    });
}

#[test]
fn expired_and_foreign_rosters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let mut expired: Roster = mesh.roster.clone();
    expired.issued_at = 1_000;
    expired.expires_at = 2_000;
    let expired_path = dir.path().join("expired.cose");
    std::fs::write(&expired_path, expired.sign(&admin).unwrap()).unwrap();
    let foreign = mesh.roster.sign(&SecretKey::generate().unwrap()).unwrap();
    let foreign_path = dir.path().join("foreign.cose");
    std::fs::write(&foreign_path, foreign).unwrap();
    for (path, reason) in [
        (&expired_path, "expired"),
        (&foreign_path, "not signed by the trusted roster authority"),
    ] {
        // The client refuses it.
        let o = infer_cli(
            &mesh,
            path,
            "mlp",
            "features.npy",
            &dir.path().join("o"),
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(reason), "{}", text(&o));
        // A node refuses to start with it.
        let cfg = dir.path().join("nodes/node-1/node.toml");
        let text_cfg = std::fs::read_to_string(&cfg).unwrap();
        let roster_line = text_cfg
            .lines()
            .find(|l| l.starts_with("roster ="))
            .unwrap();
        let bad_cfg = dir.path().join("bad.toml");
        let bad: Vec<String> = text_cfg
            .lines()
            .map(|l| match l {
                l if l == roster_line => format!("roster = \"{}\"", path.display()),
                l if l.starts_with("listen =") => "listen = \"127.0.0.1:0\"".to_string(),
                l if l.starts_with("models =") => format!(
                    "models = \"{}\"",
                    dir.path().join("nodes/node-1/models").display()
                ),
                l if l.starts_with("audit_log =") => {
                    format!("audit_log = \"{}\"", dir.path().join("bad.qlog").display())
                }
                l => l.to_string(),
            })
            .collect();
        std::fs::write(&bad_cfg, bad.join("\n")).unwrap();
        let o = quorate(["node", "--config", bad_cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(reason), "{}", text(&o));
    }
}

#[test]
fn a_tampered_response_is_caught_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let n1 = node(&mesh, "node-1").clone();
    let n1_key = load_secret_key(&dir.path().join("keys/node-1.key")).unwrap();
    rt().block_on(async {
        // A man in the middle holding node-1's key (the worst case: a compromised node) forwards
        // the job to the real node-1 and changes the output on the way back.
        let upstream = bind_client(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(TlsIdentity::from_secret_key(&mesh.client_key).unwrap()),
            TransportSettings::default(),
        )
        .unwrap();
        let pinned = PinnedKeys::from_keys(mesh.roster.entries.iter().map(|e| e.key));
        let proxy = bind_server(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(TlsIdentity::from_secret_key(&n1_key).unwrap()),
            pinned,
            TransportSettings::default(),
        )
        .unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let real = address_of(&n1).unwrap();
        let n1_pub = n1.key;
        let serving = {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                proxy
                    .serve(move |_, bytes| {
                        let upstream = upstream.clone();
                        async move {
                            let conn = upstream.connect(real, &n1_pub).await.unwrap();
                            let answer =
                                conn.request(&bytes, Duration::from_secs(10)).await.unwrap();
                            match Response::decode(&answer).unwrap() {
                                Response::Infer(mut r) => {
                                    let flipped = Tensor::from_f32(
                                        "probabilities",
                                        vec![1, 2],
                                        &[0.01, 0.99],
                                    )
                                    .unwrap();
                                    r.outputs[0] = flipped;
                                    Response::Infer(r).encode().unwrap()
                                }
                                other => other.encode().unwrap(),
                            }
                        }
                    })
                    .await
            })
        };
        let mut roster = mesh.roster.clone();
        roster
            .entries
            .iter_mut()
            .find(|e| e.name == "node-1")
            .unwrap()
            .addresses = vec![proxy_addr.to_string()];
        let c = MeshClient::new(&mesh.client_key, roster.clone(), Duration::from_secs(10)).unwrap();
        let err = c
            .infer(roster.by_name("node-1").unwrap(), &request(mlp(), sample()))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("output commitments"), "{err:#}");
        // Without tampering the same path verifies (the proxy itself is not the problem).
        let direct = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(direct.infer(&n1, &request(mlp(), sample())).await.is_ok());
        serving.abort();
    });
}

#[test]
fn a_node_killed_mid_request_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start_with(
        dir.path(),
        1,
        &models(),
        &quorate_bin(),
        "test_delay_ms = 3000\n",
    )
    .unwrap();
    let n1 = node(&mesh, "node-1").clone();
    let runtime = rt();
    let _entered = runtime.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(20),
    )
    .unwrap();
    let pending = runtime.spawn(async move {
        client
            .infer(&n1, &request(mlp(), sample()))
            .await
            .map(|_| ())
    });
    // The node has the request (it waits 3 s before answering); now it crashes.
    std::thread::sleep(Duration::from_millis(800));
    mesh.kill("node-1").unwrap();
    let err = runtime.block_on(pending).unwrap().unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("node-1"), "{msg}");
    assert!(
        !msg.contains("did not answer within"),
        "the loss should be noticed, not waited out: {msg}"
    );
}

#[test]
fn bad_requests_never_take_a_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let n1 = node(&mesh, "node-1").clone();
    rt().block_on(async {
        let ep = bind_client(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(TlsIdentity::from_secret_key(&mesh.client_key).unwrap()),
            TransportSettings::default(),
        )
        .unwrap();
        let conn = ep.connect(address_of(&n1).unwrap(), &n1.key).await.unwrap();
        let valid = Request::Infer(request(mlp(), sample())).encode().unwrap();
        let wrong_shape = Request::Infer(request(
            mlp(),
            Tensor::from_f32("features", vec![1, 3], &[1.0, 2.0, 3.0]).unwrap(),
        ))
        .encode()
        .unwrap();
        let wrong_type = Request::Infer(request(
            mlp(),
            Tensor::new(
                "features",
                quorate_protocol::tensor::DType::I64,
                vec![1, 30],
                vec![0; 240],
            )
            .unwrap(),
        ))
        .encode()
        .unwrap();
        let wrong_model = Request::Infer(request([7; 32], sample())).encode().unwrap();
        let huge = Request::Infer(request(
            mlp(),
            Tensor::new(
                "features",
                quorate_protocol::tensor::DType::U8,
                vec![1, 1_100_000],
                vec![0; 1_100_000],
            )
            .unwrap(),
        ))
        .encode()
        .unwrap();
        let bad: Vec<(Vec<u8>, Option<ErrorCode>)> = vec![
            (b"garbage".to_vec(), Some(ErrorCode::BadRequest)),
            (
                valid[..valid.len() / 2].to_vec(),
                Some(ErrorCode::BadRequest),
            ),
            (vec![], Some(ErrorCode::BadRequest)),
            (wrong_shape, Some(ErrorCode::InvalidInput)),
            (wrong_type, Some(ErrorCode::InvalidInput)),
            (wrong_model, Some(ErrorCode::UnknownModel)),
            (huge, Some(ErrorCode::TooLarge)),
            (vec![0u8; 5 << 20], None), // over the node's frame limit: the stream is refused
        ];
        for (i, (bytes, code)) in bad.into_iter().enumerate() {
            let answer = conn.request(&bytes, Duration::from_secs(10)).await;
            match (code, answer) {
                (Some(code), Ok(a)) => match Response::decode(&a).unwrap() {
                    Response::Error(e) => assert_eq!(e.code, code, "case {i}: {e}"),
                    other => panic!("case {i}: {other:?}"),
                },
                (None, Err(_)) => {}
                (c, a) => panic!("case {i}: expected {c:?}, got {a:?}"),
            }
            // Every valid request in between is answered.
            let answer = conn.request(&valid, Duration::from_secs(10)).await.unwrap();
            assert!(
                matches!(Response::decode(&answer).unwrap(), Response::Infer(_)),
                "valid request after case {i}"
            );
        }
    });
}

/// `quorate infer --inputs DIR`: one job per input file, several in flight on one connection;
/// each result is written under its input's name, matches the model run locally on that
/// input, and its receipt verifies alone. A bad file stops the run before anything is sent,
/// and the flags that make no sense with a folder are refused.
#[test]
fn infer_over_a_folder_writes_each_checked_result_under_its_input_name() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let inputs = dir.path().join("patients");
    std::fs::create_dir_all(&inputs).unwrap();
    let base: Vec<f32> = sample()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut sent = Vec::new();
    for i in 0..12 {
        let x: Vec<f32> = base.iter().map(|v| v * (0.5 + i as f32 * 0.1)).collect();
        let t = Tensor::from_f32("features", vec![1, 30], &x).unwrap();
        let doc =
            quorate_protocol::tensor_file::salted_tensors_json(std::slice::from_ref(&t), None);
        let name = format!("p{i:02}");
        std::fs::write(inputs.join(format!("{name}.json")), doc.to_string()).unwrap();
        sent.push((name, t));
    }
    // One .npy among them, and a file that is not an input.
    std::fs::copy(
        models().join("samples/features.npy"),
        inputs.join("p12.npy"),
    )
    .unwrap();
    sent.push(("p12".into(), sample()));
    std::fs::write(inputs.join("notes.txt"), "not an input").unwrap();

    let admin = dir.path().join("admin.pub");
    let roster = dir.path().join("roster.cose");
    let mesh_args = [
        "--roster",
        path_str(&roster),
        "--admin",
        path_str(&admin),
        "--key",
        path_str(&mesh.client_key_path),
    ];
    let many = |folder: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["infer"];
        args.extend(mesh_args);
        args.extend([
            "--model",
            "mlp",
            "--inputs",
            path_str(folder),
            "--out",
            path_str(out),
        ]);
        args.extend(extra);
        quorate(args)
    };
    let out = dir.path().join("out");
    let o = many(&inputs, &out, &["--concurrency", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ran       13 of 13 jobs"), "{}", text(&o));

    let local = quorate_runtime::LoadedModel::from_file(&models().join("mlp.onnx"), 1).unwrap();
    let read = |p: std::path::PathBuf| {
        quorate_protocol::tensor_file::parse_any(&std::fs::read(&p).unwrap(), "features")
            .unwrap()
            .remove(0)
    };
    for (name, t) in &sent {
        let input = read(out.join("inputs").join(format!("{name}.json")));
        assert_eq!(input.tensor.data(), t.data(), "{name}: its own input");
        assert!(input.salt.is_some(), "{name}: the input's salt is kept");
        let output = read(out.join("outputs").join(format!("{name}.json")));
        let expected = local.run([t]).unwrap().remove(0);
        assert_eq!(
            output.tensor.data(),
            expected.data(),
            "{name}: its own result"
        );
        assert!(out.join("receipts").join(format!("{name}.cose")).is_file());
    }
    assert_eq!(std::fs::read_dir(out.join("receipts")).unwrap().count(), 13);
    let v = quorate([
        "verify",
        path_str(&out.join("receipts")),
        "--roster",
        path_str(&roster),
        "--admin",
        path_str(&admin),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        text(&v).contains("13 of 13 receipts verified"),
        "{}",
        text(&v)
    );

    // A file that does not parse: refused by name before any job is sent.
    std::fs::write(inputs.join("p05.json"), "{\"tensors\": [").unwrap();
    let out2 = dir.path().join("out2");
    let o = many(&inputs, &out2, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("p05.json"), "{}", text(&o));
    assert!(!out2.exists(), "nothing written");

    // A job the node refuses (an input of the wrong shape) is named; the others are written.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    let wrong = Tensor::from_f32("features", vec![1, 29], &base[..29]).unwrap();
    let bad_doc = quorate_protocol::tensor_file::salted_tensors_json(&[wrong], None).to_string();
    for (name, _) in &sent[..3] {
        std::fs::copy(
            inputs.join(format!("{name}.json")),
            mixed.join(format!("{name}.json")),
        )
        .unwrap();
    }
    std::fs::write(mixed.join("short.json"), &bad_doc).unwrap();
    let out3 = dir.path().join("out3");
    let o = many(&mixed, &out3, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ran       3 of 4 jobs"), "{}", text(&o));
    assert!(text(&o).contains("failed    short: "), "{}", text(&o));
    assert_eq!(std::fs::read_dir(out3.join("receipts")).unwrap().count(), 3);
    assert!(!out3.join("receipts/short.cose").exists());

    // After ten failures no further job is sent, and the run says how many were not.
    let hopeless = dir.path().join("hopeless");
    std::fs::create_dir_all(&hopeless).unwrap();
    for i in 0..12 {
        std::fs::write(hopeless.join(format!("h{i:02}.json")), &bad_doc).unwrap();
    }
    let o = many(&hopeless, &dir.path().join("out4"), &["--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ran       0 of 12 jobs"), "{}", text(&o));
    assert!(text(&o).contains("not sent  2 jobs"), "{}", text(&o));

    // A folder cannot be combined with replicas or with waiting for the log.
    for extra in [&["--replicas", "3"][..], &["--wait-for-log"][..]] {
        let o = many(&inputs, &out2, extra);
        assert!(!o.status.success());
        assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
    }
}
