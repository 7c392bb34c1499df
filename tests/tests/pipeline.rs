//! Pipeline jobs over real QUIC (§13.2–§13.5): a split model run stage by stage on node
//! processes, its receipt chain verified offline, tampered chains localised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quorate_cli::commands::pipeline::write_split;
use quorate_cli::local::LocalMesh;
use quorate_protocol::chain::ReceiptChain;
use quorate_tests::{
    quorate, quorate_bin, read_json, repo_root, tensors, text, whole_model_outputs,
};

fn models() -> PathBuf {
    repo_root().join("models")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A mesh of `n` nodes that all serve the stages of mlp.onnx cut at `cuts` (written to
/// `dir/stages`).
fn stage_mesh(dir: &Path, n: usize, cuts: &str) -> (LocalMesh, PathBuf) {
    stage_mesh_with(dir, n, cuts, None)
}

/// [`stage_mesh`] where node index `odd.0` gets the extra configuration `odd.1`.
fn stage_mesh_with(
    dir: &Path,
    n: usize,
    cuts: &str,
    odd: Option<(usize, &str)>,
) -> (LocalMesh, PathBuf) {
    let stages = dir.join("stages");
    let files = write_split(&models().join("mlp.onnx"), cuts, &stages).unwrap();
    let mesh = LocalMesh::start_with_models(
        &dir.join("mesh"),
        n,
        &models(),
        &quorate_bin(),
        &|i| match odd {
            Some((k, config)) if k == i => config.to_string(),
            _ => String::new(),
        },
        &|_| files.clone(),
    )
    .unwrap();
    (mesh, stages)
}

fn pipeline(mesh: &LocalMesh, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "pipeline".to_string(),
        "--roster".into(),
        s(&mesh.dir.join("roster.cose")).into(),
        "--admin".into(),
        s(&mesh.dir.join("admin.pub")).into(),
        "--key".into(),
        s(&mesh.client_key_path).into(),
        "--input".into(),
        s(&models().join("samples/features.npy")).into(),
        "--out".into(),
        s(out).into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    quorate(args)
}

fn verify_chain(mesh: &LocalMesh, path: &Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let roster = mesh.dir.join("roster.cose");
    let admin = mesh.dir.join("admin.pub");
    let mut args = vec![
        "verify",
        s(path),
        "--roster",
        s(&roster),
        "--admin",
        s(&admin),
        "--json",
    ];
    args.extend(extra);
    let o = quorate(args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("verify printed no JSON: {}", text(&o)));
    (o.status.success(), v)
}

#[test]
fn pipeline_with_replicas_is_bit_exact_and_its_chain_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, stages) = stage_mesh(dir.path(), 3, "h1,h2");
    let out = dir.path().join("run");
    let o = pipeline(&mesh, &out, &["--stages", s(&stages), "--replicas", "2"]);
    assert!(o.status.success(), "{}", text(&o));

    // Bit-identical to the whole model on one machine.
    assert_eq!(
        tensors(&out.join("outputs.json")),
        whole_model_outputs(dir.path())
    );

    // The chain: 3 stages, 2 receipts each, checked against the split's stages.json.
    let chain = ReceiptChain::from_cbor(&std::fs::read(out.join("chain.qchain")).unwrap()).unwrap();
    assert_eq!(chain.stages.len(), 3);
    assert!(chain.stages.iter().all(|st| st.receipts.len() == 2));
    let (ok, v) = verify_chain(
        &mesh,
        &out.join("chain.qchain"),
        &[
            "--pipeline",
            s(&stages.join("stages.json")),
            "--tensor",
            &format!("probabilities={}", s(&out.join("outputs.json"))),
        ],
    );
    assert!(ok, "{v}");
    assert_eq!(v["chains"][0]["stages"].as_array().unwrap().len(), 3);
    assert_eq!(v["chains"][0]["tensors_checked"][0], "probabilities");

    // The whole output directory: chain plus every receipt file.
    let (ok, v) = verify_chain(&mesh, &out, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["receipts"].as_array().unwrap().len(), 6);

    // Against another split's declaration the chain is refused at stage 1.
    let other = dir.path().join("other");
    write_split(&models().join("mlp.onnx"), "h1,h3", &other).unwrap();
    let (ok, v) = verify_chain(
        &mesh,
        &out.join("chain.qchain"),
        &["--pipeline", s(&other.join("stages.json"))],
    );
    assert!(!ok);
    assert_eq!(v["chains"][0]["broken"]["stage"], 2, "{v}");
    assert_eq!(v["chains"][0]["broken"]["error"], "declaration_mismatch");

    // Tampering with real receipts: each breaks the chain at the stage it touches.
    let tamper = |name: &str, f: &dyn Fn(&mut ReceiptChain)| {
        let mut c = chain.clone();
        f(&mut c);
        let p = dir.path().join(format!("{name}.qchain"));
        std::fs::write(&p, c.to_cbor().unwrap()).unwrap();
        let (ok, v) = verify_chain(&mesh, &p, &[]);
        assert!(!ok, "{name}: {v}");
        v["chains"][0]["broken"].clone()
    };
    // Stage 2's cross-check promoted to the linked receipt: stage 3 points at the other one.
    let b = tamper("promoted", &|c| c.stages[1].receipts.swap(0, 1));
    assert_eq!(
        (b["stage"].as_u64(), b["error"].as_str()),
        (Some(3), Some("broken_previous"))
    );
    // Stages 2 and 3 swapped, declaration included: stage 2 now reads h2, which nobody made.
    let b = tamper("swapped", &|c| c.stages.swap(1, 2));
    assert_eq!(b["stage"], 2, "{b}");
    // A receipt of stage 1 declared as stage 2's.
    let b = tamper("wrong_model", &|c| {
        c.stages[1].receipts[0] = c.stages[0].receipts[0].clone()
    });
    assert_eq!(
        (b["stage"].as_u64(), b["error"].as_str()),
        (Some(2), Some("wrong_stage_model"))
    );
    // A flipped signature byte.
    let b = tamper("bad_sig", &|c| {
        let r = &mut c.stages[2].receipts[1];
        let n = r.len() - 1;
        r[n] ^= 1;
    });
    assert_eq!(
        (
            b["stage"].as_u64(),
            b["receipt"].as_u64(),
            b["error"].as_str()
        ),
        (Some(3), Some(1), Some("bad_signature"))
    );
}

