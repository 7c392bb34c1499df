//! Finding M3 (§11.1, §17.2): a hostile request of many one-byte items must be refused with
//! a typed error before the decoder builds a value tree, so the memory it costs the receiver
//! stays bounded whatever the frame size.
//!
//! Memory is measured as the growth of the process's peak resident set (`VmHWM` in
//! `/proc/self/status`, reset by writing `5` to `/proc/self/clear_refs`), so this file holds
//! a single test: nothing else runs in the process while it measures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(target_os = "linux")]

use quorate_protocol::cbor::CborError;
use quorate_protocol::messages::{
    MAX_MESSAGE_CONTAINER, MAX_MESSAGE_ITEMS, MAX_MESSAGE_LEN, MessageError, Request,
};

const MIB: usize = 1 << 20;
/// Most the peak resident set may grow while one hostile frame is decoded.
const MAX_GROWTH: usize = 16 * MIB;

fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Decodes `frame` and returns the result and how much the peak resident set grew, in bytes.
fn decode_measured(frame: &[u8]) -> (Result<Request, MessageError>, usize) {
    // Another thread of the test harness may free memory between the reset and the read,
    // leaving the reset peak above the current set: try again, and measure from the peak
    // itself if it stays above (which can only understate the growth by that little).
    let mut before = 0;
    for _ in 0..20 {
        std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset the peak resident set");
        let rss = status_kib("VmRSS:");
        let hwm = status_kib("VmHWM:");
        before = rss.max(hwm);
        if hwm <= rss + 64 {
            break;
        }
    }
    let result = Request::decode(frame);
    let peak = status_kib("VmHWM:");
    (result, peak.saturating_sub(before) * 1024)
}

/// `{1: 1, 2: [0, 0, …]}`: a health-typed map whose field 2 is an array of one-byte
/// integers filling `len` bytes.
fn flat_frame(len: usize) -> (Vec<u8>, u64) {
    let mut f = vec![0xa2, 0x01, 0x01, 0x02, 0x9a];
    let n = len - f.len() - 4;
    f.extend_from_slice(&(n as u32).to_be_bytes());
    f.resize(len, 0x00);
    (f, n as u64)
}

/// `{1: 1, 2: [[0, …], [0, …], …]}`: the same items split into arrays that each stay
/// within the per-container limit, so only the total item limit can refuse it.
fn nested_frame(len: usize) -> Vec<u8> {
    let inner = MAX_MESSAGE_CONTAINER;
    let mut f = vec![0xa2, 0x01, 0x01, 0x02, 0x99];
    f.extend_from_slice(&(MAX_MESSAGE_CONTAINER as u16).to_be_bytes());
    while f.len() + 3 + inner <= len {
        f.extend_from_slice(&[0x99, (inner >> 8) as u8, inner as u8]);
        f.resize(f.len() + inner, 0x00);
    }
    f.truncate(len);
    f
}

#[test]
fn attack_m3_hostile_frame_of_one_byte_items_is_refused_in_bounded_memory() {
    for len in [3 * MIB, MAX_MESSAGE_LEN] {
        let (frame, n) = flat_frame(len);
        assert_eq!(frame.len(), len);
        let (result, growth) = decode_measured(&frame);
        eprintln!(
            "flat frame of {} MiB: peak resident set grew by {} KiB",
            len / MIB,
            growth / 1024
        );
        assert_eq!(
            result,
            Err(MessageError::from(CborError::ContainerTooLarge {
                len: n,
                limit: MAX_MESSAGE_CONTAINER,
            })),
            "{len}-byte flat frame"
        );
        assert!(
            growth < MAX_GROWTH,
            "{len}-byte flat frame: peak grew by {growth} bytes"
        );

        let frame = nested_frame(len);
        let (result, growth) = decode_measured(&frame);
        eprintln!(
            "nested frame of {} MiB: peak resident set grew by {} KiB",
            len / MIB,
            growth / 1024
        );
        assert_eq!(
            result,
            Err(MessageError::from(CborError::TooManyItems {
                limit: MAX_MESSAGE_ITEMS,
            })),
            "{len}-byte nested frame"
        );
        assert!(
            growth < MAX_GROWTH,
            "{len}-byte nested frame: peak grew by {growth} bytes"
        );
    }
    // A valid request still decodes after the walk.
    let health = Request::Health.encode().unwrap();
    assert_eq!(Request::decode(&health), Ok(Request::Health));
}
