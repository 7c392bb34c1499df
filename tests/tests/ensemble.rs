//! Private ensembles (§15) over real QUIC: five `quorate node` processes serving
//! hospital-1..5, the aggregator in this process or in the `quorate ensemble` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use quorate_cli::local::LocalMesh;
use quorate_node::mesh::client::MeshClient;
use quorate_node::mesh::ensemble_client::{self, EnsembleOutcome, EnsembleSpec};
use quorate_protocol::ensemble::{
    AggregatePayload, EnsembleParams, EnsembleRound, EnsembleStart, Mode, decode_transcript,
    encode_transcript, transcript_digest,
};
use quorate_protocol::ensemble_audit::{AuditError, audit};
use quorate_protocol::messages::{ErrorCode, Request, Response};
use quorate_protocol::roster::Entry;
use quorate_tests::bundled::{hospital, models, sample};
use quorate_tests::{quorate, quorate_bin, rt, text};

fn expected_probs() -> Vec<[f64; 2]> {
    let v = quorate_tests::read_json(&models().join("samples/expected.json"));
    (1..=5)
        .map(|i| {
            let p = &v[format!("hospital-{i}.onnx")][0];
            [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()]
        })
        .collect()
}

fn members(mesh: &LocalMesh, n: usize) -> Vec<Entry> {
    (1..=n)
        .map(|i| mesh.roster.by_name(&format!("node-{i}")).unwrap().clone())
        .collect()
}

fn spec(mesh: &LocalMesh, mode: Mode, dp: Option<(f64, f64)>) -> EnsembleSpec {
    EnsembleSpec {
        mode,
        members: members(mesh, 5),
        models: (1..=5).map(hospital).collect(),
        inputs: vec![sample()],
        classes: 2,
        threshold: 3,
        dp,
    }
}

fn start(dir: &std::path::Path, extra: &dyn Fn(usize) -> String) -> LocalMesh {
    LocalMesh::start_with_each(dir, 5, &models(), &quorate_bin(), extra).unwrap()
}

/// The aggregator's mesh client; made inside the runtime it will run on.
fn client_of(mesh: &LocalMesh) -> anyhow::Result<MeshClient> {
    MeshClient::new(
        &mesh.client_key,
        mesh.roster.clone(),
        Duration::from_secs(5),
    )
}

fn run_job(mesh: &LocalMesh, spec: &EnsembleSpec) -> Result<EnsembleOutcome, String> {
    run_job_with(mesh, spec, &|_| {})
}

