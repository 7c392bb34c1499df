//! Merkle batch signing of mesh replies (§12.4.2): under concurrent load a node signs the
//! receipts of one group commit under one root, and every reply still carries a receipt that
//! verifies on its own — in the client (§11.4), with `quorate verify`, with pycose, and with
//! its promise kept by an inclusion receipt of the transparency log (§18.6). A node that
//! answers with a group mate's batch receipt is caught.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::batch_receipt::{AnyReceipt, parse_any};
use quorate_protocol::messages::{InferRequest, InferResponse, check_infer_response};
use quorate_protocol::tlog;
use quorate_tests::batch::python_verify;
use quorate_tests::{quorate, quorate_bin, repo_root, text};

/// Clients sending jobs at once, and jobs each: enough for commits to gather groups.
const CLIENTS: usize = 12;
const JOBS_EACH: usize = 40;

#[test]
fn replies_signed_in_groups_verify_alone_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mesh = LocalMesh::start(dir.path(), 1, &models, &quorate_bin()).unwrap();
    let entry = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, model) = mlp_sample(&models).unwrap();
    let rt = quorate_tests::rt();
    let _guard = rt.enter();
    let client = Arc::new(
        MeshClient::new(
            &mesh.client_key,
            mesh.roster.clone(),
            Duration::from_secs(10),
        )
        .unwrap(),
    );
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            // Each client its own connection, as separate applications would have.
            let c = MeshClient::new(
                &mesh.client_key,
                mesh.roster.clone(),
                Duration::from_secs(10),
            )
            .unwrap();
            let (entry, input) = (entry.clone(), input.clone());
            rt.spawn(async move {
                let mut replies: Vec<(InferRequest, InferResponse)> = Vec::new();
                for _ in 0..JOBS_EACH {
                    let req = fresh_request(model, vec![input.clone()], None).unwrap();
                    // `infer_patiently` accepts only a reply whose receipt verified (§11.4).
                    let (response, _) = c.infer_patiently(&entry, &req).await.unwrap();
                    replies.push((req, response));
                }
                c.close();
                replies
            })
        })
        .collect();
    let replies: Vec<(InferRequest, InferResponse)> = tasks
        .into_iter()
        .flat_map(|t| rt.block_on(t).unwrap())
        .collect();
    assert_eq!(replies.len(), CLIENTS * JOBS_EACH);

    // Replies of one group share one signed root.
    let batched: Vec<&(InferRequest, InferResponse)> = replies
        .iter()
        .filter(|(_, r)| matches!(parse_any(&r.receipt), Ok(AnyReceipt::Batch(_))))
        .collect();
    assert!(
        batched.len() >= 2,
        "{} concurrent jobs gave {} batch receipts: no commit grouped replies",
        replies.len(),
        batched.len()
    );
    let root_of = |r: &InferResponse| match parse_any(&r.receipt).unwrap() {
        AnyReceipt::Batch(b) => (b.root_sign1.signature.clone(), b.root.size, b.index),
        AnyReceipt::Single(_) => unreachable!("only batch receipts here"),
    };
    for (_, r) in &batched {
        assert!(
            root_of(r).1 >= 2,
            "a batch of one is signed as a single receipt"
        );
    }
    let (a, b) = batched
        .iter()
        .enumerate()
        .find_map(|(i, x)| {
            batched[i + 1..]
                .iter()
                .find(|y| root_of(&y.1).0 == root_of(&x.1).0)
                .map(|y| (*x, *y))
        })
        .expect("two replies of one group");
    assert_ne!(root_of(&a.1).2, root_of(&b.1).2);
    eprintln!(
        "{} replies, {} carrying batch receipts",
        replies.len(),
        batched.len()
    );

    // Attack: the node answers job A with its group mate B's batch receipt (validly signed,
    // same root). The client refuses it: the payload is another job's.
    let mut swapped = a.1.clone();
    swapped.receipt = b.1.receipt.clone();
    let err = check_infer_response(&a.0, &swapped, &entry.key).unwrap_err();
    assert!(err.to_string().contains("job id"), "{err}");

    // Every batched receipt verifies alone with `quorate verify` and with pycose.
    let out = dir.path().join("batched");
    std::fs::create_dir_all(&out).unwrap();
    let files: Vec<PathBuf> = batched
        .iter()
        .take(60)
        .enumerate()
        .map(|(i, (_, r))| {
            let f = out.join(format!("reply-{i:02}.cose"));
            std::fs::write(&f, &r.receipt).unwrap();
            f
        })
        .collect();
    let public = dir.path().join("node-1.pub");
    std::fs::write(&public, entry.key.to_pem().unwrap()).unwrap();
    let o = quorate([
        "verify",
        out.to_str().unwrap(),
        "--trust",
        public.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "quorate verify: {}", text(&o));
    let (ok, summaries) = python_verify(&public, &files);
    assert!(ok, "python rejected a batched reply: {summaries:?}");
    assert_eq!(summaries.len(), files.len());

    // The promise of a batched reply is kept: the node proves the batch receipt's leaf in its
    // log, the proof checks against the promise, and the receipt carrying it in header 394
    // (in its root, §18.4) still verifies with `quorate verify`.
    let (req, reply) = a;
    let leaf = tlog::receipt_leaf_hash(&reply.receipt).unwrap();
    // A head request makes the node sign a head over its whole log (§18.12).
    rt.block_on(client.log_head(&entry)).unwrap();
    let inclusion = rt.block_on(client.log_prove(&entry, leaf, None)).unwrap();
    let promise = reply.promise.as_ref().expect("a promise with the reply");
    quorate_verify::tlog::verify_promise(promise, &reply.receipt, &inclusion, &entry.key).unwrap();
    let upgraded = tlog::attach_inclusion_receipts(&reply.receipt, &[inclusion]).unwrap();
    let mut carried = reply.clone();
    carried.receipt = upgraded.clone();
    check_infer_response(req, &carried, &entry.key).unwrap();
    let up = dir.path().join("upgraded.cose");
    std::fs::write(&up, &upgraded).unwrap();
    let o = quorate([
        "verify",
        up.to_str().unwrap(),
        "--trust",
        public.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "quorate verify of the upgraded receipt: {}",
        text(&o)
    );
    client.close();

    // The audit log holds every reply's receipt as sent.
    let log = std::fs::read(mesh.audit_of("node-1")).unwrap();
    let logged: std::collections::HashSet<Vec<u8>> = quorate_protocol::audit_log::scan(&log)
        .unwrap()
        .records
        .into_iter()
        .collect();
    for (_, r) in &replies {
        assert!(
            logged.contains(&r.receipt),
            "a reply's receipt is not in the log"
        );
    }
}
