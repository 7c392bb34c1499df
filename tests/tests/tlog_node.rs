//! A node keeps its audit log as an RFC 9162 Merkle log and signs tree heads over it
//! (§18.11): after a run, its last head verifies against its audit log with `quorate
//! verify --head`, and a log the node truncated or rewrote afterwards no longer does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::audit_log::{self, RECORD_HEADER};
use quorate_tests::{quorate, quorate_bin, repo_root, text};

const JOBS: usize = 12;

fn verify_with_head(
    log: &std::path::Path,
    head: &std::path::Path,
    public: &str,
) -> std::process::Output {
    quorate([
        "verify",
        log.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--trust",
        public,
    ])
}

/// Writes the node's public key into `dir` for `--trust`; its path.
fn trust_file(dir: &std::path::Path, entry: &quorate_protocol::roster::Entry) -> String {
    let public = dir.join(format!("{}.pub", entry.name));
    std::fs::write(&public, entry.key.to_pem().unwrap()).unwrap();
    public.to_str().unwrap().to_string()
}

#[test]
fn the_last_head_covers_the_log_and_catches_truncation_and_rewriting() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mut mesh = LocalMesh::start(dir.path(), 1, &models, &quorate_bin()).unwrap();
    let entry = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, model) = mlp_sample(&models).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    {
        let _guard = rt.enter();
        let client = MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(10),
        )
        .unwrap();
        for _ in 0..JOBS {
            let req = fresh_request(model, vec![input.clone()], None).unwrap();
            rt.block_on(client.infer(&entry, &req)).unwrap();
        }
        // A head signed on request over every record (§18.12): the head the node leaves
        // beside its log must not fall behind it (§18.11.2).
        let (requested, _) = rt.block_on(client.log_head(&entry)).unwrap();
        let size = quorate_protocol::tlog::TreeHead::parse(&requested)
            .unwrap()
            .body
            .size;
        assert_eq!(size, JOBS as u64);
        client.close();
    }
    mesh.stop("node-1", Duration::from_secs(10)).unwrap();

    let log = mesh.audit_of("node-1");
    let head = quorate_node::audit::head_path_of(&log);
    assert!(
        head.is_file(),
        "the node left no signed head beside {}",
        log.display()
    );
    let public = trust_file(dir.path(), &entry);

    let o = verify_with_head(&log, &head, &public);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "the first {JOBS} of its {JOBS} records reproduce the signed head of"
        )),
        "{}",
        text(&o)
    );

    let original = std::fs::read(&log).unwrap();
    let scanned = audit_log::scan(&original).unwrap();
    let records = scanned.records;
    assert_eq!(records.len(), JOBS);

    // Truncated: the last record dropped (and the zeros reserved after it, §12.4.3).
    let last = records.last().unwrap().len() + RECORD_HEADER;
    std::fs::write(&log, &original[..scanned.good_len as usize - last]).unwrap();
    let o = verify_with_head(&log, &head, &public);
    assert!(!o.status.success());
    assert!(text(&o).contains("(audit_log)"), "{}", text(&o));

    // Emptied: only the magic left. The log has no signer any more, and is still checked
    // against the head named after it (§18.8.7): too short, not missing.
    std::fs::write(&log, audit_log::MAGIC).unwrap();
    let o = verify_with_head(&log, &head, &public);
    assert!(!o.status.success());
    assert!(text(&o).contains("(audit_log)"), "{}", text(&o));

    // Rewritten: record 3 replaced by record 4 (a complete, well-formed log of the same
    // length, whose receipts all still verify).
    let mut rewritten = audit_log::MAGIC.to_vec();
    for (i, r) in records.iter().enumerate() {
        rewritten.extend(audit_log::record(if i == 3 { &records[4] } else { r }));
    }
    std::fs::write(&log, &rewritten).unwrap();
    let o = verify_with_head(&log, &head, &public);
    assert!(!o.status.success());
    assert!(text(&o).contains("(mismatch)"), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{JOBS} of {JOBS} receipts verified")),
        "{}",
        text(&o)
    );
}

/// §18.11.2: the first head is written before the readiness line, so a node killed as soon as
/// it is ready (SIGKILL: no last head on the way out) still leaves one that verifies.
#[test]
fn a_node_killed_as_soon_as_it_is_ready_has_already_written_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mut mesh = LocalMesh::start(dir.path(), 1, &models, &quorate_bin()).unwrap();
    mesh.kill("node-1").unwrap();
    let entry = mesh.roster.by_name("node-1").unwrap().clone();
    let log = mesh.audit_of("node-1");
    let head = quorate_node::audit::head_path_of(&log);
    assert!(
        head.is_file(),
        "no signed head beside {} after a kill at readiness",
        log.display()
    );
    let o = verify_with_head(&log, &head, &trust_file(dir.path(), &entry));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("the first 0 of its 0 records reproduce the signed head of"),
        "{}",
        text(&o)
    );
}