fn run_job_with(
    mesh: &LocalMesh,
    spec: &EnsembleSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<EnsembleOutcome, String> {
    rt().block_on(async {
        let client = client_of(mesh).map_err(|e| e.to_string())?;
        let o = ensemble_client::run(&client, &mesh.client_key, spec, progress)
            .await
            .map_err(|e| format!("{e:#}"));
        client.close();
        o
    })
}

fn receipts(o: &EnsembleOutcome) -> Vec<Vec<u8>> {
    o.member_receipts.iter().map(|(_, r)| r.clone()).collect()
}

/// Mean of the survivors' plaintext probabilities, against the ensemble's within the
/// fixed-point error (2^-16 per member, rounded).
fn assert_mean(o: &EnsembleOutcome, survivors: &[usize]) {
    let exp = expected_probs();
    for (c, got) in o.result.iter().enumerate() {
        let want: f64 = survivors.iter().map(|&i| exp[i][c]).sum::<f64>() / survivors.len() as f64;
        assert!(
            (got - want).abs() < 1e-4,
            "class {c}: ensemble {got} vs plaintext mean {want}"
        );
    }
}

#[test]
fn ensemble_mean_equals_plaintext_mean_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(dir.path(), &|_| String::new());
    let o = run_job(&mesh, &spec(&mesh, Mode::Mean, None)).unwrap();
    assert_eq!(o.payload.contributors, vec![0, 1, 2, 3, 4]);
    assert!(o.payload.dropped.is_empty());
    assert_mean(&o, &[0, 1, 2, 3, 4]);
    let report = audit(&o.payload, &o.transcript, &receipts(&o)).unwrap();
    assert_eq!(report.contributors, vec![0, 1, 2, 3, 4]);
    // Every member logged its member receipt, and no member holds state afterwards.
    for i in 1..=5 {
        let log = std::fs::read(mesh.audit_of(&format!("node-{i}"))).unwrap();
        assert!(!log.is_empty());
    }

    // Votes mode over the same mesh: the histogram of the members' arg-max classes.
    let v = run_job(&mesh, &spec(&mesh, Mode::Votes, None)).unwrap();
    let exp = expected_probs();
    let ones = exp.iter().filter(|p| p[1] > p[0]).count() as f64;
    assert_eq!(v.result, vec![5.0 - ones, ones]);
    audit(&v.payload, &v.transcript, &receipts(&v)).unwrap();

    // Four jobs at once over the same members: each member holds four jobs, each under its
    // own lock, answering the quick rounds on its async threads (their costs are known by
    // now, spec §15.3) while other jobs' key agreements and receipts run in its pool.
    let concurrent = rt().block_on(async {
        let client = client_of(&mesh).unwrap();
        let spec = spec(&mesh, Mode::Mean, None);
        let jobs = (0..4).map(|_| ensemble_client::run(&client, &mesh.client_key, &spec, &|_| {}));
        let outcomes = futures_util::future::join_all(jobs).await;
        client.close();
        outcomes
    });
    for o in concurrent {
        let o = o.unwrap();
        assert_eq!(
            o.payload.contributors,
            vec![0, 1, 2, 3, 4],
            "{:?}",
            o.events
        );
        assert_mean(&o, &[0, 1, 2, 3, 4]);
        audit(&o.payload, &o.transcript, &receipts(&o)).unwrap();
    }
    // A prepared job (§15.1): rounds 0 and 1 before the input, then the input in round 2.
    // Its result is exact and audits like any other.
    let prepared = rt().block_on(async {
        let client = client_of(&mesh).unwrap();
        let spec = spec(&mesh, Mode::Mean, None);
        let key = &mesh.client_key;
        let job = ensemble_client::prepare(&client, key, &spec, &|_| {}).await;
        let o = ensemble_client::run_prepared(&client, key, &spec, job.unwrap(), &|_| {}).await;
        client.close();
        o
    });
    let prepared = prepared.unwrap();
    assert_eq!(prepared.payload.contributors, vec![0, 1, 2, 3, 4]);
    // A prepared job given up before its input: every member drops it at once.
    rt().block_on(async {
        let client = client_of(&mesh).unwrap();
        let spec = spec(&mesh, Mode::Mean, None);
        let job = ensemble_client::prepare(&client, &mesh.client_key, &spec, &|_| {}).await;
        let job = job.unwrap();
        let id = job.job_id();
        ensemble_client::abandon(&client, &spec, job).await;
        for m in &spec.members {
            let round = Request::EnsembleRound(EnsembleRound {
                job_id: id,
                round: 3,
                message: vec![0xa0],
            });
            match client.request(m, &round).await.unwrap() {
                Response::Error(e) => assert_eq!(e.code, ErrorCode::UnknownJob, "{}", m.name),
                other => panic!("{} still holds the abandoned job: {other:?}", m.name),
            }
        }
        client.close();
    });
    assert_mean(&prepared, &[0, 1, 2, 3, 4]);
    audit(
        &prepared.payload,
        &prepared.transcript,
        &receipts(&prepared),
    )
    .unwrap();
    // Every member logged the member receipt of each of the seven jobs.
    for i in 1..=5 {
        let log = std::fs::read(mesh.audit_of(&format!("node-{i}"))).unwrap();
        let records = quorate_protocol::audit_log::scan(&log).unwrap().records;
        assert_eq!(records.len(), 7, "node-{i}");
    }
}

