//! The round trip of a cache line between two cores: what every hand-over between the
//! batch's two threads pays (§12.10.1). On a virtual machine it depends on where the host
//! has put the virtual cores, and the host may move them while the bench runs: on the
//! bench's 2-core VM it is about 30 ns with both on one physical core (its two hardware
//! threads, which then also share that core's execution), about 65 ns with both in one core
//! complex, about 230 ns across two, and which of these held changed within seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Hand-overs timed per measurement (two per round trip).
const TRIPS: u64 = 2_000;

/// How long either side waits for the other before giving up: two threads on one core
/// would wait for each other's time slice, which is not what is measured.
const PATIENCE: Duration = Duration::from_millis(50);

/// The mean time, in nanoseconds, of a value written by this thread and answered by
/// another, over [`TRIPS`] round trips; `None` when the other thread could not keep up
/// (one core, or both threads on one) or could not be started.
pub fn round_trip_ns() -> Option<f64> {
    let turn = AtomicU64::new(0);
    std::thread::scope(|s| {
        let answerer = std::thread::Builder::new()
            .name("quorate-bench-pong".into())
            .spawn_scoped(s, || {
                // Answers each odd value with the next even one; the first trip, which waits
                // for this thread to start, is not timed.
                for k in 0..=TRIPS {
                    if !wait_for(&turn, 2 * k + 1) {
                        return;
                    }
                    turn.store(2 * k + 2, Ordering::Release);
                }
            })
            .ok()?;
        let trip = |k: u64| {
            turn.store(2 * k + 1, Ordering::Release);
            wait_for(&turn, 2 * k + 2)
        };
        let mut start = Instant::now();
        let answered = trip(0) && {
            start = Instant::now();
            (1..=TRIPS).all(trip)
        };
        let elapsed = start.elapsed();
        // Releases the answerer if it is still waiting.
        turn.store(u64::MAX, Ordering::Release);
        answerer.join().ok()?;
        answered.then(|| elapsed.as_nanos() as f64 / TRIPS as f64)
    })
}

/// Spins until `turn` holds `value`; false if [`PATIENCE`] ran out or the other side gave up.
fn wait_for(turn: &AtomicU64, value: u64) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        match turn.load(Ordering::Acquire) {
            v if v == value => return true,
            u64::MAX => return false,
            _ => {}
        }
        spins = spins.wrapping_add(1);
        // The clock is read now and then: it costs more than a spin.
        if spins.is_multiple_of(1024) && start.elapsed() > PATIENCE {
            return false;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where two cores are free the round trip is measured, and it is a cache line's trip,
    /// not a time slice's: well under the 10 µs of even a slow machine's wake-up. (Other
    /// tests share the cores: the fastest of several tries is kept.)
    #[test]
    fn a_round_trip_between_two_cores_is_measured() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return;
        }
        let fastest = (0..20)
            .filter_map(|_| round_trip_ns())
            .min_by(f64::total_cmp);
        let ns = fastest.expect("no round trip between two cores completed in 20 tries");
        assert!(ns > 0.0 && ns < 10_000.0, "{ns} ns");
    }
}
