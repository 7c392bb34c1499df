//! One run of `quorate bench mesh` (§12.10): every figure measured against its same-run
//! baseline, printed as it is taken, and kept for the summary over runs (§12.10.2).

use std::path::Path;

use anyhow::Context;
use quorate_node::mesh::client::MeshClient;
use quorate_protocol::tensor::Tensor;

use super::audit::{self, Audit};
use super::batch::{self, Batch};
use super::ensemble::{self, Ensemble};
use super::latency::{self, Latency, Target, Throughput};
use super::minilm::{self, Minilm};
use super::{BenchMeshArgs, ms, us};
use crate::local::LocalMesh;

/// What one run measured.
pub struct Figures {
    /// Goal 1: one verified job against its parts.
    pub latency: Latency,
    /// Goal 2: jobs per second from many clients to node-1, signing in groups.
    pub throughput: Throughput,
    /// The same against node-2, signing every receipt alone: the baseline of group signing.
    pub alone: Throughput,
    /// Local ONNX Runtime runs per second on every core.
    pub raw_per_s: f64,
    /// Goal 2 on the transformer; `None` when its file is missing.
    pub minilm: Option<Minilm>,
    /// Goal 3.
    pub batch: Batch,
    /// Goal 4.
    pub audit: Audit,
    /// Goal 5.
    pub ensemble: Ensemble,
}

/// What every run measures on: the mesh, its client and the mesh model's job.
pub struct Bench<'a> {
    /// The bench's runtime, on which the clients run.
    pub rt: &'a tokio::runtime::Runtime,
    /// The client of the mesh.
    pub client: &'a MeshClient,
    /// The mesh, node-1 and the model every figure's jobs use.
    pub target: Target<'a>,
    /// The bundled model's bytes and its sample input.
    pub mlp: &'a [u8],
    /// See [`Self::mlp`].
    pub input: &'a Tensor,
    /// The `quorate` binary, for the processes the baselines start.
    pub exe: &'a Path,
    /// node-1's metrics address (§12.7).
    pub metrics: std::net::SocketAddr,
    /// The machine's cores.
    pub cores: usize,
}

