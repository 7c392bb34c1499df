//! Nodes whose clocks are minutes apart (§10.3.2), with the real `quorate node` processes'
//! clocks shifted by libfaketime (Debian's `faketime`, installed by
//! `scripts/setup-clock-tests.sh`): a roster issued by the authority's clock is accepted by
//! nodes up to `MAX_SKEW_SECS` behind it and refused beyond; expiry has no grace, so a node
//! whose clock runs ahead sees a roster expire early; receipts carry their signer's clock and
//! verified jobs across skewed nodes are accepted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quorate_cli::local::{Custom, LocalMesh, mlp_sample};
use quorate_node::clock::unix_now;
use quorate_node::files::load_secret_key;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_node::mesh::verified;
use quorate_protocol::policy::Policy;
use quorate_protocol::roster::{MAX_SKEW_SECS, Roster};
use quorate_tests::{quorate_bin, repo_root};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The environment that shifts a process's wall clock by `secs` (monotonic time untouched,
/// so timeouts behave).
fn shifted(secs: i64) -> Vec<(String, String)> {
    assert!(
        Path::new(LIBFAKETIME).is_file(),
        "{LIBFAKETIME} is missing: run ./scripts/setup-clock-tests.sh (./scripts/test does)"
    );
    vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME".into(), format!("{secs:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Starts `quorate node --config` with `env` and returns (whether it became ready, its
/// stderr if it exited). A ready node is killed.
fn try_start(config: &Path, env: Vec<(String, String)>) -> (bool, String) {
    let mut child = Command::new(quorate_bin())
        .args(["node", "--config"])
        .arg(config)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut first = [0u8; 64];
        let n = stdout.read(&mut first).unwrap_or(0);
        String::from_utf8_lossy(&first[..n]).to_string()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (false, err);
        }
        if reader.is_finished() {
            let out = reader.join().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            return (out.contains("listening"), out);
        }
        assert!(Instant::now() < deadline, "node neither started nor exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn skewed_clocks_follow_the_roster_rules_and_receipts_keep_their_signers_time() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = i64::try_from(MAX_SKEW_SECS).unwrap();
    // node-1 runs 5 minutes ahead, node-2 just under 5 minutes behind, node-3 on time.
    let offsets = [ahead, -(ahead - 10), 0];
    let mut mesh = LocalMesh::start_custom(
        dir.path(),
        3,
        &repo_root().join("models"),
        &quorate_bin(),
        &Custom {
            providers: &|_| vec!["cpu".into()],
            env: &|i| shifted(offsets[i]),
            ..Custom::default()
        },
    )
    .unwrap();

    // A verified job across the three: accepted, and each receipt states its node's clock.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let client = MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(30),
    )
    .unwrap();
    let (input, mlp) = mlp_sample(&repo_root().join("models")).unwrap();
    let policy = Policy::Exact;
    let request = fresh_request(mlp, vec![input], Some(&policy)).unwrap();
    let nodes: Vec<_> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|n| mesh.roster.by_name(n).unwrap().clone())
        .collect();
    let before = unix_now();
    let o = rt
        .block_on(verified::run(
            &client,
            request,
            policy,
            3,
            3,
            nodes,
            &|_| {},
        ))
        .unwrap();
    let after = unix_now();
    assert_eq!(o.verdict.agreeing.len(), 3, "all three agree");
    for (i, offset) in offsets.iter().enumerate() {
        let stamped = o.answers[i].as_ref().unwrap().payload.issued_at;
        let lo = before.saturating_add_signed(*offset).saturating_sub(2);
        let hi = after.saturating_add_signed(*offset) + 2;
        assert!(
            (lo..=hi).contains(&stamped),
            "{}: issued_at {stamped} not within {lo}..={hi}: the clock shift did not apply",
            o.name(i)
        );
    }
    client.close();
    mesh.stop_all().unwrap();

    // More than MAX_SKEW_SECS behind the authority: the roster is refused as not yet valid.
    let config = |n: &str| dir.path().join(format!("nodes/{n}/node.toml"));
    let (ready, err) = try_start(&config("node-2"), shifted(-(ahead + 100)));
    assert!(
        !ready,
        "a node 400 s behind accepted a roster issued in its future"
    );
    assert!(err.contains("in the future"), "{err}");

    // Expiry has no grace: a roster valid for two more minutes is already expired for the
    // node five minutes ahead, and valid for the node on time.
    let admin = load_secret_key(&dir.path().join("keys/admin.key")).unwrap();
    let now = unix_now();
    let short = Roster {
        serial: 2,
        issued_at: now,
        expires_at: now + 120,
        ..mesh.roster.clone()
    };
    std::fs::write(dir.path().join("roster.cose"), short.sign(&admin).unwrap()).unwrap();
    let (ready, err) = try_start(&config("node-1"), shifted(ahead));
    assert!(
        !ready,
        "a node 300 s ahead accepted a roster that had expired on its clock"
    );
    assert!(err.contains("expired"), "{err}");
    let (ready, out) = try_start(&config("node-3"), shifted(0));
    assert!(ready, "{out}");
}
