//! Goal 5 of the hot path: one SecAgg ensemble of five members (§15) against the same five
//! inferences sent as plain verified jobs at once (§15.8).

use std::sync::Mutex;
use std::time::Instant;

use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::tensor::Tensor;

use super::sample::{interleaved, median};
use crate::local::LocalMesh;

/// Medians in nanoseconds.
pub struct Ensemble {
    /// Five plain verified jobs, one per member, sent concurrently.
    pub plain: f64,
    /// One ensemble job over the same five members and models.
    pub ensemble: f64,
    /// The ensemble job's phases, medians over the same samples: the aggregator's set-up,
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
    /// Ensemble over plain.
    pub fn ratio(&self) -> f64 {
        self.ensemble / self.plain
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
    let medians = interleaved(
        rounds,
        WARM_UP,
        1,
        &mut [
            &mut || {
                let jobs = members.iter().zip(&digests).map(|(m, d)| async move {
                    let req = fresh_request(*d, vec![input.clone()], None)?;
                    client.infer(m, &req).await
                });
                let results = rt.block_on(futures_util::future::join_all(jobs));
                results.iter().all(Result::is_ok)
            },
            &mut || {
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
            },
            &mut || {
                let asks = members.iter().map(|m| client.health(m));
                let results = rt.block_on(futures_util::future::join_all(asks));
                results.iter().all(Result::is_ok)
            },
        ],
    )?;
    let kept = phases.get(WARM_UP..).unwrap_or_default();
    anyhow::ensure!(
        !kept.is_empty(),
        "the ensemble jobs did not report their rounds"
    );
    Ok(Ensemble {
        plain: medians[0],
        ensemble: medians[1],
        phases: std::array::from_fn(|i| median(kept.iter().map(|p| p[i]).collect())),
        empty_round: medians[2],
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
