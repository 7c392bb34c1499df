//! Local batches (§5): many runs of one model, one signature. The per-run work besides the
//! model itself is kept to hashing and encoding: the session is locked once, inputs are lent
//! to ORT in place, each payload is encoded from one reused payload whose fields are
//! overwritten, and in a batch of [`PIPELINE_MIN`] runs or more the random draws, hashing and
//! encoding are done on a second thread while the model runs (`pipeline`), so that a small
//! model's batch costs little more than its runs.

mod leaves;
mod pipeline;

use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::SALT_LEN;
use quorate_protocol::batch_receipt::BatchReceipts;
use quorate_protocol::receipt::JOB_ID_LEN;
use quorate_protocol::tensor::Tensor;

use super::Committed;
use crate::LoadedModel;
use leaves::{Draw, Leaves, Ran, unsalted};

/// One job of a batch: what was committed. Its payload is the leaf of its batch receipt.
pub struct BatchJob {
    /// Inputs as committed.
    pub inputs: Vec<Committed>,
    /// Outputs as committed.
    pub outputs: Vec<Committed>,
}

/// Batches shorter than this run on the calling thread alone: starting a thread costs about
/// as much as the commitments of a few dozen small runs.
const PIPELINE_MIN: usize = 64;

/// Runs `model` once per input set and signs every result under one batch root (§5): the
/// results in order, and one batch receipt per result, each of which verifies alone. Job ids
/// and salts come from the operating system's random source, read once per chunk of runs
/// rather than once per salt (a read costs about as much as a small model's run); the batch
/// shares `nonce`.
///
/// The model runs on the calling thread. From [`PIPELINE_MIN`] runs up, the random draws,
/// the commitments, the payloads' encoding and the leaf hashes are made on a second thread as
/// the runs come, so a batch takes up to two cores; that thread then signs the root and
/// writes half of the receipts while this one writes the other half. The results and
/// receipts are byte for byte those of one thread given the same draws.
pub fn attested_batch(
    model: &LoadedModel,
    batch: Vec<Vec<Tensor>>,
    salted: bool,
    nonce: Vec<u8>,
    key: &SecretKey,
    now: u64,
) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
    let mut os = |buf: &mut [u8]| Ok(quorate_crypto::random::fill(buf)?);
    batch_with_draws(model, batch, salted, nonce, key, now, &mut os)
}

/// Random bytes one input set takes: the job id, then the salts of the inputs and of the
/// outputs when `salted`.
fn draw_len(model: &LoadedModel, salted: bool) -> usize {
    let salts = if salted {
        model.inputs.len() + model.outputs.len()
    } else {
        0
    };
    JOB_ID_LEN + SALT_LEN * salts
}

/// [`attested_batch`] with its random draws from `draw`: [`draw_len`] bytes per input set,
/// the job id then the salts of the inputs and of the outputs, in order.
fn batch_with_draws(
    model: &LoadedModel,
    batch: Vec<Vec<Tensor>>,
    salted: bool,
    nonce: Vec<u8>,
    key: &SecretKey,
    now: u64,
    draw: Draw<'_>,
) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
    let n = batch.len();
    let mut leaves = Leaves::new(model, salted, draw, nonce, now, n);
    // One hold on the session for the whole batch rather than a lock per run, released with
    // `run` once the runs are done.
    let mut session = model.lock()?;
    let mut run = move |inputs: Vec<Tensor>| -> anyhow::Result<Ran> {
        // A set with more tensors than the model declares would run out of salts: it is
        // refused before it runs rather than committed unsalted. The salts themselves are
        // drawn by the committer (`Leaves::add`), off the thread that runs the model.
        anyhow::ensure!(
            !salted || inputs.len() <= model.inputs.len(),
            "more tensors than the model declares"
        );
        let outputs = session.run_wrapped(&inputs, unsalted)?;
        Ok(Ran {
            inputs: inputs.into_iter().map(unsalted).collect(),
            outputs,
        })
    };
    if n < PIPELINE_MIN {
        let runs = batch
            .into_iter()
            .map(&mut run)
            .collect::<anyhow::Result<_>>()?;
        drop(run);
        leaves.add(runs)?;
        leaves.sign(key, now)
    } else {
        pipeline::pipelined(batch, run, leaves, key, now)
    }
}

#[cfg(test)]
mod tests {
    use quorate_protocol::batch_receipt::{parse_any, sign_batch};
    use quorate_protocol::receipt::{JobKind, ReceiptPayload};

    use super::*;
    use crate::attest::{JobParams, attest};

    fn mlp() -> LoadedModel {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mlp.onnx")).unwrap();
        LoadedModel::from_bytes(&bytes, 1).unwrap()
    }

    fn mlp_inputs(n: usize) -> Vec<Vec<Tensor>> {
        (0..n)
            .map(|i| {
                let x: Vec<f32> = (0..30).map(|k| (k + i) as f32 * 0.1).collect();
                vec![Tensor::from_f32("features", vec![1, 30], &x).unwrap()]
            })
            .collect()
    }

