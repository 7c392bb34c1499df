//! Which allocator the process's allocations go through (§12.10.2): the `quorate` binary
//! installs mimalloc, and `quorate bench mesh` names the allocator its figures were measured
//! with. It is found out at run time rather than assumed, so that a build that lost the
//! binary's `#[global_allocator]` says so.

/// Bytes allocated to see where they land: large enough that mimalloc commits fresh memory
/// for them whatever it already holds, small enough not to matter.
const PROBE_BYTES: usize = 16 << 20;

/// `mimalloc 3.3.2` when an allocation of this process's Rust code lands in mimalloc's heap,
/// else `system`.
pub fn allocator() -> String {
    if lands_in_mimalloc() {
        let v = mimalloc::MiMalloc.version();
        format!("mimalloc {}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
    } else {
        "system".to_string()
    }
}

/// Whether a fresh allocation raised the memory mimalloc has committed by at least its
/// size. mimalloc's statistics are its own, so an allocation made through any other
/// allocator leaves them as they were.
fn lands_in_mimalloc() -> bool {
    let Some(before) = committed() else {
        return false;
    };
    // Written, so that no allocator can leave it uncommitted.
    let probe = std::hint::black_box(vec![1u8; PROBE_BYTES]);
    let after = committed();
    drop(probe);
    after.is_some_and(|after| after >= before + PROBE_BYTES as u64)
}

/// The bytes mimalloc has committed now, from its statistics.
fn committed() -> Option<u64> {
    let stats = mimalloc::MiMalloc::stats_json().ok()?;
    let doc: serde_json::Value = serde_json::from_slice(stats.to_bytes()).ok()?;
    doc["committed"]["current"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary keeps the system allocator (only the `quorate` binary installs
    /// mimalloc): the check must say so rather than name mimalloc because it is linked in.
    /// `tests/bench_mesh_cli.rs` checks that the binary's figures name mimalloc.
    #[test]
    fn a_process_without_mimalloc_installed_is_told_apart() {
        assert_eq!(allocator(), "system");
        assert!(committed().is_some(), "mimalloc's statistics are readable");
    }
}
