//! The transparency log over real QUIC (§18.11–§18.13): replies prove their receipts are
//! logged, promises are upgraded, log requests are answered, and the monitor catches a node
//! that rewrites or truncates its log or shows peers another history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::audit_log;
use quorate_protocol::roster::Entry;
use quorate_tests::{quorate, quorate_bin, repo_root, rt, text};
use quorate_verify::tlog::{verify_receipt_inclusions, verify_tree_head};

fn client(mesh: &LocalMesh) -> MeshClient {
    MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Runs `n` jobs on `node` and returns their receipts as the client accepted them.
fn jobs(rt: &tokio::runtime::Runtime, mesh: &LocalMesh, node: &Entry, n: usize) -> Vec<Vec<u8>> {
    let (input, model) = mlp_sample(&repo_root().join("models")).unwrap();
    let _guard = rt.enter();
    let c = client(mesh);
    let out = (0..n)
        .map(|_| {
            let req = fresh_request(model, vec![input.clone()], None).unwrap();
            rt.block_on(c.infer(node, &req)).unwrap().0.receipt
        })
        .collect();
    c.close();
    out
}

fn mesh_args(mesh: &LocalMesh) -> Vec<String> {
    vec![
        "--roster".into(),
        mesh.dir.join("roster.cose").display().to_string(),
        "--admin".into(),
        mesh.dir.join("admin.pub").display().to_string(),
        "--key".into(),
        mesh.client_key_path.display().to_string(),
    ]
}

fn log_cmd(mesh: &LocalMesh, sub: &str, rest: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["log".into(), sub.into()];
    args.extend(mesh_args(mesh));
    args.extend(rest.iter().map(|s| s.to_string()));
    quorate(args)
}

fn write_pub(dir: &Path, e: &Entry) -> String {
    let p = dir.join(format!("{}.pub", e.name));
    std::fs::write(&p, e.key.to_pem().unwrap()).unwrap();
    p.display().to_string()
}

/// Inclusion receipts in replies verify against the receipt's own leaf; `quorate log head`,
/// `prove` and `consistency` fetch documents that verify; peers witness each other's heads.
#[test]
fn replies_carry_inclusion_receipts_and_log_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mesh = LocalMesh::start_with(
        dir.path(),
        2,
        &models,
        &quorate_bin(),
        "gossip_secs = 1\nlog_replies = \"inclusion\"\n",
    )
    .unwrap();
    let rt = rt();
    let nodes = mesh.node_entries().unwrap();
    let receipts = jobs(&rt, &mesh, &nodes[0], 5);
    for (i, r) in receipts.iter().enumerate() {
        let inc = verify_receipt_inclusions(r, &nodes[0].key).unwrap();
        assert_eq!(inc.len(), 1, "receipt {i} carries one inclusion receipt");
        assert_eq!(inc[0].leaf_index, i as u64);
        assert!(inc[0].tree_size > i as u64);
        // Another node's key does not verify it.
        assert!(verify_receipt_inclusions(r, &nodes[1].key).is_err());
    }

    let head = dir.path().join("node-1.head");
    let o = log_cmd(
        &mesh,
        "head",
        &["--node", "node-1", "--out", head.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 leaves"), "{}", text(&o));
    let h = verify_tree_head(&std::fs::read(&head).unwrap(), &nodes[0].key).unwrap();
    assert_eq!(h.size, 5);

    // A receipt stored without its inclusion receipt is proved again by request.
    let bare = dir.path().join("bare.cose");
    std::fs::write(
        &bare,
        quorate_protocol::tlog::leaf_bytes(&receipts[2]).unwrap(),
    )
    .unwrap();
    let proved = dir.path().join("proved.cose");
    let o = log_cmd(
        &mesh,
        "prove",
        &[
            "--node",
            "node-1",
            "--receipt",
            bare.to_str().unwrap(),
            "--size",
            "5",
            "--out",
            proved.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("leaf 2 of 5"), "{}", text(&o));
    // By default against the first head that held it: heads are signed on the 5 s tick and
    // on every head request (peers gossip every second), so that is one of 3 to 5 leaves.
    let o = log_cmd(
        &mesh,
        "prove",
        &["--node", "node-1", "--receipt", bare.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        ["leaf 2 of 3", "leaf 2 of 4", "leaf 2 of 5"]
            .iter()
            .any(|l| text(&o).contains(l)),
        "{}",
        text(&o)
    );
    let again = verify_receipt_inclusions(&std::fs::read(&proved).unwrap(), &nodes[0].key).unwrap();
    assert_eq!((again[0].leaf_index, again[0].tree_size), (2, 5));
    // The same receipt is not in node-2's log.
    let o = log_cmd(
        &mesh,
        "prove",
        &["--node", "node-2", "--receipt", bare.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no receipt with this leaf hash"),
        "{}",
        text(&o)
    );

    jobs(&rt, &mesh, &nodes[0], 3);
    let o = log_cmd(&mesh, "head", &["--node", "node-1"]);
    assert!(text(&o).contains("8 leaves"), "{}", text(&o));
    let o = log_cmd(
        &mesh,
        "consistency",
        &["--node", "node-1", "--old", "5", "--new", "8"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 leaves"), "{}", text(&o));
    // Sizes beyond the latest head are refused with a typed error.
    let o = log_cmd(
        &mesh,
        "consistency",
        &["--node", "node-1", "--old", "5", "--new", "99"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("NotInLog"), "{}", text(&o));

    // Gossip: node-2 keeps node-1's head within a few rounds.
    let _guard = rt.enter();
    let c = client(&mesh);
    let mut witnessed = Vec::new();
    for _ in 0..50 {
        witnessed = rt.block_on(c.log_head(&nodes[1])).unwrap().1;
        if witnessed
            .iter()
            .any(|w| verify_tree_head(w, &nodes[0].key).is_ok_and(|h| h.size == 8))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        witnessed
            .iter()
            .any(|w| verify_tree_head(w, &nodes[0].key).is_ok_and(|h| h.size == 8)),
        "node-2 never witnessed node-1's head of 8 leaves"
    );
    c.close();
}

/// A promise is upgraded after its deadline into an inclusion receipt the client stores; a
/// node that left the receipt out of its log cannot keep its promise, and one that answers
/// in inclusion mode without logging proves nothing: both are caught by the client.
#[test]
fn promises_are_upgraded_and_receipts_left_out_of_the_log_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    // node-1 and node-2 answer with promises (the default), node-3 with inclusion receipts.
    let mesh = LocalMesh::start_with_each(dir.path(), 3, &models, &quorate_bin(), &|i| match i {
        0 => String::new(),
        1 => "test_omit_from_log = true\n".into(),
        _ => "log_replies = \"inclusion\"\ntest_omit_from_log = true\n".into(),
    })
    .unwrap();
    let rt = rt();
    let nodes = mesh.node_entries().unwrap();
    let (input, model) = mlp_sample(&models).unwrap();
    let _guard = rt.enter();
    let c = client(&mesh);
    // One signed promise serves every reply of its window: of three quick jobs, at least two
    // (all three unless a 5 s boundary falls between them) carry the same promise bytes.
    let quick: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            let req = fresh_request(model, vec![input.clone()], None).unwrap();
            rt.block_on(c.infer(&nodes[0], &req))
                .unwrap()
                .0
                .promise
                .unwrap()
        })
        .collect();
    assert!(quick[0] == quick[1] || quick[1] == quick[2]);
    let req = fresh_request(model, vec![input.clone()], None).unwrap();
    let (honest, _) = rt.block_on(c.infer(&nodes[0], &req)).unwrap();
    let req = fresh_request(model, vec![input.clone()], None).unwrap();
    let (liar, _) = rt.block_on(c.infer(&nodes[1], &req)).unwrap();
    assert!(honest.promise.is_some() && liar.promise.is_some());
    assert!(
        quorate_protocol::tlog::inclusion_receipts_of(&honest.receipt)
            .unwrap()
            .is_empty()
    );
    let (kept, broken) = rt.block_on(async {
        tokio::join!(
            c.upgrade_promise(&nodes[0], &honest.receipt, honest.promise.as_ref().unwrap()),
            c.upgrade_promise(&nodes[1], &liar.receipt, liar.promise.as_ref().unwrap()),
        )
    });
    let upgraded = kept.unwrap();
    let inc = verify_receipt_inclusions(&upgraded, &nodes[0].key).unwrap();
    assert_eq!(inc[0].leaf_index, 3);
    let e = format!("{:#}", broken.unwrap_err());
    assert!(e.contains("broke its promise"), "{e}");
    assert!(e.contains("no receipt with this leaf hash"), "{e}");

    let req = fresh_request(model, vec![input], None).unwrap();
    let e = format!("{:#}", rt.block_on(c.infer(&nodes[2], &req)).unwrap_err());
    assert!(e.contains("proves no inclusion"), "{e}");
    c.close();
}

/// Rewrites a node's audit log as an operator with file access could: record 1 replaced by
/// record 2 (complete, well-formed, every receipt still valid), or the last record dropped.
fn tamper(log: &Path, rewrite: bool) {
    let original = std::fs::read(log).unwrap();
    let records = audit_log::scan(&original).unwrap().records;
    let mut out = audit_log::MAGIC.to_vec();
    let keep = if rewrite {
        records.len()
    } else {
        records.len() - 1
    };
    for (i, r) in records.iter().take(keep).enumerate() {
        out.extend(audit_log::record(if rewrite && i == 1 {
            &records[2]
        } else {
            r
        }));
    }
    std::fs::write(log, out).unwrap();
}

/// The monitor keeps heads between runs: a split view (a node showing a peer another
/// root) and a rewritten log are proven by bundles that `quorate verify` convicts offline;
/// a truncated log is reported.
#[test]
fn the_monitor_catches_split_views_rewrites_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mut mesh = LocalMesh::start_with_each(dir.path(), 3, &models, &quorate_bin(), &|i| {
        let mut c = "gossip_secs = 1\n".to_string();
        if i == 2 {
            c.push_str("test_split_view_for = \"node-2\"\n");
        }
        c
    })
    .unwrap();
    let rt = rt();
    let nodes = mesh.node_entries().unwrap();
    for n in &nodes {
        jobs(&rt, &mesh, n, 4);
    }
    let state = dir.path().join("monitor");
    let monitor =
        |mesh: &LocalMesh| log_cmd(mesh, "monitor", &["--state", state.to_str().unwrap()]);
    let trust: Vec<String> = nodes.iter().map(|n| write_pub(dir.path(), n)).collect();
    let verify = |path: &Path| {
        let mut args = vec!["verify".to_string(), path.display().to_string()];
        for t in &trust {
            args.push("--trust".into());
            args.push(t.clone());
        }
        quorate(args)
    };

    // Let node-2 witness node-3's forked head (gossip every second).
    let mut out = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let o = monitor(&mesh);
        out = text(&o);
        if out.contains("EQUIVOCATION node-3") {
            assert_eq!(o.status.code(), Some(1), "{out}");
            break;
        }
    }
    assert!(out.contains("EQUIVOCATION node-3"), "{out}");
    assert!(!out.contains("PROBLEM   node-1"), "{out}");
    let evidence: Vec<_> = std::fs::read_dir(state.join("evidence"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!evidence.is_empty());
    let o = verify(&state.join("evidence"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("EQUIVOCATED"), "{}", text(&o));
    assert!(state.join("node-1.head").is_file());

    // node-1 rewrites one record while stopped, and comes back with the same size.
    mesh.stop("node-1", Duration::from_secs(10)).unwrap();
    tamper(&mesh.audit_of("node-1"), true);
    mesh.restart("node-1", &quorate_bin(), "").unwrap();
    let o = monitor(&mesh);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("EQUIVOCATION node-1"), "{out}");
    let bundle = state.join("evidence").join("node-1-4.equivocation");
    let o = verify(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("EQUIVOCATED"), "{}", text(&o));

    // node-1 drops its last record: the log shrank below the kept head.
    mesh.stop("node-1", Duration::from_secs(10)).unwrap();
    tamper(&mesh.audit_of("node-1"), false);
    mesh.restart("node-1", &quorate_bin(), "").unwrap();
    let o = monitor(&mesh);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("the log shrank"), "{out}");
}
