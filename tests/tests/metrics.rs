//! The node's metrics endpoint (§12.7) on a real node process: after a job, a refused request
//! and a health check, `GET /metrics` counts them by kind and outcome, and shows the audit
//! log's size and fsync latency and the roster's serial and time to expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use quorate_cli::local::{LocalMesh, loopback_port, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_tests::{quorate_bin, repo_root};

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample line starting with `name` (labels included).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_jobs_by_kind_and_outcome_and_show_audit_and_roster_state() {
    let port = loopback_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start_with(
        dir.path(),
        1,
        &repo_root().join("models"),
        &quorate_bin(),
        &format!("metrics_listen = \"{port}\"\n"),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(20),
    )
    .unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, mlp) = mlp_sample(&repo_root().join("models")).unwrap();
    let job = |model: [u8; 32]| fresh_request(model, vec![input.clone()], None).unwrap();
    rt.block_on(client.infer(&node, &job(mlp))).unwrap();
    rt.block_on(client.infer(&node, &job(mlp))).unwrap();
    assert!(rt.block_on(client.infer(&node, &job([7; 32]))).is_err());
    rt.block_on(client.health(&node)).unwrap();

    let response = get(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("application/openmetrics-text"),
        "{response}"
    );
    let text = &response[response.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        sample(
            text,
            "quorate_requests_total{kind=\"infer\",outcome=\"ok\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            text,
            "quorate_requests_total{kind=\"infer\",outcome=\"unknown_model\"}"
        ),
        1.0
    );
    // The client's candidate checks and the explicit one.
    assert!(
        sample(
            text,
            "quorate_requests_total{kind=\"health\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            text,
            "quorate_request_duration_seconds_count{kind=\"infer\"}"
        ),
        3.0
    );
    assert_eq!(sample(text, "quorate_audit_fsync_seconds_count"), 2.0);
    // The bytes of the log's complete records: the file also holds the zeros reserved
    // ahead of them (§12.4.3).
    let audit = std::fs::read(mesh.audit_of("node-1")).unwrap();
    let scanned = quorate_protocol::audit_log::scan(&audit).unwrap();
    assert_eq!(
        sample(text, "quorate_audit_log_bytes"),
        scanned.good_len as f64
    );
    assert!(scanned.reserved_bytes > 0);
    assert_eq!(
        scanned.good_len + scanned.reserved_bytes,
        audit.len() as u64
    );
    assert_eq!(sample(text, "quorate_roster_serial"), 1.0);
    let expiry = sample(text, "quorate_roster_expiry_seconds");
    assert!(
        (23.0 * 3600.0..=24.0 * 3600.0).contains(&expiry),
        "{expiry}"
    );
    assert_eq!(sample(text, "quorate_jobs_in_flight"), 0.0);

    let other = get(port, "/");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    client.close();
}