impl Bench<'_> {
    fn mesh(&self) -> &LocalMesh {
        self.target.mesh
    }

    /// Measures every figure once, printing each as it is taken; scratch files go to `dir`.
    pub fn measure(&self, args: &BenchMeshArgs, dir: &Path) -> anyhow::Result<Figures> {
        let latency = self.latency(args, dir)?;
        let (throughput, alone, raw_per_s) = self.throughput(args)?;
        let minilm = self.minilm(args, dir)?;
        let batch = self.batch(args)?;
        let audit = self.audit(args, dir)?;
        let ensemble = self.ensemble(args)?;
        Ok(Figures {
            latency,
            throughput,
            alone,
            raw_per_s,
            minilm,
            batch,
            audit,
            ensemble,
        })
    }

    fn latency(&self, args: &BenchMeshArgs, dir: &Path) -> anyhow::Result<Latency> {
        eprintln!("latency: {} rounds…", args.rounds);
        let lat = latency::latency(
            self.rt,
            self.client,
            &self.target,
            args.rounds,
            dir,
            self.exe,
            self.metrics,
        )?;
        println!(
            "latency     verified job {} / (local ORT {} + QUIC round trip to another process {} \
             ({} B out, {} B back; {} within this process) + durable append {}) = {:.2}   goal <= 1.5",
            us(lat.job),
            us(lat.ort),
            us(lat.round_trip),
            lat.sizes.0,
            lat.sizes.1,
            us(lat.round_trip_in_process),
            us(lat.append),
            lat.ratio()
        );
        if let Some((node, commit)) = lat.inside_node {
            println!(
                "            inside the node (means from its metrics): {} from decoded request to answer, of which a group commit {}; outside it {}: the client's request and checks, QUIC, and waking threads on both sides",
                us(node),
                us(commit),
                us(lat.job - node)
            );
        }
        Ok(lat)
    }

    fn throughput(&self, args: &BenchMeshArgs) -> anyhow::Result<(Throughput, Throughput, f64)> {
        eprintln!(
            "throughput: {} clients for {} s…",
            args.clients, args.seconds
        );
        // The same run against node-2, which signs every receipt alone (§12.4.2), in
        // alternating halves: the baseline of group signing.
        let node_alone = self
            .mesh()
            .roster
            .by_name("node-2")
            .context("the mesh has no node-2")?
            .clone();
        let target_alone = Target {
            node: &node_alone,
            ..self.target
        };
        let (rt, clients, half) = (self.rt, args.clients, args.seconds / 2.0);
        let tp = latency::throughput(rt, &self.target, clients, half)?;
        let alone = latency::throughput(rt, &target_alone, clients, half)?;
        let tp = tp.merge(latency::throughput(rt, &self.target, clients, half)?);
        let alone = alone.merge(latency::throughput(rt, &target_alone, clients, half)?);
        let (jobs_per_s, failed) = (tp.jobs_per_s(), tp.failed);
        let raw_per_s = latency::raw_throughput(self.mlp, self.input, args.seconds)?;
        let cpu = tp.cpu_per_job.map_or(String::new(), |(node, clients)| {
            format!(
                "; CPU per job: node {}, clients {}",
                us(node * 1e9),
                us(clients * 1e9)
            )
        });
        println!(
            "throughput  {jobs_per_s:.0} verified jobs/s from {clients} clients ({failed} failed){cpu}; \
             {:.0}% of replies in batch receipts, {:.2} receipts per signature; \
             local ORT on {} cores {raw_per_s:.0} runs/s; ratio {:.2}   goal >= 10000 jobs/s",
            100.0 * tp.batched_share(),
            tp.receipts_per_signature(),
            self.cores,
            jobs_per_s / raw_per_s
        );
        if let Some(e) = &tp.first_error {
            println!("            first failure: {e}");
        }
        let alone_cpu = alone.cpu_per_job.map_or(String::new(), |(node, _)| {
            format!(", node CPU per job {}", us(node * 1e9))
        });
        println!(
            "            signing each receipt alone (node-2, same run): {:.0} jobs/s{alone_cpu}; \
             group signing {:.2}x",
            alone.jobs_per_s(),
            jobs_per_s / alone.jobs_per_s().max(f64::MIN_POSITIVE)
        );
        if let Some(e) = &alone.first_error {
            println!("            first failure: {e}");
        }
        Ok((tp, alone, raw_per_s))
    }

    fn minilm(&self, args: &BenchMeshArgs, dir: &Path) -> anyhow::Result<Option<Minilm>> {
        if !args.minilm.is_file() {
            println!(
                "minilm      skipped: {} is missing (./scripts/fetch-models.sh fetches it)",
                args.minilm.display()
            );
            return Ok(None);
        }
        eprintln!(
            "minilm: {} clients for {} s, {} tokens per input…",
            args.clients, args.seconds, args.minilm_seq
        );
        let m = minilm::minilm(self.rt, dir, self.exe, args)?;
        println!(
            "minilm      {:.1} verified jobs/s from {} clients ({} failed) / raw ORT {:.1} runs/s \
             (from {} threads {:.1}, from one {:.1}; {} tokens, {}, {} intra-op thread{}) = {:.2}   goal >= 0.9",
            m.jobs_per_s,
            args.clients,
            m.failed,
            m.raw_per_s,
            args.clients,
            m.raw_segments[0],
            m.raw_segments[1],
            m.seq,
            m.provider,
            m.threads,
            if m.threads == 1 { "" } else { "s" },
            m.ratio()
        );
        if let Some(e) = &m.first_error {
            println!("            first failure: {e}");
        }
        Ok(Some(m))
    }

    fn batch(&self, args: &BenchMeshArgs) -> anyhow::Result<Batch> {
        eprintln!("batch: {} runs…", args.batch);
        // 40 samples of each side: a 1,000-run batch takes a few milliseconds, and a run of
        // this machine's noise can move a median of fewer by several percent.
        let b = batch::batch(self.mlp, self.input, args.batch, 40)?;
        // The attested batch makes its commitments on a second thread: its CPU time beside
        // its wall time says what the figure costs the machine.
        let cpu = b.attested_cpu.map_or(String::new(), |c| {
            format!(" (CPU {}, {} a run)", ms(c), us(c / b.n as f64))
        });
        println!(
            "batch       {} attested runs, one batch receipt {}{cpu} / {} raw ORT calls {} = {:.2}   goal <= 1.25",
            b.n,
            ms(b.attested),
            b.n,
            ms(b.raw),
            b.ratio()
        );
        // §12.10.1: every hand-over between the batch's threads pays this.
        match b.round_trip {
            Some(rt) => println!(
                "            a cache line's round trip between two cores before each batch: {:.0} ns median ({:.0}-{:.0} ns)",
                rt.median, rt.min, rt.max
            ),
            None => println!(
                "            a cache line's round trip between two cores: not measured (no second core kept up)"
            ),
        }
        Ok(b)
    }

    fn audit(&self, args: &BenchMeshArgs, dir: &Path) -> anyhow::Result<Audit> {
        eprintln!(
            "audit: writing and verifying a log of {} receipts…",
            args.audit
        );
        let a = audit::audit(self.exe, dir, args.audit, 3)?;
        println!(
            "audit       quorate verify {:.0} receipts/s / ({} cores x raw verify_strict {:.0}/s) = {:.2}   goal >= 0.9   (quorate's strict check, same verdicts: {:.0}/s on one core)",
            a.verify_rate,
            self.cores,
            a.raw_one_core,
            a.ratio(),
            a.ours_one_core
        );
        Ok(a)
    }

    fn ensemble(&self, args: &BenchMeshArgs) -> anyhow::Result<Ensemble> {
        eprintln!("ensembles: {} rounds…", args.ensembles);
        let e = ensemble::ensemble(
            self.rt,
            self.client,
            self.mesh(),
            &args.models,
            self.input,
            args.ensembles,
        )?;
        println!(
            "ensemble    SecAgg ensemble of 5 from its input {} (rounds 0-1 prepared before it came: {}) / 5 concurrent plain verified jobs {} = {:.2}   goal <= 3",
            ms(e.ensemble),
            ms(e.preparation),
            ms(e.plain),
            e.ratio()
        );
        println!(
            "            started with its input instead, all five rounds after it: {} = {:.2}x the plain jobs",
            ms(e.unprepared),
            e.unprepared_ratio()
        );
        let by_round: Vec<String> = ensemble::PHASE_NAMES
            .iter()
            .zip(e.phases)
            .map(|(name, ns)| format!("{name} {}", ms(ns)))
            .collect();
        println!(
            "            its rounds: {}; one round of 5 concurrent requests that do nothing (health) {}, five of them {:.2}x the plain jobs",
            by_round.join(", "),
            ms(e.empty_round),
            5.0 * e.empty_round / e.plain
        );
        Ok(e)
    }
}

