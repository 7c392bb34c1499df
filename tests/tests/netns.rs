//! Multi-host runs in network namespaces (needs root, as CI has): three `quorate node`
//! processes and the client each in a namespace of their own, every datagram between client
//! and node passing a user-space impairment relay (`quorate_tests::impair`) in the root
//! namespace. The client runs the real CLI (`quorate infer --replicas`, `quorate pipeline`,
//! `quorate ensemble`) inside its namespace.
//!
//! Profiles: `wan40` (40 ms RTT ± 10 ms jitter, 1% loss each way), `wan200` (200 ms RTT,
//! with a compute budget of 1 s, so the jobs succeed only because network time follows the
//! measured RTT, §7.6.1), and `partition` (node-2 cut off for 10 s starting in the middle of
//! each job). Every job ends with the right answer, checked against the whole model run
//! locally and by `quorate verify`, or with a clear abort and no result files: never a wrong
//! or sub-quorum answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_cli::commands::pipeline::write_split;
use quorate_cli::local::{Custom, LocalMesh, Placement};
use quorate_protocol::tensor::Tensor;
use quorate_tests::impair::{Impairment, Relay};
use quorate_tests::netns::Lab;
use quorate_tests::{
    quorate, quorate_bin, read_json, repo_root, tensors, text, whole_model_outputs,
};

/// The profiles run one after another: each owns namespaces, a mesh and timing-sensitive
/// partitions, and two cores are shared with other work.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The port every node listens on inside its own namespace.
const NODE_PORT: u16 = 4433;

const NODES: usize = 3;

