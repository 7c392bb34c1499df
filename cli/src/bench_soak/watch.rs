//! What the soak watches of each node process (§12.9): resident memory and open file
//! descriptors, read from `/proc`, and whether the process is still alive.

use std::process::Child;

use anyhow::Context;

/// One look at one node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Look {
    /// Resident memory, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Reads `/proc/PID/status` (VmRSS) and counts `/proc/PID/fd`.
pub fn look(pid: u32) -> anyhow::Result<Look> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (did the node exit?)"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count() as u64;
    Ok(Look {
        rss: rss_kib * 1024,
        fds,
    })
}

/// Every node's look, in order, or why a node could not be looked at (it exited).
pub fn look_all(nodes: &mut [(String, Child)]) -> anyhow::Result<Vec<Look>> {
    nodes
        .iter_mut()
        .map(|(name, child)| {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("node {name} exited during the soak ({status})");
            }
            look(child.id()).with_context(|| format!("node {name}"))
        })
        .collect()
}

/// The largest of each figure over time, per node.
#[derive(Default)]
pub struct Peaks {
    /// Per node: the first look (after warm-up) and the largest of each figure since.
    pub nodes: Vec<(Look, Look)>,
}

impl Peaks {
    /// Records one round of looks.
    pub fn record(&mut self, looks: &[Look]) {
        if self.nodes.is_empty() {
            self.nodes = looks.iter().map(|l| (*l, *l)).collect();
            return;
        }
        for ((_, peak), l) in self.nodes.iter_mut().zip(looks) {
            peak.rss = peak.rss.max(l.rss);
            peak.fds = peak.fds.max(l.fds);
        }
    }

    /// Largest RSS of any node, bytes.
    pub fn max_rss(&self) -> u64 {
        self.nodes.iter().map(|(_, p)| p.rss).max().unwrap_or(0)
    }

    /// Largest descriptor count of any node.
    pub fn max_fds(&self) -> u64 {
        self.nodes.iter().map(|(_, p)| p.fds).max().unwrap_or(0)
    }

    /// Largest growth over the first look of any node: (RSS bytes, descriptors).
    pub fn max_growth(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(r, f), (first, peak)| {
            (
                r.max(peak.rss.saturating_sub(first.rss)),
                f.max(peak.fds.saturating_sub(first.fds)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let l = look(std::process::id()).unwrap();
        assert!(l.rss > 0);
        assert!(
            l.fds >= 3,
            "stdin, stdout and stderr at least, got {}",
            l.fds
        );
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // PIDs are below 2^22 on Linux.
        assert!(look(u32::MAX).is_err());
    }

    #[test]
    fn peaks_grow_from_the_first_look() {
        let mut p = Peaks::default();
        p.record(&[Look { rss: 100, fds: 10 }, Look { rss: 50, fds: 5 }]);
        p.record(&[Look { rss: 90, fds: 12 }, Look { rss: 80, fds: 5 }]);
        assert_eq!(p.max_rss(), 100);
        assert_eq!(p.max_fds(), 12);
        assert_eq!(p.max_growth(), (30, 2));
    }
}