#[test]
fn lying_aggregator_is_caught_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(dir.path(), &|i| {
        if i == 4 {
            "test_exit_at_round = 2\n".into()
        } else {
            String::new()
        }
    });
    let o = run_job(&mesh, &spec(&mesh, Mode::Mean, None)).unwrap();
    assert_eq!(o.payload.contributors, vec![0, 1, 2, 3]);
    assert_eq!(o.payload.dropped, vec![4]);
    let rs = receipts(&o);
    audit(&o.payload, &o.transcript, &rs).unwrap();

    // Claims a dropped member contributed.
    let mut lie = o.payload.clone();
    lie.contributors = vec![0, 1, 2, 3, 4];
    lie.dropped = vec![];
    assert!(matches!(
        audit(&lie, &o.transcript, &rs),
        Err(AuditError::Contributors { .. })
    ));
    // Hides a contributor.
    let mut lie = o.payload.clone();
    lie.contributors = vec![0, 1, 2];
    lie.dropped = vec![3, 4];
    assert!(matches!(
        audit(&lie, &o.transcript, &rs),
        Err(AuditError::Contributors { .. })
    ));
    // Lies about the result.
    let mut lie = o.payload.clone();
    lie.sum[0] = lie.sum[0].wrapping_add(1) & ((1 << lie.params.modulus_bits) - 1);
    assert_eq!(audit(&lie, &o.transcript, &rs), Err(AuditError::Sum));
    // Drops a contributor's messages from the transcript to hide it consistently: the
    // other members' signed consistency messages no longer replay.
    let mut entries = decode_transcript(&o.transcript).unwrap();
    entries.retain(|e| !(e.member == 3 && e.round >= 2));
    let forged = encode_transcript(&entries).unwrap();
    let mut lie = o.payload.clone();
    lie.transcript = transcript_digest(&forged);
    lie.contributors = vec![0, 1, 2];
    lie.dropped = vec![3, 4];
    assert!(audit(&lie, &forged, &rs).is_err());
    // A transcript that is not the one committed to.
    assert_eq!(
        audit(&o.payload, &forged, &rs),
        Err(AuditError::TranscriptDigest)
    );
    // A contributor's member receipt withheld.
    assert!(matches!(
        audit(&o.payload, &o.transcript, &rs[1..]),
        Err(AuditError::Member { .. })
    ));
}

#[test]
fn dropouts_in_every_round_complete_or_abort_clearly() {
    // node-5 (index 4) crashes on receiving the request of round r, for each r.
    for r in 0..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        let mesh = start(dir.path(), &|i| {
            if i == 4 {
                format!("test_exit_at_round = {r}\n")
            } else {
                String::new()
            }
        });
        let o = run_job(&mesh, &spec(&mesh, Mode::Mean, None))
            .unwrap_or_else(|e| panic!("crash at round {r}: {e}"));
        // A member that crashed before its masked input is not in the sum; after it, it is
        // (the survivors' shares unmask it).
        let survivors: Vec<usize> = if r <= 2 {
            vec![0, 1, 2, 3]
        } else {
            vec![0, 1, 2, 3, 4]
        };
        assert_eq!(
            o.payload.contributors,
            survivors.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            "crash at round {r}"
        );
        assert_mean(&o, &survivors);
        assert!(
            o.events.iter().any(|e| e.starts_with("node-5: dropped")),
            "{:?}",
            o.events
        );
        audit(&o.payload, &o.transcript, &receipts(&o)).unwrap();
    }
}

#[test]
fn sigkilled_member_mid_round_is_unmasked_by_the_survivors() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(dir.path(), &|_| String::new());
    let pid = mesh.nodes[2].1.id().to_string();
    // SIGKILL node-3 as round 3 (consistency check) opens: its masked input is already in.
    let progress = |m: &str| {
        if m.starts_with("round 3") {
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap();
        }
    };
    let o = run_job_with(&mesh, &spec(&mesh, Mode::Mean, None), &progress).unwrap();
    assert_eq!(o.payload.contributors, vec![0, 1, 2, 3, 4]);
    assert!(
        o.events
            .iter()
            .any(|e| e.starts_with("node-3: dropped in round 3")),
        "{:?}",
        o.events
    );
    assert_mean(&o, &[0, 1, 2, 3, 4]);
    audit(&o.payload, &o.transcript, &receipts(&o)).unwrap();
}

#[test]
fn killed_members_below_threshold_abort_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = start(dir.path(), &|_| String::new());
    // Killed with SIGKILL between jobs: three of five gone, threshold 3.
    for n in ["node-3", "node-4", "node-5"] {
        mesh.kill(n).unwrap();
    }
    let err = run_job(&mesh, &spec(&mesh, Mode::Mean, None))
        .err()
        .expect("must abort");
    let msg = err;
    assert!(msg.contains("aborted"), "{msg}");
    assert!(msg.contains("node-3: dropped in round 0"), "{msg}");
}

