//! The client's response deadline (§7.6.1): the compute budget the caller grants the node,
//! plus network time that follows the round-trip time measured on the connection, so one
//! setting serves a loopback mesh and a mesh across continents alike.

use std::time::Duration;

/// Round trips of network time allowed per exchange on top of the compute budget
/// (§7.6.1): one for the request and its response, the rest for loss recovery (each lost
/// flight costs about one probe timeout, RFC 9002 §6.2, and probes back off exponentially).
pub const RESPONSE_RTTS: u32 = 10;

/// The least network time allowed, whatever the RTT (§7.6.1): on a LAN the RTT is well under
/// a millisecond, but a loss still costs a probe timeout of at least the timer granularity
/// plus the peer's ACK delay, and scheduling on a loaded host adds its own delays.
pub const RESPONSE_MARGIN_FLOOR: Duration = Duration::from_secs(1);

/// The most network time allowed, whatever the RTT (§7.6.1), so that an RTT sample inflated
/// by a stalled path cannot postpone a verdict indefinitely.
pub const RESPONSE_MARGIN_CAP: Duration = Duration::from_secs(60);

/// The network time allowed for one exchange on a path whose smoothed RTT is `rtt`
/// (§7.6.1): `RESPONSE_RTTS × rtt`, kept within [`RESPONSE_MARGIN_FLOOR`] and
/// [`RESPONSE_MARGIN_CAP`].
pub fn network_margin(rtt: Duration) -> Duration {
    rtt.saturating_mul(RESPONSE_RTTS)
        .clamp(RESPONSE_MARGIN_FLOOR, RESPONSE_MARGIN_CAP)
}

/// How long the client waits for the response to one request (§7.6.1): the compute
/// `budget` plus [`network_margin`] of the RTT measured on the connection.
pub fn response_deadline(budget: Duration, rtt: Duration) -> Duration {
    budget.saturating_add(network_margin(rtt))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fast_path_gets_the_floor() {
        assert_eq!(network_margin(Duration::ZERO), RESPONSE_MARGIN_FLOOR);
        assert_eq!(network_margin(MS / 10), RESPONSE_MARGIN_FLOOR);
        assert_eq!(
            response_deadline(Duration::from_secs(30), MS),
            Duration::from_secs(31)
        );
    }

    #[test]
    fn a_slow_path_gets_ten_round_trips() {
        assert_eq!(network_margin(200 * MS), 2000 * MS);
        assert_eq!(network_margin(150 * MS), 1500 * MS);
        assert_eq!(
            response_deadline(Duration::from_secs(5), 300 * MS),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn the_margin_grows_with_the_rtt_and_is_capped() {
        let mut last = Duration::ZERO;
        for ms in [0, 1, 50, 100, 101, 400, 1000, 5999, 6000, 6001, 60_000] {
            let m = network_margin(ms * MS);
            assert!(m >= last, "not monotonic at {ms} ms");
            last = m;
        }
        assert_eq!(
            network_margin(Duration::from_secs(3600)),
            RESPONSE_MARGIN_CAP
        );
        assert_eq!(network_margin(Duration::MAX), RESPONSE_MARGIN_CAP);
        assert_eq!(
            response_deadline(Duration::MAX, Duration::MAX),
            Duration::MAX
        );
    }
}
