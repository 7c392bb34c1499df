//! A node killed with SIGKILL under load loses no acknowledged receipt (§12.4): every reply a
//! client accepted has its receipt in the audit log when the log is opened again, whatever
//! the group commit was doing at the moment of the kill.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quorate_cli::local::{LocalMesh, mlp_sample};
use quorate_node::audit::AuditLog;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_protocol::audit_log::scan;
use quorate_tests::{quorate_bin, repo_root};

/// Clients sending jobs at once: more than the node's four slots, so commits group receipts.
const CLIENTS: usize = 12;

fn one_kill_under_load(round: u64) {
    let dir = tempfile::tempdir().unwrap();
    let models = repo_root().join("models");
    let mut mesh = LocalMesh::start(dir.path(), 1, &models, &quorate_bin()).unwrap();
    let entry = mesh.roster.by_name("node-1").unwrap().clone();
    let (input, model) = mlp_sample(&models).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let stop = Arc::new(AtomicBool::new(false));
    // Set once the SIGKILL has landed: a request begun before it and then failed was cut by
    // the kill (the clients keep the load on through the kill, so some are in flight; one
    // begun in the microseconds between the signal and the reaping would count too).
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = Arc::new(
                MeshClient::new(
                    &mesh.client_key,
                    mesh.roster.clone(),
                    Duration::from_secs(3),
                )
                .unwrap(),
            );
            let (entry, input, stop, killed) =
                (entry.clone(), input.clone(), stop.clone(), killed.clone());
            rt.spawn(async move {
                let (mut accepted, mut failed) = (Vec::new(), 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let before_kill = !killed.load(Ordering::SeqCst);
                    let req = fresh_request(model, vec![input.clone()], None).unwrap();
                    // `infer` returns only a response whose receipt verified (§11.4): that
                    // is what a client accepts and may act on.
                    match client.infer(&entry, &req).await {
                        // The log holds the receipt as signed, without the inclusion
                        // receipt the reply added in header 394 (§18.1).
                        Ok((response, _)) => accepted
                            .push(quorate_protocol::tlog::leaf_bytes(&response.receipt).unwrap()),
                        // `Busy` is the node at its slot limit, answering; the rest are
                        // requests the kill cut.
                        Err(e) if format!("{e:#}").contains("Busy") => {}
                        Err(_) if before_kill => failed += 1,
                        Err(_) => {}
                    }
                }
                client.close();
                (accepted, failed)
            })
        })
        .collect();
    // Let the load build, then kill at a moment that varies between rounds.
    std::thread::sleep(Duration::from_millis(700 + 170 * round));
    // The load stays on through the kill, so requests are in flight when it lands; only
    // those begun before it count as cut. (Stopping the clients first let every request
    // finish before a late kill on a loaded machine, and then the kill cut nothing.)
    mesh.kill("node-1").unwrap();
    killed.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (a, f) = rt.block_on(c).unwrap();
        accepted.extend(a);
        failed += f;
    }
    assert!(
        accepted.len() > 50,
        "round {round}: only {} jobs",
        accepted.len()
    );
    assert!(failed > 0, "round {round}: the kill interrupted no request");

    // Opening the log as a restarted node does (a torn tail is cut), every accepted
    // receipt is there.
    let path = mesh.audit_of("node-1");
    let (log, count) = AuditLog::open(&path).unwrap();
    drop(log);
    let s = scan(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(s.records.len(), count);
    assert_eq!(s.torn_bytes, 0);
    let logged: std::collections::HashSet<&Vec<u8>> = s.records.iter().collect();
    let missing = accepted.iter().filter(|r| !logged.contains(r)).count();
    assert_eq!(
        missing,
        0,
        "round {round}: {missing} of {} accepted receipts are not in the log",
        accepted.len()
    );
    // The guarantee holds for receipts signed in groups (§12.4.2) too: the clients
    // outnumber the slots, so commits carried several jobs and signed them under one root.
    let batched = accepted.iter().filter(|r| r.first() == Some(&0x85)).count();
    assert!(
        batched > 0,
        "round {round}: no accepted reply carried a batch receipt"
    );
    eprintln!(
        "round {round}: {} accepted ({batched} batch receipts), {} in the log, {failed} requests in flight cut by the kill",
        accepted.len(),
        s.records.len()
    );
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_receipt() {
    for round in 0..3 {
        one_kill_under_load(round);
    }
}