#[test]
fn bad_masked_inputs_are_refused_and_the_round_continues() {
    for how in ["malformed", "oversized", "short"] {
        let dir = tempfile::tempdir().unwrap();
        let mesh = start(dir.path(), &|i| {
            if i == 1 {
                format!("test_tamper_masked = \"{how}\"\n")
            } else {
                String::new()
            }
        });
        let o = run_job(&mesh, &spec(&mesh, Mode::Mean, None)).unwrap();
        assert_eq!(o.payload.contributors, vec![0, 2, 3, 4], "{how}");
        assert!(
            o.events
                .iter()
                .any(|e| e.starts_with("node-2: masked input refused")),
            "{how}: {:?}",
            o.events
        );
        assert_mean(&o, &[0, 2, 3, 4]);
        audit(&o.payload, &o.transcript, &receipts(&o)).unwrap();
    }
}

#[test]
fn wrong_round_replayed_unknown_and_malformed_messages_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(dir.path(), &|_| String::new());
    let ms = members(&mesh, 5);
    let params = EnsembleParams::new(
        Mode::Mean,
        [5; 32],
        mesh.client_key.public_key(),
        ms.iter().map(|e| e.key).collect(),
        (1..=5).map(hospital).collect(),
        2,
        3,
        None,
    )
    .unwrap();
    let job_id = [1u8; 16];
    let start = EnsembleStart {
        job_id,
        nonce: vec![2; 32],
        model: hospital(1),
        inputs: Some(vec![sample()]),
        params: params.clone(),
        index: 0,
        input_salts: vec![[9; 32]],
    };
    rt().block_on(async {
        let client = client_of(&mesh).unwrap();
        let code = |r: Response| match r {
            Response::Error(e) => e.code,
            other => panic!("expected an error, got {other:?}"),
        };
        let ask = |r: Request| {
            let c = &client;
            let e = ms[0].clone();
            async move { c.request(&e, &r).await.unwrap() }
        };
        // Round message before any start: unknown job.
        let server_msg = quorate_protocol::secagg::messages::encode_server_message(
            &params.round_config().digest(),
            &quorate_protocol::secagg::messages::ServerBody::Survivors {
                survivors: vec![0, 1, 2],
            },
        );
        let round = |round: u8, message: Vec<u8>| {
            Request::EnsembleRound(EnsembleRound {
                job_id,
                round,
                message,
            })
        };
        assert_eq!(
            code(ask(round(3, server_msg.clone())).await),
            ErrorCode::UnknownJob
        );
        // Start it; a second start of the same job is a replay.
        match ask(Request::EnsembleStart(start.clone())).await {
            Response::Ensemble(r) => assert_eq!(r.round, 0),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            code(ask(Request::EnsembleStart(start.clone())).await),
            ErrorCode::Replayed
        );
        // Round 3 while round 1 is expected: wrong round.
        assert_eq!(
            code(ask(round(3, server_msg.clone())).await),
            ErrorCode::WrongRound
        );
        // Round field and carried SecAgg message disagree: wrong round.
        assert_eq!(code(ask(round(1, server_msg)).await), ErrorCode::WrongRound);
        // Malformed round message: bad request; the node keeps serving.
        assert_eq!(
            code(ask(round(1, vec![0xff; 40])).await),
            ErrorCode::BadRequest
        );
        // A round-1 message from another session (other digest): replayed.
        let other = quorate_protocol::secagg::messages::encode_server_message(
            &[9; 32],
            &quorate_protocol::secagg::messages::ServerBody::Keys {
                members: vec![0, 1],
                envelopes: vec![],
                reveals: None,
            },
        );
        assert_eq!(code(ask(round(1, other)).await), ErrorCode::Replayed);
        // Oversized frame: refused by the transport or as too large; node still healthy.
        let huge = round(1, vec![0; 5 << 20]);
        let r = client.request(&ms[0], &huge).await;
        assert!(
            r.is_err() || matches!(r, Ok(Response::Error(_))),
            "oversized message accepted"
        );
        assert!(client.health(&ms[0]).await.is_ok());
        // The member's job map is bounded: 32 open jobs, then Busy.
        for k in 2..=32u8 {
            let mut s = start.clone();
            s.job_id = [k; 16];
            assert!(matches!(
                ask(Request::EnsembleStart(s)).await,
                Response::Ensemble(_)
            ));
        }
        let mut s = start.clone();
        s.job_id = [99; 16];
        assert_eq!(code(ask(Request::EnsembleStart(s)).await), ErrorCode::Busy);
        client.close();
    });
}

