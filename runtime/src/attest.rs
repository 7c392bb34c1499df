//! Attested local inference: run a model, commit to inputs and outputs, sign a receipt (§4).

use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::SALT_LEN;
use quorate_protocol::receipt::{Commitment, JOB_ID_LEN, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;

use crate::LoadedModel;

mod batch;

pub use batch::{BatchJob, attested_batch};

/// A tensor with the salt its commitment used (`None`: plain commitment).
pub struct Committed {
    /// The tensor.
    pub tensor: Tensor,
    /// Its salt.
    pub salt: Option<[u8; SALT_LEN]>,
}

/// Everything one attested run produced.
pub struct Attested {
    /// Inputs as committed.
    pub inputs: Vec<Committed>,
    /// Outputs as committed.
    pub outputs: Vec<Committed>,
    /// The signed payload.
    pub payload: ReceiptPayload,
}

/// Job parameters chosen by the caller (the client, for mesh jobs).
pub struct JobParams {
    /// Job id.
    pub job_id: [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: Vec<u8>,
    /// Kind of job.
    pub kind: JobKind,
    /// Whether commitments are salted (§3.3).
    pub salted: bool,
    /// Previous stage's receipt digest.
    pub previous: Option<[u8; 32]>,
    /// Comparison policy digest.
    pub policy: Option<[u8; 32]>,
}

impl JobParams {
    /// A local job with a fresh random id and nonce.
    pub fn fresh_local(salted: bool) -> anyhow::Result<Self> {
        Ok(Self {
            job_id: quorate_crypto::random::bytes()?,
            nonce: quorate_crypto::random::bytes::<32>()?.to_vec(),
            kind: JobKind::Local,
            salted,
            previous: None,
            policy: None,
        })
    }
}

/// Pairs tensors with fresh salts (when `salted`) for their commitments.
pub fn commit_all(tensors: Vec<Tensor>, salted: bool) -> anyhow::Result<Vec<Committed>> {
    tensors
        .into_iter()
        .map(|tensor| {
            let salt = if salted {
                Some(quorate_crypto::random::bytes::<SALT_LEN>()?)
            } else {
                None
            };
            Ok(Committed { tensor, salt })
        })
        .collect()
}

/// Runs `model` on checked `inputs` and builds the payload to sign.
pub fn run_and_commit(
    model: &LoadedModel,
    inputs: Vec<Tensor>,
    job: &JobParams,
    now: u64,
) -> anyhow::Result<Attested> {
    let inputs = commit_all(inputs, job.salted)?;
    run_committed(model, inputs, job, now)
}

/// Runs `model` on inputs whose commitment salts were chosen already (by the client, in a
/// mesh job); outputs are salted freshly when `job.salted`.
pub fn run_committed(
    model: &LoadedModel,
    inputs: Vec<Committed>,
    job: &JobParams,
    now: u64,
) -> anyhow::Result<Attested> {
    let outputs = commit_all(model.run(inputs.iter().map(|c| &c.tensor))?, job.salted)?;
    Ok(attest(model, inputs, outputs, job, now))
}

/// The payload binding committed inputs and outputs to the job (§4.2).
fn attest(
    model: &LoadedModel,
    inputs: Vec<Committed>,
    outputs: Vec<Committed>,
    job: &JobParams,
    now: u64,
) -> Attested {
    let payload = ReceiptPayload {
        job_id: job.job_id,
        nonce: job.nonce.clone(),
        kind: job.kind,
        model_digest: model.digest,
        inputs: inputs
            .iter()
            .map(|c| Commitment::to(&c.tensor, c.salt.as_ref()))
            .collect(),
        outputs: outputs
            .iter()
            .map(|c| Commitment::to(&c.tensor, c.salt.as_ref()))
            .collect(),
        provider: model.provider.clone(),
        runtime: model.runtime.clone(),
        issued_at: now,
        previous: job.previous,
        policy: job.policy,
    };
    Attested {
        inputs,
        outputs,
        payload,
    }
}

/// Runs, commits and signs: returns the results and the receipt bytes.
pub fn attested_run(
    model: &LoadedModel,
    inputs: Vec<Tensor>,
    job: &JobParams,
    key: &SecretKey,
    now: u64,
) -> anyhow::Result<(Attested, Vec<u8>)> {
    let attested = run_and_commit(model, inputs, job, now)?;
    let receipt = attested.payload.sign(key)?;
    Ok((attested, receipt))
}
