//! Encrypted inference (§16) over real QUIC with real `quorate node` processes and real TFHE
//! (tfhe-rs 1.8, default 128-bit parameters). Keys are generated once per test binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use quorate_cli::local::LocalMesh;
use quorate_crypto::tensor_digest::sha256;
use quorate_fhe::engine;
use quorate_node::fhe::client::{self, ClientKeys};
use quorate_node::fhe::job;
use quorate_node::mesh::client::MeshClient;
use quorate_protocol::fhe::{FheRequest, KeyChunk, MAX_INPUT_CIPHERTEXT_LEN};
use quorate_protocol::messages::{ErrorCode, Request, Response};
use quorate_protocol::roster::Entry;
use quorate_tests::{quorate, quorate_bin, read_json, repo_root, rt, text};

fn models() -> std::path::PathBuf {
    repo_root().join("models")
}

/// One key set for the whole binary: keygen costs seconds and ~200 MB.
fn keys() -> &'static ClientKeys {
    static KEYS: OnceLock<ClientKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let set = engine::keygen(&mut |_| {});
        let server =
            engine::to_bytes(&set.server, quorate_protocol::fhe::MAX_SERVER_KEY_LEN).unwrap();
        ClientKeys::from_parts(set.client, set.public, server)
    })
}

fn raw_features() -> Vec<f64> {
    serde_json::from_value(
        read_json(&models().join("samples/qlinear-features.json"))["features"].clone(),
    )
    .unwrap()
}

fn node<'a>(mesh: &'a LocalMesh, name: &str) -> &'a Entry {
    mesh.roster.by_name(name).unwrap()
}

