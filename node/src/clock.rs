//! The one place that reads the wall clock. Protocol state machines never do: they are handed
//! `now` by the shells that call them (CONTRIBUTING.md, "Layering"), and those shells take it from here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the system clock is set before 1970.
pub fn unix_now() -> u64 {
    checked_unix_now().unwrap_or(0)
}

/// Seconds since the Unix epoch, or `None` if the system clock is set before 1970 (where a
/// caller must refuse rather than sign or judge a time of 0).
pub fn checked_unix_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}
