//! What node-1 says of its own time (§12.7): the sums and counts of its request-duration and
//! group-commit histograms, read from its metrics endpoint before and after the latency run,
//! so that the bench can tell how much of a job's time was spent inside the node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context;

/// The samples the bench reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Seconds and count of answered inference requests, decoded request to answer.
    pub infer: (f64, f64),
    /// Seconds and count of group commits (records written and made durable).
    pub commit: (f64, f64),
}

impl Sums {
    /// The means over what happened between `self` (earlier) and `later`, in nanoseconds:
    /// per inference answered, and per group commit; `None` where nothing happened.
    pub fn means_until(&self, later: &Sums) -> (Option<f64>, Option<f64>) {
        let mean = |a: (f64, f64), b: (f64, f64)| {
            let n = b.1 - a.1;
            (n > 0.0).then(|| (b.0 - a.0) / n * 1e9)
        };
        (
            mean(self.infer, later.infer),
            mean(self.commit, later.commit),
        )
    }
}

/// Reads node `addr`'s metrics.
pub fn read(addr: SocketAddr) -> anyhow::Result<Sums> {
    let text = get(addr).with_context(|| format!("cannot read the metrics at {addr}"))?;
    parse(&text)
}

fn get(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out)?;
    anyhow::ensure!(
        out.starts_with("HTTP/1.1 200"),
        "the node answered {out:.40}"
    );
    Ok(out)
}

/// The four samples, from the OpenMetrics text (absent samples count as zero: a node that
/// answered nothing yet has no `kind="infer"` series).
pub fn parse(text: &str) -> anyhow::Result<Sums> {
    let value = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map_or(Ok(0.0), |v| {
                v.trim()
                    .parse::<f64>()
                    .with_context(|| format!("{name} is not a number: {v:?}"))
            })
    };
    Ok(Sums {
        infer: (
            value("quorate_request_duration_seconds_sum{kind=\"infer\"}")?,
            value("quorate_request_duration_seconds_count{kind=\"infer\"}")?,
        ),
        commit: (
            value("quorate_audit_fsync_seconds_sum")?,
            value("quorate_audit_fsync_seconds_count")?,
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_means_come_from_the_differences_of_sums_and_counts() {
        let before = parse(
            "quorate_request_duration_seconds_sum{kind=\"infer\"} 1.5\n\
             quorate_request_duration_seconds_count{kind=\"infer\"} 10\n\
             quorate_request_duration_seconds_sum{kind=\"health\"} 9\n\
             quorate_audit_fsync_seconds_sum 0.5\n\
             quorate_audit_fsync_seconds_count 8\n",
        )
        .unwrap();
        let after = parse(
            "quorate_request_duration_seconds_sum{kind=\"infer\"} 1.8\n\
             quorate_request_duration_seconds_count{kind=\"infer\"} 1010\n\
             quorate_audit_fsync_seconds_sum 0.7\n\
             quorate_audit_fsync_seconds_count 1008\n",
        )
        .unwrap();
        let (infer, commit) = before.means_until(&after);
        assert!((infer.unwrap() - 300_000.0).abs() < 1e-3);
        assert!((commit.unwrap() - 200_000.0).abs() < 1e-3);
        assert_eq!(after.means_until(&after), (None, None));
        assert_eq!(parse("").unwrap(), Sums::default());
        assert!(parse("quorate_audit_fsync_seconds_sum x\n").is_err());
    }
}