#[test]
fn encrypted_ensemble_of_two_members_decrypts_to_the_exact_plaintext_score() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 2, &models(), &quorate_bin()).unwrap();
    let keys = keys();
    let known = job::known_models(&models()).unwrap();
    let members = [node(&mesh, "node-1").clone(), node(&mesh, "node-2").clone()];
    let result = rt().block_on(async {
        let client = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(180),
        )
        .unwrap();
        let r = job::run(
            &client,
            keys,
            &members,
            &members[1],
            &known,
            &raw_features(),
            &mut |l| eprintln!("{l}"),
        )
        .await
        .unwrap();
        client.close();
        r
    });
    // node-1 serves qlinear-1.json, node-2 qlinear-2.json (LocalMesh): the generator's scores.
    let expected = read_json(&models().join("samples/qlinear-expected.json"));
    let want = expected["scores"]["qlinear-1.json"].as_i64().unwrap()
        + expected["scores"]["qlinear-2.json"].as_i64().unwrap();
    assert_eq!(result.sum, want);
    assert_eq!(result.expected, Some(want), "Rust plaintext evaluation");
    assert_eq!(
        result
            .members
            .iter()
            .map(|m| m.model.as_str())
            .collect::<Vec<_>>(),
        ["qlinear-1.json", "qlinear-2.json"]
    );

    // An auditor checks every receipt and the ciphertexts they commit to.
    let out = dir.path().join("out");
    job::write(&out, &result).unwrap();
    let roster = mesh.dir.join("roster.cose");
    let admin = mesh.dir.join("admin.pub");
    let verify = |receipt: &str, blobs: &[String]| {
        let mut args = vec![
            "verify".to_string(),
            out.join("receipts").join(receipt).display().to_string(),
            "--roster".into(),
            roster.display().to_string(),
            "--admin".into(),
            admin.display().to_string(),
        ];
        for b in blobs {
            args.push("--blob".into());
            args.push(b.clone());
        }
        quorate(&args)
    };
    let blob = |name: &str, file: &str| format!("{name}={}", out.join(file).display());
    let o = verify(
        "node-1-eval.cose",
        &[
            blob("fhe:input", "input.ct"),
            blob("fhe:score", "score-node-1.ct"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = verify(
        "node-2-sum.cose",
        &[
            blob("fhe:score.0", "score-node-1.ct"),
            blob("fhe:score.1", "score-node-2.ct"),
            blob("fhe:sum", "sum.ct"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The wrong ciphertext does not match the commitment.
    let o = verify("node-1-eval.cose", &[blob("fhe:input", "sum.ct")]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("does not match its commitment"),
        "{}",
        text(&o)
    );
    // The server-key commitment is the digest the client announced.
    let payload = quorate_protocol::receipt::parse(&result.members[0].receipt)
        .unwrap()
        .payload;
    assert_eq!(
        payload.commitment("fhe:server-key").unwrap().digest,
        keys.server_digest
    );
    assert_eq!(
        payload.model_digest,
        sha256(&std::fs::read(models().join("qlinear-1.json")).unwrap())
    );
}

#[test]
fn bad_keys_and_ciphertexts_fail_cleanly_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(dir.path(), 1, &models(), &quorate_bin()).unwrap();
    let keys = keys();
    let n1 = node(&mesh, "node-1").clone();
    let model = sha256(&std::fs::read(models().join("qlinear-1.json")).unwrap());
    let q = quorate_fhe::qlinear::QLinear::parse(
        &std::fs::read(models().join("qlinear-1.json")).unwrap(),
    )
    .unwrap()
    .quantize(&raw_features())
    .unwrap();
    rt().block_on(async {
        let client = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(180),
        )
        .unwrap();
        let error_of = |r: Response| match r {
            Response::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        let input = keys.encrypt(&q).unwrap();

        // A key the node never received.
        let e = client::eval(&client, &n1, model, keys, input.clone())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("unknown server key"), "{e:#}");

        // Bytes that do not hash to the announced digest.
        let chunk = |digest, data: Vec<u8>| {
            Request::Fhe(FheRequest::KeyChunk(KeyChunk {
                key_digest: digest,
                total_len: data.len() as u64,
                offset: 0,
                data,
            }))
        };
        let e = error_of(
            client
                .request(&n1, &chunk([7; 32], vec![1; 100]))
                .await
                .unwrap(),
        );
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.contains("does not hash"), "{}", e.message);

        // A "server key" that is something else: the public key, with a correct digest.
        let not_a_key = std::fs::read(models().join("qlinear-1.json")).unwrap();
        let e = error_of(
            client
                .request(&n1, &chunk(sha256(&not_a_key), not_a_key))
                .await
                .unwrap(),
        );
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(
            e.message.contains("not a compressed server key"),
            "{}",
            e.message
        );

        // Chunks out of order.
        let e = error_of(
            client
                .request(
                    &n1,
                    &Request::Fhe(FheRequest::KeyChunk(KeyChunk {
                        key_digest: [8; 32],
                        total_len: 10,
                        offset: 5,
                        data: vec![1; 5],
                    })),
                )
                .await
                .unwrap(),
        );
        assert!(e.message.contains("offset 0"), "{}", e.message);

        // The real key, then a second upload is answered at once from the cache.
        client::upload_key(&client, &n1, keys, &mut |_, _| {})
            .await
            .unwrap();
        let mut calls = 0;
        client::upload_key(&client, &n1, keys, &mut |_, _| calls += 1)
            .await
            .unwrap();
        assert_eq!(calls, 1, "a cached key is not uploaded again");

        // Corrupted and truncated ciphertexts.
        let mut corrupt = input.clone();
        let mid = corrupt.len() / 2;
        for b in &mut corrupt[..mid.min(64)] {
            *b ^= 0x5a;
        }
        let e = client::eval(&client, &n1, model, keys, corrupt)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("does not decode"), "{e:#}");
        let e = client::eval(&client, &n1, model, keys, input[..input.len() - 7].to_vec())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("does not decode"), "{e:#}");

        // Oversized: refused by the message decoder before any tfhe code runs.
        let e = client::eval(
            &client,
            &n1,
            model,
            keys,
            vec![0; MAX_INPUT_CIPHERTEXT_LEN + 1],
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("BadRequest"), "{e:#}");

        // A ciphertext for another key: the node cannot tell (it computes noise)…
        let (other_client, other_public) = engine::client_and_public();
        let foreign = engine::encrypt_input(&other_public, &q).unwrap();
        client::eval(&client, &n1, model, keys, foreign)
            .await
            .unwrap();
        // …so the client refuses a mixed-up key set before sending anything.
        let mixed = ClientKeys::from_parts(
            keys.client.clone(),
            other_public.clone(),
            keys.server_bytes.clone(),
        );
        let e = mixed.check_consistent().unwrap_err();
        assert!(
            format!("{e:#}").contains("public.key does not belong"),
            "{e:#}"
        );
        let wrong_server =
            ClientKeys::from_parts(other_client, other_public, keys.server_bytes.clone());
        let e = wrong_server.check_consistent().unwrap_err();
        assert!(
            format!("{e:#}").contains("server.key does not belong"),
            "{e:#}"
        );
        keys.check_consistent().unwrap();

        // Unknown model.
        let e = client::eval(&client, &n1, [3; 32], keys, input.clone())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("no qlinear model"), "{e:#}");

        // The node still serves, and the right input still gives the exact score.
        let (score, _, _) = client::eval(&client, &n1, model, keys, input)
            .await
            .unwrap();
        let (sum, _, _) = client::aggregate(&client, &n1, keys, vec![score])
            .await
            .unwrap();
        let expected = read_json(&models().join("samples/qlinear-expected.json"));
        assert_eq!(
            keys.decrypt_sum(&sum, 1).unwrap(),
            expected["scores"]["qlinear-1.json"].as_i64().unwrap()
        );
        client.close();
    });
}

#[test]
fn fhe_cli_keygen_and_infer() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    let o = quorate(["fhe", "keygen", "--out", keys_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys_dir.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mesh = LocalMesh::start(
        dir.path().join("mesh").as_path(),
        2,
        &models(),
        &quorate_bin(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = quorate([
        "fhe",
        "infer",
        "--roster",
        mesh.dir.join("roster.cose").to_str().unwrap(),
        "--admin",
        mesh.dir.join("admin.pub").to_str().unwrap(),
        "--key",
        mesh.client_key_path.to_str().unwrap(),
        "--members",
        "node-1,node-2",
        "--input",
        models()
            .join("samples/qlinear-features.json")
            .to_str()
            .unwrap(),
        "--keys",
        keys_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let result = read_json(&out.join("result.json"));
    let expected = read_json(&models().join("samples/qlinear-expected.json"));
    assert_eq!(
        result["sum"].as_i64().unwrap(),
        expected["scores"]["qlinear-1.json"].as_i64().unwrap()
            + expected["scores"]["qlinear-2.json"].as_i64().unwrap()
    );
    assert_eq!(result["class"], "malignant");
}