impl Figures {
    /// The run's last line: `latency/parts=R1 jobs_per_s=N1 batch/raw=R2 audit/cores=R3
    /// ensemble/plain=R4`.
    pub fn summary(&self) -> String {
        summary_line(
            self.latency.ratio(),
            self.throughput.jobs_per_s(),
            self.batch.ratio(),
            self.audit.ratio(),
            self.ensemble.ratio(),
        )
    }

    /// Every figure and its parts, as `--json` gives them (§12.10).
    pub fn to_json(&self, args: &BenchMeshArgs) -> serde_json::Value {
        let (lat, tp, alone, b, a, e) = (
            &self.latency,
            &self.throughput,
            &self.alone,
            &self.batch,
            &self.audit,
            &self.ensemble,
        );
        serde_json::json!({
            "latency": {"job_ns": lat.job, "ort_ns": lat.ort, "round_trip_ns": lat.round_trip,
                        "round_trip_in_process_ns": lat.round_trip_in_process,
                        "append_ns": lat.append, "request_bytes": lat.sizes.0,
                        "node_mean_ns": lat.inside_node.map(|n| n.0),
                        "commit_mean_ns": lat.inside_node.map(|n| n.1),
                        "response_bytes": lat.sizes.1, "ratio": lat.ratio()},
            "throughput": {"clients": args.clients, "jobs_per_s": tp.jobs_per_s(),
                           "failed": tp.failed,
                           "node_cpu_s_per_job": tp.cpu_per_job.map(|c| c.0),
                           "clients_cpu_s_per_job": tp.cpu_per_job.map(|c| c.1),
                           "batch_receipts": tp.batched,
                           "receipts_per_signature": tp.receipts_per_signature(),
                           "signing_alone_jobs_per_s": alone.jobs_per_s(),
                           "signing_alone_node_cpu_s_per_job": alone.cpu_per_job.map(|c| c.0),
                           "raw_ort_runs_per_s": self.raw_per_s},
            "minilm": self.minilm.as_ref().map(|m| serde_json::json!({
                "clients": args.clients, "tokens": m.seq, "intra_threads": m.threads,
                "provider": m.provider, "mesh_segments": m.mesh_segments,
                "raw_segments": m.raw_segments,
                "jobs_per_s": m.jobs_per_s, "failed": m.failed,
                "raw_ort_runs_per_s": m.raw_per_s, "ratio": m.ratio()})),
            "batch": {"n": b.n, "attested_ns": b.attested, "attested_cpu_ns": b.attested_cpu,
                      "raw_ns": b.raw, "ratio": b.ratio(),
                      "core_round_trip_ns": b.round_trip.map(|rt| serde_json::json!(
                          {"median": rt.median, "min": rt.min, "max": rt.max}))},
            "audit": {"n": a.n, "verify_per_s": a.verify_rate, "raw_one_core_per_s": a.raw_one_core,
                      "quorate_strict_one_core_per_s": a.ours_one_core, "ratio": a.ratio()},
            "ensemble": {"plain_ns": e.plain, "ensemble_ns": e.ensemble, "ratio": e.ratio(),
                         "preparation_ns": e.preparation, "unprepared_ns": e.unprepared,
                         "unprepared_ratio": e.unprepared_ratio(),
                         "phases_ns": ensemble::PHASE_NAMES.iter().zip(e.phases)
                             .map(|(name, ns)| serde_json::json!({"phase": name, "ns": ns}))
                             .collect::<Vec<_>>(),
                         "empty_round_ns": e.empty_round},
            "summary": self.summary(),
        })
    }
}

/// The summary line of one run, or of the medians over runs (§12.10.2).
pub fn summary_line(
    latency: f64,
    jobs_per_s: f64,
    batch: f64,
    audit: f64,
    ensemble: f64,
) -> String {
    format!(
        "latency/parts={latency:.2} jobs_per_s={jobs_per_s:.0} batch/raw={batch:.2} audit/cores={audit:.2} ensemble/plain={ensemble:.2}"
    )
}
