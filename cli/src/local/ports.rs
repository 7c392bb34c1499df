//! Loopback ports for node processes that are named before the processes start.
//!
//! A local mesh lists every node's address in the roster it signs before any node runs, so a
//! port is chosen here, released, and bound again by the node a second or so later (after it
//! has loaded ONNX Runtime and its models). A port from the kernel's ephemeral range could be
//! taken in that gap by any socket bound to port 0 — every QUIC client of every concurrent
//! test binds one — and the node would then fail to start. Ports are therefore taken from just
//! below the ephemeral range, where the kernel never assigns one by itself, and each is claimed
//! with a file created exclusively in a shared folder, so concurrent meshes on one machine
//! (tests run in parallel, in several processes) never choose the same port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Ports below the ephemeral range to choose from.
const SPAN: u16 = 8192;
/// A claim older than this is stale (its mesh is long gone) and may be taken over.
const CLAIM_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Candidates tried before giving up.
const ATTEMPTS: usize = 256;

/// A port on 127.0.0.1 that is free for both UDP and TCP now and that no other caller of this
/// function on the machine will be given for [`CLAIM_LIFETIME`].
pub fn loopback_port() -> anyhow::Result<SocketAddr> {
    let (low, high) = candidate_range();
    let dir = claims_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the port claim folder {}", dir.display()))?;
    let mut seed = [0u8; 2];
    quorate_crypto::random::fill(&mut seed)?;
    let span = u32::from(high - low);
    let start = u32::from(u16::from_le_bytes(seed)) % span;
    for k in 0..ATTEMPTS as u32 {
        let port = low + ((start + k * 97) % span) as u16;
        if !claim(&dir.join(port.to_string())) {
            continue;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    anyhow::bail!(
        "no free loopback port in {low}..{high} after {ATTEMPTS} tries (claims in {})",
        dir.display()
    )
}

/// Ports `[low, high)` just below the kernel's ephemeral range (Linux default 32768..60999).
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // With an unusually low ephemeral range, use the ports above the privileged ones.
    let high = ephemeral_low.max(1024 + SPAN);
    (high - SPAN, high)
}

fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("quorate-port-claims")
}

/// Claims `path` by creating it; a claim older than [`CLAIM_LIFETIME`] is taken over.
fn claim(path: &std::path::Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .is_ok()
    };
    if create() {
        return true;
    }
    let stale = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > CLAIM_LIFETIME);
    stale && std::fs::remove_file(path).is_ok() && create()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let (low, high) = candidate_range();
        let ports: Vec<SocketAddr> = (0..20).map(|_| loopback_port().unwrap()).collect();
        let mut seen = std::collections::HashSet::new();
        for p in &ports {
            assert!((low..high).contains(&p.port()), "{p} outside {low}..{high}");
            assert!(seen.insert(p.port()), "{p} given twice");
            UdpSocket::bind(p).unwrap();
        }
    }

    #[test]
    fn a_fresh_claim_is_not_taken_again_but_a_stale_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("40000");
        assert!(claim(&path));
        assert!(!claim(&path));
        let old = SystemTime::now() - CLAIM_LIFETIME - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(claim(&path));
    }
}
