//! Goal 3 of the hot path: N local runs attested with one batch receipt (§5), the work of
//! `quorate run --inputs`, against N raw ONNX Runtime calls of the same model.

use std::cell::Cell;

use anyhow::Context;
use cpu_time::ProcessTime;
use ort::session::Session;
use ort::value::TensorRef;
use quorate_protocol::tensor::{DType, Tensor};
use quorate_runtime::attest::attested_batch;
use quorate_runtime::{LoadedModel, environment};

use super::sample::{interleaved_prepared, median};

/// Medians of one batch of `n` runs, in nanoseconds.
pub struct Batch {
    /// Runs in a batch.
    pub n: usize,
    /// Running, committing and signing them with one batch receipt.
    pub attested: f64,
    /// The CPU time of the same, all threads of the process (the commitments are made on a
    /// second thread while the model runs), where the system reports it.
    pub attested_cpu: Option<f64>,
    /// The same runs through ONNX Runtime's own API, nothing else.
    pub raw: f64,
    /// A cache line's round trip between two cores, measured before each attested sample
    /// (of the measurements that completed; `None` where none did).
    pub round_trip: Option<Spread>,
}

/// The median and range of some samples.
#[derive(Clone, Copy)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `samples`; `None` when there are none.
    fn of(samples: Vec<f64>) -> Option<Self> {
        let min = samples.iter().copied().min_by(f64::total_cmp)?;
        let max = samples.iter().copied().max_by(f64::total_cmp)?;
        Some(Self {
            min,
            max,
            median: median(samples),
        })
    }
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
    // The attested batch consumes its inputs; they are made before each sample, off the
    // clock, as the raw side's view of its input is made once before all of them.
    let next = Cell::new(None);
    let mut cpu = Vec::with_capacity(rounds + WARM_UP);
    let mut round_trips = Vec::with_capacity(rounds + WARM_UP);
    let medians = interleaved_prepared(
        rounds,
        WARM_UP,
        &mut [
            (
                &mut || {
                    round_trips.push(super::cores::round_trip_ns());
                    next.set(Some(vec![vec![input.clone()]; n]));
                },
                &mut || {
                    let Some(inputs) = next.take() else {
                        return false;
                    };
                    let start = ProcessTime::try_now().ok();
                    let ok = attested_batch(&loaded, inputs, true, vec![9; 32], &key, 0).is_ok();
                    cpu.push(
                        start
                            .and_then(|s| s.try_elapsed().ok())
                            .map(|t| t.as_nanos() as f64),
                    );
                    ok
                },
            ),
            (&mut || {}, &mut || {
                (0..n).all(|_| {
                    TensorRef::from_array_view((shape.clone(), values.as_slice()))
                        .is_ok_and(|t| raw.run(ort::inputs![name.as_str() => t]).is_ok())
                })
            }),
        ],
    )?;
    let cpu: Option<Vec<f64>> = cpu.into_iter().skip(WARM_UP).collect();
    let round_trips: Vec<f64> = round_trips.into_iter().skip(WARM_UP).flatten().collect();
    Ok(Batch {
        n,
        attested: medians[0],
        attested_cpu: cpu.map(median),
        raw: medians[1],
        round_trip: Spread::of(round_trips),
    })
}

/// Rounds of each side run before the kept ones.
const WARM_UP: usize = 2;
