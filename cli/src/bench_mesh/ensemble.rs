//! Goal 5 of the hot path: one SecAgg ensemble of five members (§15) against the same five
//! inferences sent as plain verified jobs at once (§15.8).

use quorate_crypto::tensor_digest::sha256;
use quorate_node::mesh::client::{MeshClient, fresh_request};
use quorate_node::mesh::ensemble_client::{self, EnsembleSpec};
use quorate_protocol::ensemble::Mode;
use quorate_protocol::tensor::Tensor;

use super::sample::interleaved;
use crate::local::LocalMesh;

/// Medians in nanoseconds.
pub struct Ensemble {
    /// Five plain verified jobs, one per member, sent concurrently.
    pub plain: f64,
    /// One ensemble job over the same five members and models.
    pub ensemble: f64,
}

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
    let medians = interleaved(
        rounds,
        2,
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
                rt.block_on(ensemble_client::run(
                    client,
                    &mesh.client_key,
                    &spec,
                    &|_| {},
                ))
                .is_ok()
            },
        ],
    )?;
    Ok(Ensemble {
        plain: medians[0],
        ensemble: medians[1],
    })
}
