//! Local batches (§5): many runs of one model, one signature. The per-run work besides the
//! model itself is kept to hashing and encoding: the session is locked once, inputs are lent
//! to ORT in place, and each payload is encoded from one reused payload whose fields are
//! overwritten, so that a small model's batch costs little more than its runs.

use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::SALT_LEN;
use quorate_protocol::batch_receipt::{BatchReceipts, BatchSigner};
use quorate_protocol::receipt::{Commitment, JOB_ID_LEN, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;

use super::Committed;
use crate::LoadedModel;

/// One job of a batch: what was committed. Its payload is the leaf of its batch receipt.
pub struct BatchJob {
    /// Inputs as committed.
    pub inputs: Vec<Committed>,
    /// Outputs as committed.
    pub outputs: Vec<Committed>,
}

/// Runs `model` once per input set and signs every result under one batch root (§5): the
/// results in order, and one batch receipt per result, each of which verifies alone. Job ids
/// and salts for the whole batch come from one read of the operating system's random source
/// (a read per salt costs about as much as a small model's run); the batch shares `nonce`.
pub fn attested_batch(
    model: &LoadedModel,
    batch: Vec<Vec<Tensor>>,
    salted: bool,
    nonce: Vec<u8>,
    key: &SecretKey,
    now: u64,
) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
    let mut pool = zeroize::Zeroizing::new(vec![0u8; draw_len(model, salted) * batch.len()]);
    quorate_crypto::random::fill(&mut pool)?;
    batch_with_draws(model, batch, salted, nonce, key, now, &pool)
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

/// [`attested_batch`] with its random draws given: [`draw_len`] bytes per input set, the
/// job id then the salts of the inputs and of the outputs, in order.
fn batch_with_draws(
    model: &LoadedModel,
    batch: Vec<Vec<Tensor>>,
    salted: bool,
    nonce: Vec<u8>,
    key: &SecretKey,
    now: u64,
    pool: &[u8],
) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
    let mut draws = pool.chunks_exact(draw_len(model, salted));
    // The payload of every job (§4.2); only the job id and commitments change between jobs.
    let mut payload = ReceiptPayload {
        job_id: [0; JOB_ID_LEN],
        nonce,
        kind: JobKind::Local,
        model_digest: model.digest,
        inputs: Vec::new(),
        outputs: Vec::new(),
        provider: model.provider.clone(),
        runtime: model.runtime.clone(),
        issued_at: now,
        previous: None,
        policy: None,
    };
    let mut signer = BatchSigner::with_capacity(batch.len());
    let mut results = Vec::with_capacity(batch.len());
    // One hold on the session for the whole batch rather than a lock per run.
    let mut session = model.lock()?;
    for inputs in batch {
        let draw = draws
            .next()
            .ok_or_else(|| anyhow::anyhow!("more input sets than random draws"))?;
        let (job_id, mut salts) = draw.split_at(JOB_ID_LEN);
        // Pairs each tensor with the next salt; a set with more tensors than the model
        // declares would run out, and is refused rather than committed unsalted.
        let mut commit = |tensors: Vec<Tensor>| -> anyhow::Result<Vec<Committed>> {
            tensors
                .into_iter()
                .map(|tensor| {
                    if !salted {
                        return Ok(Committed { tensor, salt: None });
                    }
                    let (s, rest) = salts
                        .split_first_chunk::<SALT_LEN>()
                        .ok_or_else(|| anyhow::anyhow!("more tensors than the model declares"))?;
                    salts = rest;
                    Ok(Committed {
                        tensor,
                        salt: Some(*s),
                    })
                })
                .collect()
        };
        let inputs = commit(inputs)?;
        let outputs = commit(session.run(inputs.iter().map(|c| &c.tensor))?)?;
        payload.job_id = job_id.try_into()?;
        recommit(&mut payload.inputs, &inputs);
        recommit(&mut payload.outputs, &outputs);
        signer.push(&payload)?;
        results.push(BatchJob { inputs, outputs });
    }
    drop(session);
    Ok((results, signer.sign(key, now)?))
}

/// Makes `list` the commitments to `committed` (as [`Commitment::to`] makes them), reusing
/// the names' buffers.
fn recommit(list: &mut Vec<Commitment>, committed: &[Committed]) {
    list.truncate(committed.len());
    for (i, c) in committed.iter().enumerate() {
        let Some(slot) = list.get_mut(i) else {
            list.push(Commitment::to(&c.tensor, c.salt.as_ref()));
            continue;
        };
        slot.name.clear();
        slot.name.push_str(c.tensor.name());
        slot.digest = c.tensor.digest(c.salt.as_ref());
        slot.salted = c.salt.is_some();
    }
}

#[cfg(test)]
mod tests {
    use quorate_protocol::batch_receipt::{parse_any, sign_batch};

    use super::*;
    use crate::attest::{JobParams, attest};

    /// Given the same random draws, a batch signs exactly the payloads that single runs
    /// build (§4.2), as `sign_batch` signs them: no byte of any receipt depends on the path.
    #[test]
    fn batch_receipts_are_those_of_the_single_run_payloads() {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mlp.onnx")).unwrap();
        let model = LoadedModel::from_bytes(&bytes, 1).unwrap();
        let key = SecretKey::from_seed(&[4; 32]);
        let (nonce, now, n) = (vec![5u8; 32], 1_763_900_000, 7usize);
        let inputs: Vec<Vec<Tensor>> = (0..n)
            .map(|i| {
                let x: Vec<f32> = (0..30).map(|k| (k + i) as f32 * 0.1).collect();
                vec![Tensor::from_f32("features", vec![1, 30], &x).unwrap()]
            })
            .collect();
        for salted in [true, false] {
            let per_job = JOB_ID_LEN + if salted { 2 * SALT_LEN } else { 0 };
            let pool: Vec<u8> = (0..n * per_job).map(|i| (i * 31 % 251) as u8).collect();
            let (jobs, receipts) = batch_with_draws(
                &model,
                inputs.clone(),
                salted,
                nonce.clone(),
                &key,
                now,
                &pool,
            )
            .unwrap();
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
                assert!(
                    parsed.payload().outputs[0]
                        .matches(&job.outputs[0].tensor, job.outputs[0].salt.as_ref())
                );
            }
        }
    }
}
