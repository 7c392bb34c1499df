//! Timing by samples: each figure is the median of many timed calls, and a figure and its
//! baseline are sampled in turn (ours, baseline, ours, …) so that a noisy neighbour on a
//! shared machine weighs on both alike.

use std::time::Instant;

pub use crate::bench_secagg::bound::median;

/// Nanoseconds one call of `f` took, and what it returned.
pub fn time_ns<T>(f: &mut dyn FnMut() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_nanos() as f64, out)
}

/// A timed call: true when the work it timed succeeded.
pub type Sampled<'a> = &'a mut dyn FnMut() -> bool;

/// Samples every function `rounds` times, one block of `block` calls of each per round,
/// after `warm_up` rounds that are not kept; returns each function's median time per call in
/// nanoseconds, in the order given. Calls run in blocks so that a small call is not timed
/// only straight after another function has emptied the caches.
/// A failed call makes the whole figure fail: a median of partly failed work is not honest.
pub fn interleaved(
    rounds: usize,
    warm_up: usize,
    block: usize,
    fs: &mut [Sampled<'_>],
) -> anyhow::Result<Vec<f64>> {
    let block = block.max(1);
    in_turn(rounds, warm_up, fs.len(), &mut |i| {
        let f = &mut fs[i];
        let (ns, failed) = time_ns(&mut || (0..block).filter(|_| !f()).count());
        (ns / block as f64, failed)
    })
}

/// Work to do before each timed call, off the clock: making what the call consumes.
pub type Prepare<'a> = &'a mut dyn FnMut();

/// [`interleaved`] with blocks of one call, each function's call preceded by its `Prepare`,
/// untimed: for calls that consume their inputs, whose making is not the work measured.
pub fn interleaved_prepared(
    rounds: usize,
    warm_up: usize,
    fs: &mut [(Prepare<'_>, Sampled<'_>)],
) -> anyhow::Result<Vec<f64>> {
    in_turn(rounds, warm_up, fs.len(), &mut |i| {
        let (prepare, f) = &mut fs[i];
        prepare();
        let (ns, ok) = time_ns(f);
        (ns, usize::from(!ok))
    })
}

/// Calls `sample(i)` for each of `n` functions in turn, `warm_up + rounds` times; `sample`
/// returns the time per call of one block and how many of its calls failed. Returns the
/// median of each function's kept times.
fn in_turn(
    rounds: usize,
    warm_up: usize,
    n: usize,
    sample: &mut dyn FnMut(usize) -> (f64, usize),
) -> anyhow::Result<Vec<f64>> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); n];
    let mut failed = 0usize;
    for round in 0..warm_up + rounds {
        for (i, kept) in samples.iter_mut().enumerate() {
            let (ns, failures) = sample(i);
            failed += failures;
            if round >= warm_up {
                kept.push(ns);
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of the timed calls failed");
    Ok(samples.into_iter().map(median).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_keeps_rounds_after_warm_up_for_each_function() {
        let (mut a, mut b) = (0usize, 0usize);
        let medians = interleaved(
            7,
            3,
            2,
            &mut [
                &mut || {
                    a += 1;
                    true
                },
                &mut || {
                    b += 1;
                    true
                },
            ],
        )
        .unwrap();
        assert_eq!((a, b), (20, 20));
        assert_eq!(medians.len(), 2);
        assert!(medians.iter().all(|m| m.is_finite() && *m >= 0.0));
    }

    #[test]
    fn one_failed_call_fails_the_figure() {
        let mut calls = 0;
        let r = interleaved(
            5,
            0,
            1,
            &mut [&mut || {
                calls += 1;
                calls != 4
            }],
        );
        assert!(r.is_err());
    }

    #[test]
    fn prepared_work_runs_before_each_call_off_the_clock() {
        let (mut made, mut used) = (0usize, 0usize);
        let ready = std::cell::Cell::new(false);
        let medians = interleaved_prepared(
            4,
            1,
            &mut [(
                &mut || {
                    made += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    ready.set(true);
                },
                &mut || {
                    used += 1;
                    ready.replace(false)
                },
            )],
        )
        .unwrap();
        assert_eq!((made, used), (5, 5));
        assert!(medians[0] < 10e6, "{}", medians[0]);
    }
}