fn models() -> PathBuf {
    repo_root().join("models")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Namespaces, relays and a mesh whose nodes are reachable only through the relays. Fields
/// drop in order: the nodes stop, then the relays, then the namespaces go.
struct Bed {
    mesh: LocalMesh,
    relays: Vec<Relay>,
    rt: tokio::runtime::Runtime,
    lab: Lab,
    stages: PathBuf,
    dir: tempfile::TempDir,
}

impl Bed {
    fn start(link: Impairment, seed: u64) -> Self {
        let lab = Lab::create(NODES).unwrap_or_else(|e| {
            panic!("this test needs network namespaces (root and iproute2; CI runs as root): {e}")
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let relays: Vec<Relay> = (1..=NODES)
            .map(|i| {
                rt.block_on(Relay::start(
                    (lab.relay_ip(), 0).into(),
                    lab.node_gateway_ip(i),
                    (lab.node_ip(i), NODE_PORT).into(),
                    link,
                    link,
                    seed + i as u64,
                ))
                .unwrap()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
        let files = write_split(&models().join("mlp.onnx"), "h1,h2", &stages).unwrap();
        let placement = |i: usize| {
            Some(Placement {
                listen: (lab.node_ip(i + 1), NODE_PORT).into(),
                advertise: relays[i].address(),
                prefix: Lab::exec_prefix(&lab.node_ns(i + 1)),
            })
        };
        let mesh = LocalMesh::start_custom(
            &dir.path().join("mesh"),
            NODES,
            &models(),
            &quorate_bin(),
            &Custom {
                extra_models: &|_| files.clone(),
                placement: &placement,
                ..Custom::default()
            },
        )
        .unwrap();
        Self {
            mesh,
            relays,
            rt,
            lab,
            stages,
            dir,
        }
    }

    /// Runs `quorate ARGS` inside the client's namespace, with the mesh flags.
    fn client(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(Lab::exec_prefix(&self.lab.client_ns()).iter().skip(1))
            .arg(quorate_bin())
            .arg(args[0])
            .args(["--roster", s(&self.mesh.dir.join("roster.cose"))])
            .args(["--admin", s(&self.mesh.dir.join("admin.pub"))])
            .args(["--key", s(&self.mesh.client_key_path)])
            .args(&args[1..]);
        c.output().unwrap()
    }

    /// `quorate verify DIR` against the mesh's roster, in the root namespace (offline).
    fn verify(&self, dir: &Path) -> (bool, String) {
        let o = quorate([
            "verify",
            s(dir),
            "--roster",
            s(&self.mesh.dir.join("roster.cose")),
            "--admin",
            s(&self.mesh.dir.join("admin.pub")),
        ]);
        (o.status.success(), text(&o))
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Cuts node-2 off from `after` now for `length`.
    fn partition_node_2(&self, after: Duration, length: Duration) {
        let _rt = self.rt.enter();
        self.relays[1].partition_later(after, length);
    }

    /// Waits until node-2's link is whole again.
    fn wait_healed(&self) {
        let start = Instant::now();
        while self.relays[1].control().is_partitioned() {
            assert!(start.elapsed() < Duration::from_secs(60), "never healed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a client command ended with.
#[derive(Debug)]
enum Ended {
    /// Exit 0; the output text.
    Answered(String),
    /// A non-zero exit; the output text (the reason).
    Aborted(String),
}

fn ended(name: &str, o: &Output) -> Ended {
    // Shown with --nocapture, and by the test harness when the test fails.
    eprintln!("== {name} (exit {:?})\n{}", o.status.code(), text(o));
    if o.status.success() {
        Ended::Answered(text(o))
    } else {
        let t = text(o);
        assert!(
            t.contains("error") || t.contains("abort") || t.contains("fail"),
            "an abort must say why: {t}"
        );
        Ended::Aborted(t)
    }
}

/// A verified job: 2 replicas, both must agree (quorum 2), failover to the third node.
fn verified_job(bed: &Bed, name: &str, budget: &str, want: &[Tensor]) -> Ended {
    let out = bed.out(name);
    let o = bed.client(&[
        "infer",
        "--model",
        "mlp",
        "--models",
        s(&models()),
        "--input",
        s(&models().join("samples/features.npy")),
        "--replicas",
        "2",
        "--quorum",
        "2",
        "--policy",
        "exact",
        "--timeout",
        budget,
        "--out",
        s(&out),
    ]);
    let e = ended(name, &o);
    match &e {
        Ended::Answered(t) => {
            assert_eq!(tensors(&out.join("outputs.json")), want, "{name}: {t}");
            let verdict = read_json(&out.join("verdict.json"));
            let agreeing = verdict["agreeing"].as_array().unwrap();
            assert!(
                agreeing.len() >= 2,
                "{name}: accepted below the quorum: {t}"
            );
            assert_eq!(
                verdict["disagreeing"].as_array().unwrap().len(),
                0,
                "{name}: {t}"
            );
            let receipts = std::fs::read_dir(out.join("receipts")).unwrap().count();
            assert!(receipts >= 2, "{name}: fewer receipts than the quorum: {t}");
            let (ok, v) = bed.verify(&out.join("receipts"));
            assert!(ok, "{name}: receipts do not verify: {v}");
        }
        Ended::Aborted(_) => assert!(!out.join("outputs.json").exists(), "{name}"),
    }
    e
}

/// A pipeline: mlp cut at h1,h2 into three stages, each on 2 replicas that must agree.
fn pipeline_job(bed: &Bed, name: &str, budget: &str, want: &[Tensor]) -> Ended {
    let out = bed.out(name);
    let o = bed.client(&[
        "pipeline",
        "--stages",
        s(&bed.stages),
        "--replicas",
        "2",
        "--input",
        s(&models().join("samples/features.npy")),
        "--timeout",
        budget,
        "--out",
        s(&out),
    ]);
    let e = ended(name, &o);
    match &e {
        Ended::Answered(t) => {
            assert_eq!(tensors(&out.join("outputs.json")), want, "{name}: {t}");
            let (ok, v) = bed.verify(&out);
            assert!(ok, "{name}: the chain does not verify: {v}");
        }
        Ended::Aborted(_) => assert!(!out.join("outputs.json").exists(), "{name}"),
    }
    e
}

/// A private ensemble of the three nodes' hospital models with `threshold`; returns how it
/// ended and, when answered, the contributors (0-based member indices).
fn ensemble_job(bed: &Bed, name: &str, budget: &str, threshold: usize) -> (Ended, Vec<usize>) {
    let out = bed.out(name);
    let o = bed.client(&[
        "ensemble",
        "--members",
        "node-1,node-2,node-3",
        "--models",
        s(&models()),
        "--input",
        s(&models().join("samples/features.npy")),
        "--mode",
        "mean",
        "--threshold",
        &threshold.to_string(),
        "--timeout",
        budget,
        "--out",
        s(&out),
    ]);
    let e = ended(name, &o);
    let mut contributors = Vec::new();
    match &e {
        Ended::Answered(t) => {
            let r = read_json(&out.join("result.json"));
            contributors = r["contributors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() as usize)
                .collect();
            assert!(
                contributors.len() >= threshold,
                "{name}: answered from {contributors:?}, below the threshold {threshold}: {t}"
            );
            // The mean of exactly the contributors' plaintext probabilities, within the
            // fixed-point error.
            let expected = read_json(&models().join("samples/expected.json"));
            let got: Vec<f64> = r["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(got.len(), 2, "{name}");
            for (c, g) in got.iter().enumerate() {
                let want = contributors
                    .iter()
                    .map(|&m| {
                        expected[format!("hospital-{}.onnx", m + 1)][0][c]
                            .as_f64()
                            .unwrap()
                    })
                    .sum::<f64>()
                    / contributors.len() as f64;
                assert!((g - want).abs() < 1e-4, "{name}: class {c}: {g} vs {want}");
            }
            let (ok, v) = bed.verify(&out);
            assert!(ok, "{name}: the aggregate does not verify: {v}");
        }
        Ended::Aborted(_) => assert!(!out.join("result.json").exists(), "{name}"),
    }
    (e, contributors)
}

fn answered(e: &Ended, what: &str) {
    assert!(matches!(e, Ended::Answered(_)), "{what}: {e:?}");
}

/// 40 ms RTT ± 10 ms jitter with 1% loss on every link: QUIC recovers, every job answers.
#[test]
fn wan40_jobs_answer_correctly_over_lossy_jittery_links() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // 20 ms ± 5 ms each way: 40 ms ± 10 ms on the round trip; besides the loss, 1% of the
    // datagrams arrive twice and 1% are held back behind later ones.
    let link = Impairment {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss: 0.01,
        duplicate: 0.01,
        reorder: 0.01,
    };
    let bed = Bed::start(link, 40);
    let want = whole_model_outputs(bed.dir.path());
    answered(&verified_job(&bed, "verified", "10", &want), "verified");
    answered(&pipeline_job(&bed, "pipeline", "10", &want), "pipeline");
    let (e, contributors) = ensemble_job(&bed, "ensemble", "10", 3);
    answered(&e, "ensemble");
    assert_eq!(contributors, vec![0, 1, 2], "nobody drops on a lossy link");
    for (i, r) in bed.relays.iter().enumerate() {
        let (fwd, back) = (
            r.control().forward.snapshot(),
            r.control().backward.snapshot(),
        );
        assert!(
            fwd.0 > 0 && back.0 > 0,
            "no traffic through node-{}'s relay",
            i + 1
        );
        eprintln!(
            "wan40: node-{} link (delivered, lost, cut, duplicated): to node {fwd:?}, back {back:?}",
            i + 1
        );
    }
    eprintln!("wan40: {:?}", started.elapsed());
}

/// 200 ms RTT with a compute budget of 1 s: the client adds network time for the measured
/// RTT on top of the budget (§7.6.1), so every job still answers.
#[test]
fn wan200_jobs_answer_with_a_short_compute_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let bed = Bed::start(Impairment::rtt(Duration::from_millis(200)), 200);
    let want = whole_model_outputs(bed.dir.path());
    answered(&verified_job(&bed, "verified", "1", &want), "verified");
    answered(&pipeline_job(&bed, "pipeline", "1", &want), "pipeline");
    let (e, contributors) = ensemble_job(&bed, "ensemble", "1", 3);
    answered(&e, "ensemble");
    assert_eq!(contributors, vec![0, 1, 2]);
    eprintln!("wan200: {:?}", started.elapsed());
}

/// Node-2 is cut off for 10 s starting 200 ms after each client command starts, while it
/// connects, checks health or exchanges rounds. An ensemble cannot finish that fast at 40 ms
/// RTT (a handshake, a health check and six rounds, each at least one round trip), so its
/// outcome is certain; a verified job or a pipeline that happens to finish first must be
/// right all the same. With a compute budget of 2 s the client gives up on node-2 after
/// about 3 s (§7.6.1).
#[test]
fn a_node_partitioned_mid_job_is_replaced_or_the_job_aborts_clearly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let link = Impairment {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        ..Impairment::NONE
    };
    let bed = Bed::start(link, 10);
    let want = whole_model_outputs(bed.dir.path());
    let cut = || bed.partition_node_2(Duration::from_millis(200), Duration::from_secs(10));

    // Verified job, 2 replicas of 3 nodes, quorum 2: node-2 fails or is never picked, the
    // third node takes its place, the answer is right.
    cut();
    answered(
        &verified_job(&bed, "verified", "2", &want),
        "verified job with one node cut off",
    );
    bed.wait_healed();

    // Pipeline, every stage on 2 of 3 nodes: a stage replica on node-2 is replaced.
    cut();
    answered(
        &pipeline_job(&bed, "pipeline", "2", &want),
        "pipeline with one node cut off",
    );
    bed.wait_healed();

    // Ensemble with threshold 2 of 3: completes from the survivors, exact for them.
    cut();
    let (e, contributors) = ensemble_job(&bed, "ensemble-t2", "2", 2);
    answered(&e, "ensemble with threshold 2 and one member cut off");
    assert_eq!(
        contributors,
        vec![0, 2],
        "node-2 was cut off and must have dropped"
    );
    bed.wait_healed();

    // Ensemble needing all three: a clear abort naming the missing member.
    cut();
    let (e, _) = ensemble_job(&bed, "ensemble-t3", "2", 3);
    match e {
        Ended::Aborted(t) => assert!(t.contains("node-2"), "the abort names node-2: {t}"),
        Ended::Answered(t) => panic!("answered without node-2 although all three were needed: {t}"),
    }
    bed.wait_healed();

    // Healed: node-2 serves again and all three agree.
    let out = bed.out("after");
    let o = bed.client(&[
        "infer",
        "--model",
        "mlp",
        "--models",
        s(&models()),
        "--input",
        s(&models().join("samples/features.npy")),
        "--replicas",
        "3",
        "--quorum",
        "3",
        "--policy",
        "exact",
        "--timeout",
        "2",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "after the partition: {}", text(&o));
    assert_eq!(tensors(&out.join("outputs.json")), want);
    eprintln!("partition: {:?}", started.elapsed());
}
