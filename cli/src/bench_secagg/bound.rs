//! The bound of §9.10: the unavoidable primitives of a measured party, timed raw.

use std::ops::AddAssign;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

use quorate_crypto::secagg::ka::{raw_x25519, raw_x25519_base};
use quorate_crypto::secagg::kdf::PrgSeed;
use quorate_crypto::secagg::prg;
use quorate_protocol::secagg::WorkCounters;

/// Time spent: wall clock, and on-CPU time of the calling thread when the work ran on it
/// alone and the platform reports it (a competing process on the same core then does not
/// count, §9.10).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    /// Wall-clock time.
    pub wall: Duration,
    /// Thread CPU time, if measured.
    pub cpu: Option<Duration>,
}

impl AddAssign for Spent {
    fn add_assign(&mut self, o: Self) {
        self.wall += o.wall;
        self.cpu = self.cpu.zip(o.cpu).map(|(a, b)| a + b);
    }
}

/// Measures [`Spent`] on the calling thread.
pub struct Stopwatch {
    wall: Instant,
    cpu: Option<ThreadTime>,
}

impl Stopwatch {
    /// Starts both clocks.
    pub fn start() -> Self {
        Self {
            cpu: ThreadTime::try_now().ok(),
            wall: Instant::now(),
        }
    }

    /// The time since [`Stopwatch::start`].
    pub fn stop(&self) -> Spent {
        let wall = self.wall.elapsed();
        let cpu = self.cpu.as_ref().and_then(|c| c.try_elapsed().ok());
        Spent { wall, cpu }
    }
}

/// Times `c.masks` raw keystreams of `c.mask_bytes / c.masks` bytes each, plus
/// `c.x25519_agreements` X25519 ladders and `c.x25519_keygens` fixed-base derivations, over
/// `threads` threads (each its round-robin share); CPU time only for one thread.
pub fn measure(c: &WorkCounters, bits: u32, threads: usize) -> Spent {
    let threads = threads.max(1);
    if threads == 1 {
        // On the calling thread, as a client runs: no spawn in the timing, and its CPU time
        // is the bound's.
        let watch = Stopwatch::start();
        work(c, bits, 0, 1);
        return watch.stop();
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || work(c, bits, t, threads));
        }
    });
    Spent {
        wall: start.elapsed(),
        cpu: None,
    }
}

/// Worker `t` of `threads`: its round-robin share of the bound's operations.
fn work(c: &WorkCounters, bits: u32, t: usize, threads: usize) {
    let (t, threads) = (t as u64, threads as u64);
    let share = |total: u64| total / threads + u64::from(t < total % threads);
    let per_mask = c.mask_bytes.checked_div(c.masks).unwrap_or(0) as usize;
    let mut buf = vec![0u8; prg::chunk_bytes(bits)];
    let mut x = 0u8;
    let mut k = [t as u8 + 1; 32];
    let mut u = [9u8; 32];
    for _ in 0..share(c.x25519_agreements) {
        u = raw_x25519(k, u);
        k[0] ^= u[0];
    }
    for _ in 0..share(c.x25519_keygens) {
        k = raw_x25519_base(k);
    }
    for i in 0..share(c.masks) {
        let seed = PrgSeed::from_bytes([(i as u8) ^ x; 16]);
        x ^= prg::raw_keystream(&seed, per_mask, &mut buf);
    }
    std::hint::black_box((x, k, u));
}

/// The median of `v` (the mean of the two middle values for an even count; 0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
