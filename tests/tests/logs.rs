//! Node logs (§12.8): `log_format = "json"` writes one JSON object per line with the event's
//! level, target and message, `log_level = "debug"` adds one event per request, and no line
//! carries a secret key or anything identifying a job's data; the text form names the level
//! on each line; a format the node does not know is refused before it starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_tests::{quorate, quorate_bin, repo_root, rt, text};

#[test]
fn json_logs_are_one_object_per_line_with_a_debug_event_per_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mut mesh = LocalMesh::start_with(
        dir.path(),
        1,
        &models,
        &quorate_bin(),
        "log_format = \"json\"\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, model) = mlp_sample(&models).unwrap();
    let request = fresh_request(model, vec![input], None).unwrap();
    let (response, _) = rt().block_on(async {
        let client = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(30),
        )
        .unwrap();
        let answer = client.infer(&node, &request).await.unwrap();
        client.close();
        answer
    });
    mesh.stop_all().unwrap();

    let log = std::fs::read_to_string(mesh.log_of("node-1")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() >= 4, "{log}");
    for e in &events {
        for key in ["timestamp", "level", "target"] {
            assert!(e.get(key).is_some(), "no {key} in {e}");
        }
        assert!(e["fields"]["message"].is_string(), "no message in {e}");
    }
    let message = |m: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"].as_str().unwrap().contains(m))
            .unwrap_or_else(|| panic!("no event {m:?} in\n{log}"))
    };
    let serving = message("serving mlp.onnx");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["fields"]["node"], "node-1");
    assert_eq!(message("stopped")["fields"]["node"], "node-1");
    let answered: Vec<_> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "request answered")
        .collect();
    assert!(
        answered
            .iter()
            .any(|e| e["fields"]["kind"] == "infer" && e["fields"]["outcome"] == "ok"),
        "{log}"
    );
    assert!(answered.iter().all(|e| e["level"] == "DEBUG"), "{log}");
    assert!(answered[0]["fields"]["micros"].is_u64(), "{log}");

    // Nothing secret, nothing identifying the job's data (§12.8).
    let key_pem = std::fs::read_to_string(dir.path().join("keys/node-1.key")).unwrap();
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the node's key is in its log");
    }
    let salts = request.input_salts.as_ref().unwrap();
    for secret in [
        hex::encode(request.job_id),
        hex::encode(&request.nonce),
        hex::encode(salts[0]),
        hex::encode(&response.receipt[..32]),
    ] {
        assert!(!log.contains(&secret), "{secret} is in the log");
    }
}

#[test]
fn text_logs_name_the_level_and_unknown_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh =
        LocalMesh::start(dir.path(), 1, &repo_root().join("models"), &quorate_bin()).unwrap();
    mesh.stop_all().unwrap();
    let log = std::fs::read_to_string(mesh.log_of("node-1")).unwrap();
    let serving = log
        .lines()
        .find(|l| l.contains("serving mlp.onnx"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(serving.contains(" INFO "), "{serving}");
    assert!(serving.contains("node=node-1"), "{serving}");
    // The default level leaves out the per-request events.
    assert!(!log.contains("request answered"), "{log}");

    let config = dir.path().join("nodes/node-1/node.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    for (key, value) in [("log_format", "xml"), ("log_level", "verbose")] {
        std::fs::write(&config, format!("{good}{key} = \"{value}\"\n")).unwrap();
        let o = quorate(["node", "--check-config", config.to_str().unwrap()]);
        assert!(!o.status.success(), "{key} = {value} passed");
        assert!(
            text(&o).contains(key) || text(&o).contains(value),
            "{}",
            text(&o)
        );
    }
}

/// §12.8: lines that peers cause are rate-limited, so a stranger's handshake flood does not
/// grow the log with every attempt; the next line counts what was left out.
#[test]
fn a_handshake_flood_from_strangers_writes_a_line_a_second_not_a_line_an_attempt() {
    use quorate_transport::{TlsIdentity, TransportSettings, bind_client};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut mesh =
        LocalMesh::start(dir.path(), 1, &repo_root().join("models"), &quorate_bin()).unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let addr = quorate_node::mesh::client::address_of(&node).unwrap();
    let attempts = 60;
    let started = std::time::Instant::now();
    rt().block_on(async {
        for _ in 0..attempts {
            let stranger = quorate_crypto::SecretKey::generate().unwrap();
            let id = Arc::new(TlsIdentity::from_secret_key(&stranger).unwrap());
            let endpoint = bind_client(
                "127.0.0.1:0".parse().unwrap(),
                id,
                TransportSettings::default(),
            )
            .unwrap();
            if let Ok(conn) = endpoint.connect(addr, &node.key).await {
                assert!(
                    conn.request(b"\xa0", Duration::from_secs(5)).await.is_err(),
                    "a stranger was served"
                );
            }
            endpoint.close();
        }
    });
    let seconds = started.elapsed().as_secs() + 1;
    mesh.stop_all().unwrap();
    let log = std::fs::read_to_string(mesh.log_of("node-1")).unwrap();
    let lines = log.matches("refused connection").count() as u64;
    assert!(lines >= 1, "no refusal logged:\n{log}");
    assert!(
        lines <= seconds + 1 && lines < attempts,
        "{lines} refusal lines for {attempts} strangers in {seconds} s:\n{log}"
    );
    assert!(log.contains("left_out="), "{log}");
}
