//! A batch on two threads: the calling thread runs the model (its session is held there, and
//! a small model's runs are most of the work), while a second thread draws each run's job id
//! and salts, commits to it, encodes its payload and hashes its leaf. On two cores that work
//! then costs a batch no wall time beyond its last chunk; the leaves, and so the receipts, are
//! those one thread makes, in the same order, since one thread takes the runs in the order
//! they ran.

use std::sync::mpsc::{Sender, channel};

use quorate_protocol::tensor::Tensor;

use super::leaves::{Leaves, Ran};

/// Runs handed over per message. A send that wakes the other thread costs about as much as a
/// small model's run; one per run would spend what the second thread saves.
const CHUNK: usize = 64;

/// Runs `run` on every input set on this thread and adds the runs to `leaves` on another.
/// The first error of either side is returned: a failed run stops the batch, and a failed
/// commitment stops the runs at the next hand-over.
pub(super) fn pipelined<'a>(
    batch: Vec<Vec<Tensor>>,
    mut run: impl FnMut(Vec<Tensor>) -> anyhow::Result<Ran>,
    mut leaves: Leaves<'a>,
) -> anyhow::Result<Leaves<'a>> {
    std::thread::scope(|s| {
        let (tx, rx) = channel::<Vec<Ran>>();
        // Named for profilers and panic messages.
        let committer = std::thread::Builder::new()
            .name("quorate-commit".into())
            .spawn_scoped(s, move || -> anyhow::Result<Leaves<'a>> {
                for runs in rx {
                    leaves.add(runs)?;
                }
                Ok(leaves)
            })?;
        let ran = feed(batch, &mut run, &tx);
        // Closing the channel ends the committer's loop once it has taken what was sent.
        drop(tx);
        let committed = committer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the commitment thread panicked")));
        ran?;
        committed
    })
}

/// Runs the batch and sends the runs to `tx` a chunk at a time. Stops without an error of its
/// own when the receiver is gone: the committer has failed, and its error is the one to tell.
fn feed(
    batch: Vec<Vec<Tensor>>,
    run: &mut impl FnMut(Vec<Tensor>) -> anyhow::Result<Ran>,
    tx: &Sender<Vec<Ran>>,
) -> anyhow::Result<()> {
    let mut chunk = Vec::with_capacity(CHUNK);
    for inputs in batch {
        chunk.push(run(inputs)?);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
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