#[test]
fn audit_with_probability_one_cross_checks_every_stage_and_model_cuts_split_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, _) = stage_mesh(dir.path(), 2, "h1,h2,h3");
    let out = dir.path().join("run");
    let o = pipeline(
        &mesh,
        &out,
        &["--model", "mlp", "--at", "h1,h2,h3", "--audit", "1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary = read_json(&out.join("pipeline.json"));
    let stages = summary["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    for st in stages {
        assert_eq!(st["audited"], true, "{summary}");
        let nodes: Vec<&str> = st["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["node"].as_str().unwrap())
            .collect();
        assert_eq!(nodes.len(), 2);
        assert_ne!(nodes[0], nodes[1]);
    }
    assert_eq!(
        tensors(&out.join("outputs.json")),
        whole_model_outputs(dir.path())
    );
    let (ok, v) = verify_chain(&mesh, &out.join("chain.qchain"), &[]);
    assert!(ok, "{v}");

    // P = 0: one node per stage; more replicas than nodes: a clear refusal.
    let o = pipeline(
        &mesh,
        &dir.path().join("p0"),
        &["--model", "mlp", "--at", "h1,h2,h3", "--audit", "0"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let chain =
        ReceiptChain::from_cbor(&std::fs::read(dir.path().join("p0/chain.qchain")).unwrap())
            .unwrap();
    assert!(chain.stages.iter().all(|st| st.receipts.len() == 1));
    let o = pipeline(
        &mesh,
        &dir.path().join("r3"),
        &["--model", "mlp", "--at", "h1,h2,h3", "--replicas", "3"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("needs 3 distinct nodes"), "{}", text(&o));
    // A split the nodes do not serve: refused before anything runs, naming the stage.
    let o = pipeline(
        &mesh,
        &dir.path().join("h1"),
        &["--model", "mlp", "--at", "h1"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no reachable node serves stage 1"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("h1/chain.qchain").exists());
    // A stages directory that is not one.
    let o = pipeline(&mesh, &dir.path().join("x"), &["--stages", s(dir.path())]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not a `quorate split` directory"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_node_poisoning_its_stage_activation_is_localised_named_and_proven_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // node-2 adds noise of 1e-3 to whatever stage 2 computes (h2), and only there.
    let (mesh, stages) = stage_mesh_with(
        dir.path(),
        3,
        "h1,h2",
        Some((
            1,
            "test_misbehave = \"noise:1e-3\"\ntest_misbehave_model = \"stage-2.onnx\"\n",
        )),
    );
    for (mode, extra) in [
        ("replicas", ["--replicas", "2"]),
        ("audit", ["--audit", "1"]),
    ] {
        let out = dir.path().join(mode);
        let mut args = vec!["--stages", s(&stages)];
        args.extend(extra);
        let o = pipeline(&mesh, &out, &args);
        assert!(o.status.success(), "{mode}: {}", text(&o));
        assert!(
            text(&o).contains("caught    stage 2: node node-2"),
            "{mode}: {}",
            text(&o)
        );

        // The majority's result goes on: still bit-identical to the whole model.
        assert_eq!(
            tensors(&out.join("outputs.json")),
            whole_model_outputs(&dir.path().join(mode))
        );
        let summary = read_json(&out.join("pipeline.json"));
        let caught = summary["caught"].as_array().unwrap();
        assert_eq!(caught.len(), 1, "{summary}");
        assert_eq!(
            (caught[0]["stage"].as_u64(), caught[0]["node"].as_str()),
            (Some(2), Some("node-2"))
        );

        // The evidence bundle convicts node-2, and only node-2, offline.
        let (ok, v) = verify_chain(
            &mesh,
            &out.join(caught[0]["evidence"].as_str().unwrap()),
            &[],
        );
        assert!(ok, "{v}");
        let convicted: Vec<&str> = v["bundles"][0]["convicted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["signer"].as_str().unwrap())
            .collect();
        assert_eq!(convicted, ["node-2"], "{v}");

        // The chain holds only the agreeing receipts and verifies.
        let (ok, v) = verify_chain(
            &mesh,
            &out.join("chain.qchain"),
            &["--pipeline", s(&stages.join("stages.json"))],
        );
        assert!(ok, "{v}");
        let stage2: Vec<&str> = v["chains"][0]["stages"][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(!stage2.contains(&"node-2"), "{v}");
        assert_eq!(stage2.len(), 2);
    }
}

#[test]
fn demo_pipeline_part_verifies_its_chain_and_convicts_the_poisoned_stage() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let o = quorate(["demo", "--nodes", "3", "--keep", s(&keep)]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("== a split pipeline across nodes"), "{t}");
    assert!(t.contains("receipt chain of job"), "{t}");
    assert!(t.contains("stage 2 localised: node-3"), "{t}");
    // An auditor re-checks the kept files with the pipeline mesh's roster.
    let p = keep.join("pipeline");
    let o = quorate([
        "verify",
        s(&p.join("run")),
        "--roster",
        s(&p.join("mesh/roster.cose")),
        "--admin",
        s(&p.join("mesh/admin.pub")),
        "--pipeline",
        s(&p.join("stages/stages.json")),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["chains"][0]["ok"], true, "{v}");
    assert_eq!(v["bundles"][0]["convicted"][0]["signer"], "node-3", "{v}");
}

#[test]
fn failed_and_crashed_stage_nodes_are_replaced_and_the_pipeline_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // Four nodes serve every stage; node-1 answers every stage with a receipt that fails the
    // client's checks, and node-3 crashes before the job. Every stage must end up served by
    // exactly the two healthy nodes.
    let (mut mesh, stages) = stage_mesh_with(
        dir.path(),
        4,
        "h1,h2",
        Some((0, "test_misbehave = \"garbage\"\n")),
    );
    mesh.kill("node-3").unwrap();
    let out = dir.path().join("run");
    let o = pipeline(&mesh, &out, &["--stages", s(&stages), "--replicas", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tensors(&out.join("outputs.json")),
        whole_model_outputs(dir.path())
    );
    let summary = read_json(&out.join("pipeline.json"));
    let stages_run = summary["stages"].as_array().unwrap();
    assert_eq!(stages_run.len(), 3);
    let mut replaced = 0;
    for st in stages_run {
        let mut signers: Vec<&str> = st["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["node"].as_str().unwrap())
            .collect();
        signers.sort_unstable();
        assert_eq!(signers, ["node-2", "node-4"], "{st}");
        for f in st["failed"].as_array().unwrap() {
            assert_eq!(f, "node-1", "{st}");
            replaced += 1;
        }
    }
    // Stages rotate the candidate order, so node-1 is asked (and replaced) at least once.
    assert!(replaced >= 1, "{summary}");
    let (ok, v) = verify_chain(&mesh, &out, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["receipts"].as_array().unwrap().len(), 6);
}
