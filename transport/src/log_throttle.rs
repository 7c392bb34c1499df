//! Log lines that peers cause (refused handshakes, abandoned requests) are throttled (§12.8):
//! a peer, or a stranger, must not be able to grow a node's log as fast as it can send. At
//! most one line per interval and kind is written; the next one says how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per this long, per kind.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The state of one kind of line.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    /// Whether a line may be written at `now`; if so, how many were left out since the last.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match s.last {
            Some(last) if now.saturating_duration_since(last) < INTERVAL => {
                s.left_out += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.left_out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_the_rest() {
        let t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for k in 1..=500u64 {
            assert_eq!(t.admit(t0 + Duration::from_micros(k)), None);
        }
        assert_eq!(t.admit(t0 + INTERVAL), Some(500));
        assert_eq!(t.admit(t0 + INTERVAL + Duration::from_millis(1)), None);
        assert_eq!(t.admit(t0 + INTERVAL * 5), Some(1));
    }
}