#[test]
fn cli_ensemble_with_dp_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(dir.path(), &|_| String::new());
    let out = dir.path().join("ens");
    let roster = mesh.dir.join("roster.cose");
    let admin = mesh.dir.join("admin.pub");
    // `quorate ensemble` with this mesh, its five members and `extra`.
    let ensemble = |extra: &[&str]| {
        let mut args = vec![
            "ensemble",
            "--roster",
            roster.to_str().unwrap(),
            "--admin",
            admin.to_str().unwrap(),
            "--key",
            mesh.client_key_path.to_str().unwrap(),
            "--members",
            "node-1,node-2,node-3,node-4,node-5",
        ];
        args.extend(extra);
        quorate(args)
    };
    let features = models().join("samples/features.npy");
    let o = ensemble(&[
        "--input",
        features.to_str().unwrap(),
        "--mode",
        "votes",
        "--dp",
        "2.0,1e-5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("achieved with 5 contributors"), "{t}");
    let v = quorate([
        "verify",
        out.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--admin",
        admin.to_str().unwrap(),
    ]);
    let vt = text(&v);
    assert!(v.status.success(), "{vt}");
    assert!(vt.contains("transcript replayed"), "{vt}");
    assert!(vt.contains("6 of 6 receipts verified"), "{vt}");
    // Tampering with the signed aggregate fails verification.
    let agg = out.join("aggregate.cose");
    let mut bytes = std::fs::read(&agg).unwrap();
    let AggregatePayload { .. } = quorate_protocol::ensemble::parse_aggregate(&bytes)
        .unwrap()
        .payload;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&agg, &bytes).unwrap();
    let v = quorate([
        "verify",
        out.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--admin",
        admin.to_str().unwrap(),
    ]);
    assert!(!v.status.success(), "{}", text(&v));

    // A folder of inputs (§12.6.1): one job each, two at a time, each result the one a single
    // job on the same input gives, each folder verifying alone.
    let folder = dir.path().join("patients");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&features, folder.join("a.npy")).unwrap();
    let base: Vec<f32> = sample()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (name, scale) in [("b", 0.6f32), ("c", 1.4)] {
        let x: Vec<f32> = base.iter().map(|v| v * scale).collect();
        let t = quorate_protocol::tensor::Tensor::from_f32("features", vec![1, 30], &x).unwrap();
        let doc = quorate_protocol::tensor_file::salted_tensors_json(&[t], None);
        std::fs::write(folder.join(format!("{name}.json")), doc.to_string()).unwrap();
    }
    let many = dir.path().join("many");
    let o = ensemble(&[
        "--inputs",
        folder.to_str().unwrap(),
        "--concurrency",
        "2",
        "--out",
        many.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ran       3 of 3 jobs"), "{}", text(&o));
    let result = |dir: &std::path::Path| {
        quorate_tests::read_json(&dir.join("result.json"))["result"].clone()
    };
    let mut seen = Vec::new();
    for (name, file) in [("a", "a.npy"), ("b", "b.json"), ("c", "c.json")] {
        let single = dir.path().join(format!("single-{name}"));
        let o = ensemble(&[
            "--input",
            folder.join(file).to_str().unwrap(),
            "--out",
            single.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(result(&many.join(name)), result(&single), "{name}");
        seen.push(result(&single));
        let v = quorate([
            "verify",
            many.join(name).to_str().unwrap(),
            "--roster",
            roster.to_str().unwrap(),
            "--admin",
            admin.to_str().unwrap(),
        ]);
        assert!(v.status.success(), "{}", text(&v));
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "{seen:?}");

    // An input the members refuse fails its job alone, by name; the others are written.
    let wrong =
        quorate_protocol::tensor::Tensor::from_f32("features", vec![1, 29], &base[..29]).unwrap();
    let doc = quorate_protocol::tensor_file::salted_tensors_json(&[wrong], None);
    std::fs::write(folder.join("d.json"), doc.to_string()).unwrap();
    let again = dir.path().join("again");
    let o = ensemble(&[
        "--inputs",
        folder.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ran       3 of 4 jobs"), "{}", text(&o));
    assert!(text(&o).contains("failed    d: "), "{}", text(&o));
    assert!(again.join("c/aggregate.cose").is_file());
    assert!(!again.join("d").exists());
}
