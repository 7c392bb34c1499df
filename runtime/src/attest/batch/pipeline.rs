//! A batch on two threads: the calling thread runs the model (its session is held there, and
//! a small model's runs are most of the work), while a second thread draws each run's job id
//! and salts, commits to it, encodes its payload and hashes its leaf. On two cores that work
//! then costs a batch no wall time beyond its last chunk; the leaves, and so the receipts, are
//! those one thread makes, in the same order, since one thread takes the runs in the order
//! they ran.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use quorate_protocol::tensor::Tensor;

use super::leaves::{Leaves, Ran};

/// Runs handed over per message: each message costs an allocation and a look by the other
/// thread, and the last one is what that thread has left to do after the model's last run.
const CHUNK: usize = 64;

/// How long the second thread sleeps before it looks for the next chunk again: a third of
/// the time a chunk of a small model's runs takes, so that it is at most about a chunk behind
/// when the last one comes. It sleeps on a timer rather than waiting to be woken, so that
/// handing it a chunk costs the model's thread no system call (waking a sleeping thread costs
/// the waker one, and the woken thread tens of microseconds on an idle core of a virtual
/// machine); and it never spins, so it holds no core another thread could use. (Polling
/// instead gained as much on an idle machine, and lost more than it gained with another
/// process busy on one core.)
const NAP: Duration = Duration::from_micros(100);

/// How long the second thread keeps to naps of [`NAP`] while no chunk comes: longer than a
/// chunk of a small model's runs takes, so that such a batch's chunks are taken at once.
const PATIENCE: Duration = Duration::from_millis(1);

/// The longest nap: past [`PATIENCE`], each look that finds nothing doubles the nap up to
/// this, so that a slow model's batch does not have the second thread wake thousands of times
/// a second for nothing.
const MAX_NAP: Duration = Duration::from_millis(2);

/// The next chunk of runs, looked for after naps of [`NAP`] (doubling, up to [`MAX_NAP`], once
/// none has come for [`PATIENCE`]) until one is there. `None` once the sender is gone and
/// every chunk is taken.
fn next_chunk(rx: &Receiver<Vec<Ran>>) -> Option<Vec<Ran>> {
    let since = Instant::now();
    let mut nap = NAP;
    loop {
        match rx.try_recv() {
            Ok(runs) => return Some(runs),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                std::thread::park_timeout(nap);
                if since.elapsed() > PATIENCE {
                    nap = (nap * 2).min(MAX_NAP);
                }
            }
        }
    }
}

/// How long a thread that has finished its part of a batch looks for the other's end, giving
/// up its core at each look, before it sleeps until woken: the other's last chunk takes less
/// than that on a small model.
const LOOK: Duration = Duration::from_micros(500);

/// Waits for up to [`LOOK`] until `thread` has finished, so that joining it then does not
/// sleep and wait to be woken.
pub(super) fn await_briefly<T>(thread: &ScopedJoinHandle<'_, T>) {
    let since = Instant::now();
    while !thread.is_finished() && since.elapsed() < LOOK {
        std::thread::yield_now();
    }
}

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
                while let Some(runs) = next_chunk(&rx) {
                    leaves.add(runs)?;
                }
                Ok(leaves)
            })?;
        let ran = feed(batch, &mut run, &tx);
        // Closing the channel ends the committer's loop once it has taken what was sent; it
        // is woken to see that now rather than at the end of its nap.
        drop(tx);
        committer.thread().unpark();
        await_briefly(&committer);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk that comes while the taker naps is taken at its next look, chunks come out in
    /// order, and a closed channel ends the loop.
    #[test]
    fn chunks_are_taken_in_order_across_naps() {
        let (tx, rx) = channel::<Vec<Ran>>();
        let sender = std::thread::spawn(move || {
            for k in 0..3 {
                if k == 1 {
                    std::thread::sleep(MAX_NAP * 2);
                }
                let runs = (0..=k).map(|_| Ran {
                    inputs: vec![],
                    outputs: vec![],
                });
                tx.send(runs.collect()).unwrap();
            }
        });
        let sizes: Vec<usize> = std::iter::from_fn(|| next_chunk(&rx).map(|c| c.len())).collect();
        assert_eq!(sizes, vec![1, 2, 3]);
        sender.join().unwrap();
    }
}
