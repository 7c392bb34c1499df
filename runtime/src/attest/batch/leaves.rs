//! The leaves of a batch (§5.1): each run's random draw, commitments, payload encoding and
//! leaf hash, made in the order of the runs. None of it needs the model's session, so it can
//! leave the thread that holds it (see `pipeline`).

use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::SALT_LEN;
use quorate_protocol::batch_receipt::{BatchReceipts, BatchSigner, SignedBatch};
use quorate_protocol::receipt::{Commitment, JOB_ID_LEN, JobKind, ReceiptPayload};
use quorate_protocol::tensor::Tensor;
use zeroize::Zeroizing;

use super::BatchJob;
use crate::LoadedModel;
use crate::attest::Committed;

/// Where a batch's random bytes come from: fills the buffer it is given with the draws of
/// the next runs (the operating system's random source, or fixed bytes in tests).
pub(super) type Draw<'a> = &'a mut (dyn FnMut(&mut [u8]) -> anyhow::Result<()> + Send);

/// One run of a batch as the model left it, not yet committed to: its tensors, their salts
/// still to be drawn. They are wrapped as [`Committed`] (see [`unsalted`]) on the thread that
/// made them, so that the committer neither allocates nor frees per run: memory freed on
/// another thread than the one that allocated it goes back under the lock of that thread's
/// heap, which the model's thread then waits on.
pub(super) struct Ran {
    pub inputs: Vec<Committed>,
    pub outputs: Vec<Committed>,
}

/// `tensor`, its salt still to be drawn.
pub(super) fn unsalted(tensor: Tensor) -> Committed {
    Committed { tensor, salt: None }
}

/// The runs committed to so far, and the signer holding their leaves.
pub(super) struct Leaves<'a> {
    /// The payload of every job (§4.2); only the job id and commitments change between jobs.
    payload: ReceiptPayload,
    salted: bool,
    draw: Draw<'a>,
    /// Bytes of one run's draw: see [`super::draw_len`].
    draw_len: usize,
    /// The draws of the runs being committed to; they hold salts, so they are wiped.
    draws: Zeroizing<Vec<u8>>,
    signer: BatchSigner,
    results: Vec<BatchJob>,
    /// The runs the batch has: it is signed only once all of them are committed to.
    runs: usize,
}

impl<'a> Leaves<'a> {
    /// Room for `n` runs of `model`, all under `nonce`, issued at `now`; their commitments
    /// salted when `salted`, their job ids and salts taken from `draw`.
    pub fn new(
        model: &LoadedModel,
        salted: bool,
        draw: Draw<'a>,
        nonce: Vec<u8>,
        now: u64,
        n: usize,
    ) -> Self {
        Self {
            payload: ReceiptPayload {
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
            },
            salted,
            draw,
            draw_len: super::draw_len(model, salted),
            draws: Zeroizing::new(Vec::new()),
            signer: BatchSigner::with_capacity(n),
            results: Vec::with_capacity(n),
            runs: n,
        }
    }

    /// Commits to the next runs, in order, and adds their payloads as the next leaves. Their
    /// draws are read in one piece: a read of the random source per run would cost about as
    /// much as a small model's run.
    pub fn add(&mut self, runs: Vec<Ran>) -> anyhow::Result<()> {
        let mut draws = std::mem::take(&mut self.draws);
        draws.resize(runs.len() * self.draw_len, 0);
        (self.draw)(&mut draws)?;
        for (ran, draw) in runs.into_iter().zip(draws.chunks_exact(self.draw_len)) {
            self.add_one(ran, draw)?;
        }
        self.draws = draws;
        Ok(())
    }

    /// Commits to one run with `draw`: the job id, then the salts of the inputs and of the
    /// outputs when salted.
    fn add_one(&mut self, ran: Ran, draw: &[u8]) -> anyhow::Result<()> {
        let (job_id, mut salts) = draw.split_at(JOB_ID_LEN);
        let Ran {
            mut inputs,
            mut outputs,
        } = ran;
        if self.salted {
            salt(&mut inputs, &mut salts)?;
            salt(&mut outputs, &mut salts)?;
        }
        self.payload.job_id = job_id.try_into()?;
        recommit(&mut self.payload.inputs, &inputs);
        recommit(&mut self.payload.outputs, &outputs);
        self.signer.push(&self.payload)?;
        self.results.push(BatchJob { inputs, outputs });
        Ok(())
    }

    /// Signs the batch, which must hold all the runs it was made for: a batch that lost a run
    /// on its way is refused rather than signed short. Its receipts are then written from the
    /// signed batch, a range at a time.
    pub fn sign_root(
        self,
        key: &SecretKey,
        now: u64,
    ) -> anyhow::Result<(Vec<BatchJob>, SignedBatch)> {
        anyhow::ensure!(
            self.results.len() == self.runs,
            "{} of {} runs reached their commitments",
            self.results.len(),
            self.runs
        );
        Ok((self.results, self.signer.sign_root(key, now)?))
    }

    /// [`Self::sign_root`], every receipt written on this thread.
    pub fn sign(self, key: &SecretKey, now: u64) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
        let (results, signed) = self.sign_root(key, now)?;
        Ok((results, signed.receipts(0..signed.len())))
    }
}

/// Gives each tensor the next salt of `salts`; running out is an error, never an unsalted
/// commitment.
fn salt(committed: &mut [Committed], salts: &mut &[u8]) -> anyhow::Result<()> {
    for c in committed {
        let (s, rest) = salts
            .split_first_chunk::<SALT_LEN>()
            .ok_or_else(|| anyhow::anyhow!("more tensors than the model declares"))?;
        c.salt = Some(*s);
        *salts = rest;
    }
    Ok(())
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
