//! A batch on two threads: the calling thread runs the model (its session is held there, and
//! a small model's runs are most of the work), while a second thread draws each run's job id
//! and salts, commits to it, encodes its payload and hashes its leaf. On two cores that work
//! then costs a batch no wall time beyond its last chunk; the leaves, and so the receipts, are
//! those one thread makes, in the same order, since one thread takes the runs in the order
//! they ran. Once the runs are done, the second thread signs the root and writes the second
//! half of the receipts while the calling thread writes the first: no thread is started for
//! them.

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};

use quorate_crypto::SecretKey;
use quorate_protocol::batch_receipt::BatchReceipts;
use quorate_protocol::tensor::Tensor;

use super::BatchJob;
use super::leaves::{Leaves, Ran};

/// Runs handed over per message. A send that wakes the other thread costs about as much as a
/// small model's run; one per run would spend what the second thread saves.
const CHUNK: usize = 64;

/// Runs handed over per message once fewer than [`CHUNK`] are left to run: what the second
/// thread still has to commit to after the last run is at most this many runs' work.
const LAST_CHUNKS: usize = 16;

/// Runs `run` on every input set on this thread and adds the runs to `leaves` on another,
/// which then signs them with `key` at `now`; each thread writes half of the receipts. The
/// first error of either side is returned: a failed run stops the batch, and a failed
/// commitment stops the runs at the next hand-over. `run` is dropped once the runs are done
/// (with it, whatever it holds, such as the model's session).
pub(super) fn pipelined<'a>(
    batch: Vec<Vec<Tensor>>,
    mut run: impl FnMut(Vec<Tensor>) -> anyhow::Result<Ran>,
    mut leaves: Leaves<'a>,
    key: &SecretKey,
    now: u64,
) -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
    let n = batch.len();
    let half = n / 2;
    std::thread::scope(|s| {
        let (tx, rx) = channel::<Vec<Ran>>();
        let (signed_tx, signed_rx) = channel();
        // Named for profilers and panic messages.
        let committer = std::thread::Builder::new()
            .name("quorate-commit".into())
            .spawn_scoped(
                s,
                move || -> anyhow::Result<(Vec<BatchJob>, BatchReceipts)> {
                    for runs in rx {
                        leaves.add(runs)?;
                    }
                    let (results, signed) = leaves.sign_root(key, now)?;
                    let signed = Arc::new(signed);
                    // The calling thread writes the first half meanwhile. (Were it gone, the
                    // batch has failed there, and its error is the one told.)
                    let _ = signed_tx.send(signed.clone());
                    Ok((results, signed.receipts(half..n)))
                },
            )?;
        let ran = feed(batch, &mut run, &tx);
        drop(run);
        // Closing the channel ends the committer's loop once it has taken what was sent.
        drop(tx);
        // Nothing arrives when the committer failed: its sender is then dropped unsent.
        let front = signed_rx.recv().ok().map(|signed| signed.receipts(0..half));
        let committed = committer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the commitment thread panicked")));
        ran?;
        let (results, back) = committed?;
        let mut receipts =
            front.ok_or_else(|| anyhow::anyhow!("the commitment thread sent no signed batch"))?;
        receipts.append(back);
        Ok((results, receipts))
    })
}

/// Runs the batch and sends the runs to `tx` a chunk at a time, in chunks of [`LAST_CHUNKS`]
/// towards the end. Stops without an error of its own when the receiver is gone: the
/// committer has failed, and its error is the one to tell.
fn feed(
    batch: Vec<Vec<Tensor>>,
    run: &mut impl FnMut(Vec<Tensor>) -> anyhow::Result<Ran>,
    tx: &Sender<Vec<Ran>>,
) -> anyhow::Result<()> {
    let mut left = batch.len();
    let mut chunk = Vec::with_capacity(CHUNK);
    for inputs in batch {
        chunk.push(run(inputs)?);
        left -= 1;
        let size = if left < CHUNK { LAST_CHUNKS } else { CHUNK };
        if chunk.len() >= size && left > 0 {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(size));
            if tx.send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        // An error here is the committer's, reported by the caller.
        let _ = tx.send(chunk);
    }
    Ok(())
}