    /// Given the same random draws, a batch signs exactly the payloads that single runs
    /// build (§4.2), as `sign_batch` signs them: no byte of any receipt depends on the path,
    /// on one thread (a short batch) or two (a long one, its last runs handed over in smaller
    /// chunks), its receipts written by one thread or, in a long one, by two.
    #[test]
    fn batch_receipts_are_those_of_the_single_run_payloads() {
        let model = mlp();
        let key = SecretKey::from_seed(&[4; 32]);
        let (nonce, now) = (vec![5u8; 32], 1_763_900_000);
        for (n, salted) in [
            (7, true),
            (7, false),
            (150, true),
            (150, false),
            (601, true),
        ] {
            assert_eq!(n < PIPELINE_MIN, n == 7);
            let inputs = mlp_inputs(n);
            let per_job = JOB_ID_LEN + if salted { 2 * SALT_LEN } else { 0 };
            let pool: Vec<u8> = (0..n * per_job).map(|i| (i * 31 % 251) as u8).collect();
            let mut rest = &pool[..];
            let mut draw = |buf: &mut [u8]| {
                let (head, tail) = rest
                    .split_at_checked(buf.len())
                    .ok_or_else(|| anyhow::anyhow!("draws exhausted"))?;
                buf.copy_from_slice(head);
                rest = tail;
                Ok(())
            };
            let (jobs, receipts) = batch_with_draws(
                &model,
                inputs.clone(),
                salted,
                nonce.clone(),
                &key,
                now,
                &mut draw,
            )
            .unwrap();
            assert!(rest.is_empty());
            let payloads: Vec<ReceiptPayload> = pool
                .chunks_exact(per_job)
                .zip(&inputs)
                .map(|(draw, x)| {
                    let (id, salts) = draw.split_at(JOB_ID_LEN);
                    let salt = |k: usize| {
                        salted.then(|| salts[k * SALT_LEN..][..SALT_LEN].try_into().unwrap())
                    };
                    let job = JobParams {
                        job_id: id.try_into().unwrap(),
                        nonce: nonce.clone(),
                        kind: JobKind::Local,
                        salted,
                        previous: None,
                        policy: None,
                    };
                    let tensor = x[0].clone();
                    let y = model.run([&tensor]).unwrap().remove(0);
                    let inputs = vec![Committed {
                        tensor,
                        salt: salt(0),
                    }];
                    let outputs = vec![Committed {
                        tensor: y,
                        salt: salt(1),
                    }];
                    attest(&model, inputs, outputs, &job, now).payload
                })
                .collect();
            assert_eq!(
                receipts.to_vecs(),
                sign_batch(&payloads, &key, now).unwrap()
            );
            for (i, job) in jobs.iter().enumerate() {
                let parsed = parse_any(receipts.get(i).unwrap()).unwrap();
                assert_eq!(parsed.payload(), &payloads[i]);
                assert!(parsed.sign1().verify(&key.public_key()).is_ok());
                // The results carry the salts their commitments were made with.
                assert!(
                    parsed.payload().inputs[0]
                        .matches(&job.inputs[0].tensor, job.inputs[0].salt.as_ref())
                );
                assert!(
                    parsed.payload().outputs[0]
                        .matches(&job.outputs[0].tensor, job.outputs[0].salt.as_ref())
                );
            }
        }
    }

    /// A failed run in the middle of a two-thread batch fails the batch, whatever the other
    /// thread has committed to by then.
    #[test]
    fn a_failed_run_fails_a_two_thread_batch() {
        let model = mlp();
        let key = SecretKey::from_seed(&[4; 32]);
        let mut extra = mlp_inputs(200);
        let again = extra[130][0].clone();
        extra[130].push(again);
        let e = attested_batch(&model, extra, true, vec![5; 32], &key, 0).err();
        assert!(e.is_some_and(|e| {
            e.to_string()
                .contains("more tensors than the model declares")
        }));
        let mut misshapen = mlp_inputs(200);
        misshapen[199] = vec![Tensor::from_f32("features", vec![1, 2], &[0.0, 1.0]).unwrap()];
        assert!(attested_batch(&model, misshapen, false, vec![5; 32], &key, 0).is_err());
    }

    /// A random source that fails part-way fails a two-thread batch with its own error, at
    /// any chunk, the last included: nothing is signed, no thread is left waiting.
    #[test]
    fn a_failed_draw_fails_a_two_thread_batch() {
        let model = mlp();
        let key = SecretKey::from_seed(&[4; 32]);
        for (n, good_draws) in [(200, 0), (200, 1), (200, 3), (1000, 15), (1000, 17)] {
            let mut calls = 0;
            let mut draw = |buf: &mut [u8]| {
                calls += 1;
                anyhow::ensure!(calls <= good_draws, "the random source failed");
                buf.fill(7);
                Ok(())
            };
            let e = batch_with_draws(&model, mlp_inputs(n), true, vec![5; 32], &key, 0, &mut draw)
                .err();
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.to_string().contains("the random source failed")),
                "{n} runs, draw {} failing: {e:?}",
                good_draws + 1
            );
        }
    }
}
