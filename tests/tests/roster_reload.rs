//! Roster rotation and expiry while a node runs (§10.3): a real `quorate node` process on
//! loopback reloads its roster on SIGHUP or when the file changes, closes the connections of
//! revoked keys, refuses older rosters, and stops serving (without exiting) once its roster
//! expired or no longer lists it.
//!
//! Every wait is bounded; nothing measures time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_cli::local::LocalMesh;
use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;
use quorate_node::clock::unix_now;
use quorate_node::files::load_secret_key;
use quorate_node::mesh::client::address_of;
use quorate_protocol::messages::{ErrorCode, InferRequest, Request, Response};
use quorate_protocol::receipt::JobKind;
use quorate_protocol::roster::{Entry, Role, Roster};
use quorate_protocol::tensor_file::parse_npy;
use quorate_tests::{quorate_bin, repo_root, rt};
use quorate_transport::{
    MeshEndpoint, PeerConnection, TlsIdentity, TransportError, TransportSettings, bind_client,
};

/// Upper bound on any single wait; reaching it fails the test.
const BOUND: Duration = Duration::from_secs(60);
const REQ: Duration = Duration::from_secs(20);

fn models() -> std::path::PathBuf {
    repo_root().join("models")
}

fn infer_request() -> Request {
    let model = sha256(&std::fs::read(models().join("mlp.onnx")).unwrap());
    let input = parse_npy(
        &std::fs::read(models().join("samples/features.npy")).unwrap(),
        "features",
    )
    .unwrap();
    Request::Infer(InferRequest {
        job_id: quorate_crypto::random::bytes().unwrap(),
        nonce: vec![9; 32],
        kind: JobKind::Infer,
        model,
        inputs: vec![input],
        input_salts: None,
        policy: None,
        previous: None,
    })
}

fn client_entry(name: &str, key: &SecretKey) -> Entry {
    Entry {
        name: name.into(),
        key: key.public_key(),
        role: Role::Client,
        addresses: vec![],
        models: vec![],
        providers: vec![],
    }
}

/// The mesh roster with `serial`, valid from now for `valid_for` seconds, listing the node
/// entries of `base` and the clients given.
fn roster(base: &Roster, serial: u64, valid_for: u64, clients: &[Entry]) -> Roster {
    let now = unix_now();
    let mut r = base.clone();
    r.serial = serial;
    r.issued_at = now;
    r.expires_at = now + valid_for;
    r.entries.retain(|e| e.role == Role::Node);
    r.entries.extend(clients.iter().cloned());
    r
}

