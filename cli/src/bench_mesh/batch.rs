//! Goal 3 of the hot path: N local runs attested with one batch receipt (§5), the work of
//! `quorate run --inputs`, against N raw ONNX Runtime calls of the same model.

use anyhow::Context;
use ort::session::Session;
use ort::value::TensorRef;
use quorate_protocol::tensor::{DType, Tensor};
use quorate_runtime::attest::attested_batch;
use quorate_runtime::{LoadedModel, environment};

use super::sample::interleaved;

/// Medians of one batch of `n` runs, in nanoseconds.
pub struct Batch {
    /// Runs in a batch.
    pub n: usize,
    /// Running, committing and signing them with one batch receipt.
    pub attested: f64,
    /// The same runs through ONNX Runtime's own API, nothing else.
    pub raw: f64,
}

impl Batch {
    /// Attested over raw.
    pub fn ratio(&self) -> f64 {
        self.attested / self.raw
    }
}

/// Samples an attested batch and `n` raw calls in turn, `rounds` times each. The input must
/// be a single `float32` tensor (the bundled `mlp.onnx` sample).
pub fn batch(model: &[u8], input: &Tensor, n: usize, rounds: usize) -> anyhow::Result<Batch> {
    anyhow::ensure!(
        input.dtype() == DType::F32,
        "the batch figure feeds one float32 input"
    );
    let loaded = LoadedModel::from_bytes(model, 1)?;
    let key = quorate_crypto::SecretKey::generate()?;
    let ort_error = |e: ort::Error| anyhow::anyhow!("ONNX Runtime: {e}");
    let mut raw = Session::builder(environment()?)
        .map_err(ort_error)?
        .with_intra_threads(1)
        .map_err(|e| ort_error(e.into()))?
        .commit_from_memory(model)
        .map_err(ort_error)
        .context("ONNX Runtime refused the model")?;
    let shape: Vec<usize> = input.shape().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = input
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let name = input.name().to_string();
    let medians = interleaved(
        rounds,
        2,
        1,
        &mut [
            &mut || {
                let inputs = vec![vec![input.clone()]; n];
                attested_batch(&loaded, inputs, true, vec![9; 32], &key, 0).is_ok()
            },
            &mut || {
                (0..n).all(|_| {
                    TensorRef::from_array_view((shape.clone(), values.as_slice()))
                        .is_ok_and(|t| raw.run(ort::inputs![name.as_str() => t]).is_ok())
                })
            },
        ],
    )?;
    Ok(Batch {
        n,
        attested: medians[0],
        raw: medians[1],
    })
}
