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
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); fs.len()];
    let mut failed = 0usize;
    for round in 0..warm_up + rounds {
        for (f, kept) in fs.iter_mut().zip(&mut samples) {
            let (ns, ok) = time_ns(&mut || (0..block).filter(|_| !f()).count());
            let ns = ns / block as f64;
            failed += ok;
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
}