/// Replaces the roster file atomically (write, then rename), as an operator's tooling would.
fn install(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("roster.cose.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("roster.cose")).unwrap();
}

fn sighup(mesh: &LocalMesh) {
    let pid = mesh.nodes[0].1.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the node's log holds `needle` more often than `before` times; returns the log.
fn wait_log(mesh: &LocalMesh, needle: &str, before: usize) -> String {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(mesh.log_of("node-1")).unwrap_or_default();
        if log.matches(needle).count() > before {
            return log;
        }
        assert!(
            start.elapsed() < BOUND,
            "the node did not log {needle:?}; its log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count_in_log(mesh: &LocalMesh, needle: &str) -> usize {
    std::fs::read_to_string(mesh.log_of("node-1"))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

fn assert_running(mesh: &mut LocalMesh) {
    assert!(
        matches!(mesh.nodes[0].1.try_wait(), Ok(None)),
        "the node exited"
    );
}

fn endpoint(key: &SecretKey) -> MeshEndpoint {
    bind_client(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(TlsIdentity::from_secret_key(key).unwrap()),
        TransportSettings::default(),
    )
    .unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("finished within bound")
}

async fn connect(ep: &MeshEndpoint, node: &Entry) -> Result<PeerConnection, TransportError> {
    bounded(ep.connect(address_of(node).unwrap(), &node.key)).await
}

async fn ask(conn: &PeerConnection, request: &Request) -> Result<Response, TransportError> {
    let answer = bounded(conn.request(&request.encode().unwrap(), REQ)).await?;
    Ok(Response::decode(&answer).unwrap())
}

/// Connects and sends a health request: the outcome of a new connection.
async fn fresh_health(ep: &MeshEndpoint, node: &Entry) -> Result<Response, TransportError> {
    let conn = connect(ep, node).await?;
    ask(&conn, &Request::Health).await
}

fn is_health(r: &Result<Response, TransportError>) -> bool {
    matches!(r, Ok(Response::Health(_)))
}

#[test]
fn sighup_rotation_revokes_removed_keys_refuses_older_rosters_and_expiry_stops_serving() {
    let dir = tempfile::tempdir().unwrap();
    // Polling off: only SIGHUP reloads, so this test fails if SIGHUP handling breaks.
    let mut mesh = LocalMesh::start_with(
        dir.path(),
        1,
        &models(),
        &quorate_bin(),
        "roster_reload_secs = 0\n",
    )
    .unwrap();
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let client = load_secret_key(&mesh.client_key_path).unwrap();
    let other = SecretKey::generate().unwrap();
    let other_entry = client_entry("client-2", &other);
    let serial_1 = std::fs::read(dir.path().join("roster.cose")).unwrap();
    let runtime = rt();

    // Serial 1 lists the client: its inference succeeds.
    let client_ep = runtime.block_on(async { endpoint(&client) });
    let client_conn = runtime.block_on(connect(&client_ep, &node)).unwrap();
    let answer = runtime.block_on(ask(&client_conn, &infer_request()));
    assert!(matches!(answer, Ok(Response::Infer(_))), "{answer:?}");

    // Serial 2 removes the client and adds client-2.
    let serial_2 = roster(
        &mesh.roster,
        2,
        24 * 3600,
        std::slice::from_ref(&other_entry),
    );
    install(dir.path(), &serial_2.sign(&admin).unwrap());
    sighup(&mesh);
    let log = wait_log(
        &mesh,
        "roster serial 1 -> 2 on SIGHUP: +1 members, -1 members, 0 changed, closed 1 connections; added: client-2",
        0,
    );
    assert!(
        log.contains(&format!(
            "removed: client ({})",
            client.public_key().key_id()
        )),
        "{log}"
    );
    runtime.block_on(async {
        // The client's open connection was closed with REVOKED (§7.7.2)...
        bounded(client_conn.connection().closed()).await;
        let err = ask(&client_conn, &Request::Health).await.unwrap_err();
        assert!(matches!(err, TransportError::Revoked { .. }), "{err:?}");
        // ...and a new connection from it is refused (§7.3).
        let again = fresh_health(&client_ep, &node).await;
        assert!(
            matches!(again, Err(TransportError::RefusedByPeer { .. })),
            "{again:?}"
        );
    });
    let other_ep = runtime.block_on(async { endpoint(&other) });
    let other_conn = runtime.block_on(connect(&other_ep, &node)).unwrap();
    let answer = runtime.block_on(ask(&other_conn, &infer_request()));
    assert!(matches!(answer, Ok(Response::Infer(_))), "{answer:?}");

    // An older roster (serial 1 again) is refused; the node says why and keeps serial 2.
    install(dir.path(), &serial_1);
    sighup(&mesh);
    let log = wait_log(&mesh, "refused (older_serial), keeping serial 2", 0);
    assert!(log.contains("lower than serial 2"), "{log}");
    // A different roster with the same serial is refused too.
    let mut same = serial_2.clone();
    same.expires_at += 60;
    install(dir.path(), &same.sign(&admin).unwrap());
    sighup(&mesh);
    wait_log(&mesh, "refused (same_serial), keeping serial 2", 0);
    // So is a file that is not a roster at all, or signed by someone else.
    install(dir.path(), b"this is not a roster");
    sighup(&mesh);
    wait_log(&mesh, "refused (malformed), keeping serial 2", 0);
    let foreign = roster(&mesh.roster, 9, 3600, &[]);
    install(
        dir.path(),
        &foreign.sign(&SecretKey::generate().unwrap()).unwrap(),
    );
    sighup(&mesh);
    wait_log(&mesh, "refused (foreign_signer), keeping serial 2", 0);
    runtime.block_on(async {
        // Others are still served, on their open connection and on new ones; the revoked
        // client is still refused.
        assert!(is_health(&ask(&other_conn, &Request::Health).await));
        assert!(is_health(&fresh_health(&other_ep, &node).await));
        assert!(fresh_health(&client_ep, &node).await.is_err());
    });
    assert_running(&mut mesh);

    // Serial 3 expires shortly: accepted, warned about, then refused once expired.
    let serial_3 = roster(&mesh.roster, 3, 15, std::slice::from_ref(&other_entry));
    install(dir.path(), &serial_3.sign(&admin).unwrap());
    sighup(&mesh);
    wait_log(&mesh, "roster serial 2 -> 3 on SIGHUP", 0);
    wait_log(&mesh, "roster serial 3 expires at", 0);
    let log = wait_log(&mesh, "roster serial 3 expired at", 0);
    assert!(
        log.contains("refusing new connections and requests"),
        "{log}"
    );
    while unix_now() < serial_3.expires_at {
        std::thread::sleep(Duration::from_millis(100));
    }
    runtime.block_on(async {
        // A request on an open connection gets the typed error of §11.5...
        match ask(&other_conn, &Request::Health).await {
            Ok(Response::Error(e)) => {
                assert_eq!(e.code, ErrorCode::NoValidRoster, "{e}");
                assert!(e.message.contains("expired"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match ask(&other_conn, &infer_request()).await {
            Ok(Response::Error(e)) => assert_eq!(e.code, ErrorCode::NoValidRoster, "{e}"),
            other => panic!("{other:?}"),
        }
        // ...and a new connection is refused before the handshake.
        let err = connect(&other_ep, &node).await.unwrap_err();
        assert!(matches!(err, TransportError::ConnectionRefused), "{err:?}");
    });
    assert_running(&mut mesh);

    // A fresh roster brings the node back without a restart.
    let serial_4 = roster(&mesh.roster, 4, 24 * 3600, &[other_entry]);
    install(dir.path(), &serial_4.sign(&admin).unwrap());
    sighup(&mesh);
    wait_log(&mesh, "roster serial 3 -> 4 on SIGHUP", 0);
    runtime.block_on(async {
        let conn = connect(&other_ep, &node).await.unwrap();
        let answer = ask(&conn, &infer_request()).await;
        assert!(matches!(answer, Ok(Response::Infer(_))), "{answer:?}");
    });
    assert_running(&mut mesh);
}

#[test]
fn a_changed_roster_file_is_reloaded_without_a_signal_and_a_roster_without_the_node_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = LocalMesh::start_with(
        dir.path(),
        1,
        &models(),
        &quorate_bin(),
        "roster_reload_secs = 1\n",
    )
    .unwrap();
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let node = mesh.roster.by_name("node-1").unwrap().clone();
    let client = client_entry("client", &mesh.client_key);
    let late = SecretKey::generate().unwrap();
    let late_entry = client_entry("late", &late);
    let runtime = rt();
    let late_ep = runtime.block_on(async { endpoint(&late) });
    assert!(runtime.block_on(fresh_health(&late_ep, &node)).is_err());

    // Serial 2 adds a client; no signal is sent.
    let serial_2 = roster(
        &mesh.roster,
        2,
        24 * 3600,
        &[client.clone(), late_entry.clone()],
    );
    let signed_2 = serial_2.sign(&admin).unwrap();
    install(dir.path(), &signed_2);
    wait_log(
        &mesh,
        "roster serial 1 -> 2 after the file changed: +1 members, -0 members",
        0,
    );
    let late_conn = runtime.block_on(connect(&late_ep, &node)).unwrap();
    assert!(is_health(
        &runtime.block_on(ask(&late_conn, &Request::Health))
    ));

    // A truncated file (as a copy caught half-way would be) is refused once, not on every
    // poll, and the node keeps serving.
    install(dir.path(), &signed_2[..signed_2.len() / 2]);
    wait_log(&mesh, "refused (malformed), keeping serial 2", 0);
    assert!(is_health(
        &runtime.block_on(ask(&late_conn, &Request::Health))
    ));
    // A roster that expired before it arrives is refused as such.
    let mut stale = roster(&mesh.roster, 5, 10, std::slice::from_ref(&client));
    stale.issued_at -= 100;
    stale.expires_at -= 100;
    install(dir.path(), &stale.sign(&admin).unwrap());
    wait_log(&mesh, "refused (expired), keeping serial 2", 0);
    assert_eq!(count_in_log(&mesh, "refused (malformed)"), 1);

    // Serial 3 no longer lists the node itself: it has been revoked and stops serving.
    let mut without_node = roster(&mesh.roster, 3, 24 * 3600, &[client, late_entry]);
    without_node.entries.retain(|e| e.name != "node-1");
    install(dir.path(), &without_node.sign(&admin).unwrap());
    let log = wait_log(
        &mesh,
        "roster serial 3 revokes this node (no longer listed)",
        0,
    );
    assert!(
        log.contains("roster serial 2 -> 3 after the file changed"),
        "{log}"
    );
    runtime.block_on(async {
        match ask(&late_conn, &Request::Health).await {
            Ok(Response::Error(e)) => {
                assert_eq!(e.code, ErrorCode::NoValidRoster, "{e}");
                assert!(e.message.contains("revoked"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let err = connect(&late_ep, &node).await.unwrap_err();
        assert!(matches!(err, TransportError::ConnectionRefused), "{err:?}");
    });
    assert_running(&mut mesh);

    // Serial 4 lists it again: it serves again.
    let serial_4 = roster(&mesh.roster, 4, 24 * 3600, &[client_entry("late", &late)]);
    install(dir.path(), &serial_4.sign(&admin).unwrap());
    wait_log(&mesh, "roster serial 3 -> 4 after the file changed", 0);
    assert!(is_health(&runtime.block_on(fresh_health(&late_ep, &node))));
    assert_running(&mut mesh);
}
