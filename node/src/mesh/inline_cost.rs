//! Whether a request may be answered on the async thread that decoded it (§12.3, §15.3):
//! a hand-over to the blocking pool and back costs a quick job more than the job itself,
//! while a long job on an async thread would hold up the network I/O of every other
//! request. A running estimate of what the job costs decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A job may run on an async thread when its recent runs took under this long.
pub const INLINE_MAX: Duration = Duration::from_micros(100);

/// A running estimate of one kind of job's cost: an exponential average weighting the
/// newest run by 1/4, so that a job that turns slow leaves the async threads after a few
/// runs. Unknown (and so not quick) until the first run.
#[derive(Debug)]
pub struct InlineCost(AtomicU64);

impl Default for InlineCost {
    fn default() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }
}

impl InlineCost {
    /// Whether the recent runs took under [`INLINE_MAX`].
    pub fn is_quick(&self) -> bool {
        self.0.load(Ordering::Relaxed) < INLINE_MAX.as_nanos() as u64
    }

    /// Notes what one run took.
    pub fn note(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.0.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            took
        } else {
            old / 4 * 3 + took / 4
        };
        self.0.store(new, Ordering::Relaxed);
    }

    /// The estimate in nanoseconds (`u64::MAX` before the first run).
    pub fn nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_quick_once_measured_quick_and_stops_being_after_slow_runs() {
        let cost = InlineCost::default();
        assert!(!cost.is_quick(), "unknown before its first run");
        cost.note(Duration::from_micros(10));
        assert!(cost.is_quick());
        cost.note(Duration::from_millis(20));
        assert!(!cost.is_quick(), "one slow run weighs 1/4: 5 ms");
        for _ in 0..40 {
            cost.note(Duration::from_micros(10));
        }
        assert!(cost.is_quick(), "quick runs bring it back");
        assert!(cost.nanos() < INLINE_MAX.as_nanos() as u64);
    }
}
