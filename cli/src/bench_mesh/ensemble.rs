//! Goal 5 of the hot path: one SecAgg ensemble of five members (§15) against the same five
//! inferences sent as plain verified jobs at once (§15.8). The figure is a prepared job, timed
//! from its input: its rounds 0 and 1 ran before, as an aggregator that keeps a prepared job
//! ready runs them (§15.1); a job started with its input is timed beside it.

use std::sync::Mutex;
use std::time::Instant;

use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::tensor::Tensor;

use super::sample::{interleaved_prepared, median};
use crate::local::LocalMesh;

/// Medians in nanoseconds.
pub struct Ensemble {
    /// Five plain verified jobs, one per member, sent concurrently.
    pub plain: f64,
    /// One prepared ensemble job over the same five members and models (§15.1), from its
    /// input to its signed aggregate receipt: rounds 2 to 4.
    pub ensemble: f64,
    /// Rounds 0 and 1 of a prepared job, run before its input (off the figure's clock).
    pub preparation: f64,
    /// One ensemble job started with its input: all five rounds after the input.
    pub unprepared: f64,
    /// The unprepared job's phases, medians over the same samples: the aggregator's set-up,
    /// then each round from its requests leaving to the next round's (the start with its
    /// model runs and round-0 keys, ShareKeys, MaskedInputCollection, ConsistencyCheck), then
    /// Unmasking with the sum and the aggregate receipt.
    pub phases: [f64; PHASES],
    /// One request that does no work (`health`) to each of the five members at once: what a
    /// round costs before any of its work.
    pub empty_round: f64,
}

/// Set-up, five rounds.
pub const PHASES: usize = 6;

/// What the phases are called in the report.
pub const PHASE_NAMES: [&str; PHASES] = [
    "set-up",
    "start",
    "share keys",
    "masked input",
    "consistency",
    "unmasking",
];

impl Ensemble {
    /// The prepared ensemble over plain: the figure of goal 5.
    pub fn ratio(&self) -> f64 {
        self.ensemble / self.plain
    }

    /// The unprepared ensemble over plain.
    pub fn unprepared_ratio(&self) -> f64 {
        self.unprepared / self.plain
    }
}

/// Samples both in turn, `rounds` times each, on nodes `node-1..=5` serving
/// `hospital-1..=5.onnx` from `models`.
pub fn ensemble(
    rt: &tokio::runtime::Runtime,
    client: &MeshClient,
    mesh: &LocalMesh,
    models: &std::path::Path,
    input: &Tensor,
    rounds: usize,
) -> anyhow::Result<Ensemble> {
    let digests = (1..=5)
        .map(|i| {
            let path = models.join(format!("hospital-{i}.onnx"));
            Ok(sha256(&std::fs::read(&path).map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e}", path.display())
            })?))
        })
        .collect::<anyhow::Result<Vec<[u8; 32]>>>()?;
    let members = (1..=5)
        .map(|i| {
            mesh.roster
                .by_name(&format!("node-{i}"))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("the mesh has no node-{i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = EnsembleSpec {
        mode: Mode::Mean,
        members: members.clone(),
        models: digests.clone(),
        inputs: vec![input.clone()],
        classes: 2,
        threshold: 3,
        dp: None,
    };
    let mut phases: Vec<[f64; PHASES]> = Vec::with_capacity(rounds + WARM_UP);
    let mut preparations = Vec::with_capacity(rounds + WARM_UP);
    let prepared = std::cell::Cell::new(None);
    let quiet = |_: &str| {};
    let medians = interleaved_prepared(
        rounds,
        WARM_UP,
        &mut [
            (&mut || {}, &mut || {
                let jobs = members.iter().zip(&digests).map(|(m, d)| async move {
                    let req = fresh_request(*d, vec![input.clone()], None)?;
                    client.infer(m, &req).await
                });
                let results = rt.block_on(futures_util::future::join_all(jobs));
                results.iter().all(Result::is_ok)
            }),
            (
                // Rounds 0 and 1 before the input exists, off the clock (§15.1).
                &mut || {
                    let started = Instant::now();
                    let job = rt.block_on(ensemble_client::prepare(
                        client,
                        &mesh.client_key,
                        &spec,
                        &quiet,
                    ));
                    preparations.push(started.elapsed().as_nanos() as f64);
                    prepared.set(job.ok());
                },
                &mut || {
                    let Some(job) = prepared.take() else {
                        return false;
                    };
                    rt.block_on(ensemble_client::run_prepared(
                        client,
                        &mesh.client_key,
                        &spec,
                        job,
                        &quiet,
                    ))
                    .is_ok()
                },
            ),
            (&mut || {}, &mut || {
                // The aggregator reports each round as its requests leave.
                let marks = Mutex::new(vec![Instant::now()]);
                let ok = rt
                    .block_on(ensemble_client::run(
                        client,
                        &mesh.client_key,
                        &spec,
                        &|_| marks.lock().map_or((), |mut m| m.push(Instant::now())),
                    ))
                    .is_ok();
                let mut marks = marks.into_inner().unwrap_or_default();
                marks.push(Instant::now());
                phases.extend(phases_of(&marks));
                ok
            }),
            (&mut || {}, &mut || {
                let asks = members.iter().map(|m| client.health(m));
                let results = rt.block_on(futures_util::future::join_all(asks));
                results.iter().all(Result::is_ok)
            }),
        ],
    )?;
    let kept = phases.get(WARM_UP..).unwrap_or_default();
    anyhow::ensure!(
        !kept.is_empty(),
        "the ensemble jobs did not report their rounds"
    );
    let preparation = median(preparations.split_off(WARM_UP.min(preparations.len())));
    Ok(Ensemble {
        plain: medians[0],
        ensemble: medians[1],
        preparation,
        unprepared: medians[2],
        phases: std::array::from_fn(|i| median(kept.iter().map(|p| p[i]).collect())),
        empty_round: medians[3],
    })
}

/// Rounds of each side run before the kept ones.
const WARM_UP: usize = 2;

/// The phases' durations in nanoseconds from the job's start, its rounds' marks and its end;
/// `None` for a job that did not report every round (it failed, and so does the bench).
fn phases_of(marks: &[Instant]) -> Option<[f64; PHASES]> {
    (marks.len() == PHASES + 1)
        .then(|| std::array::from_fn(|i| (marks[i + 1] - marks[i]).as_nanos() as f64))
}
