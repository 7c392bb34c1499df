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

/// Runs handed over per message. A send that wakes the other thread costs about as much as a
/// small model's run; one per run would spend what the second thread saves.
const CHUNK: usize = 64;

/// How long one thread of a batch polls for the other before it sleeps: longer than a chunk
/// of a small model's runs takes. Waking a sleeping thread costs the thread that wakes it a
/// system call, and the woken one tens of microseconds on an idle core of a virtual machine,
/// several times per batch; polling costs a core that the batch has to itself meanwhile.
const POLL: Duration = Duration::from_millis(2);

/// The next chunk of runs, polled for up to [`POLL`] (yielding the core to any other thread
/// that wants it), then waited for. `None` once the sender is gone and every chunk is taken.
fn next_chunk(rx: &Receiver<Vec<Ran>>) -> Option<Vec<Ran>> {
    let since = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(runs) => return Some(runs),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if since.elapsed() < POLL => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// Polls for up to [`POLL`] until `thread` has finished, so that joining it then does not
/// sleep and wait to be woken.
pub(super) fn await_briefly<T>(thread: &ScopedJoinHandle<'_, T>) {
    let since = Instant::now();
    while !thread.is_finished() && since.elapsed() < POLL {
        std::hint::spin_loop();
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
        // Closing the channel ends the committer's loop once it has taken what was sent.
        drop(tx);
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

    /// A chunk that comes after the polling has given up is still taken (by a blocking
    /// receive), chunks come out in order, and a closed channel ends the loop.
    #[test]
    fn chunks_are_taken_whether_polled_for_or_waited_for() {
        let (tx, rx) = channel::<Vec<Ran>>();
        let sender = std::thread::spawn(move || {
            for k in 0..3 {
                if k == 1 {
                    std::thread::sleep(POLL * 3);
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
