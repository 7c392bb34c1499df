//! `quorate bench soak` (§12.9) for one minute, as CI runs it: a live three-node mesh under
//! valid and hostile traffic answers every valid job, logs every receipt it returns, refuses
//! every hostile message and handshake, and keeps its memory and descriptors bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_tests::{quorate, text};

/// The value of `key=` in the soak's summary line.
fn field(summary: &str, key: &str) -> String {
    summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {summary:?}"))
        .to_string()
}

fn number(summary: &str, key: &str) -> u64 {
    field(summary, key).parse().unwrap()
}

#[test]
fn one_minute_of_valid_and_hostile_traffic_leaves_every_job_answered_and_logged() {
    let o = quorate([
        "bench",
        "soak",
        "--minutes",
        "1",
        "--nodes",
        "3",
        "--every",
        "10",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "the soak failed:\n{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("soak: "))
        .unwrap_or_else(|| panic!("no summary line in\n{out}"));
    assert_eq!(field(summary, "verdict"), "ok", "{out}");
    let valid = number(summary, "valid");
    assert!(valid > 0, "no valid traffic: {summary}");
    assert_eq!(number(summary, "answered"), valid, "{summary}");
    let hostile = number(summary, "hostile");
    assert!(hostile > 0, "no hostile traffic: {summary}");
    assert_eq!(number(summary, "handled"), hostile, "{summary}");
    let (logged, returned) = field(summary, "receipts_logged")
        .split_once('/')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap();
    assert!(
        returned >= valid,
        "fewer receipts than valid jobs: {summary}"
    );
    assert_eq!(logged, returned, "{summary}");
    // Every kind of hostile traffic was sent.
    let kinds = out
        .lines()
        .find_map(|l| l.strip_prefix("hostile traffic sent: "))
        .unwrap_or_else(|| panic!("no hostile breakdown in\n{out}"));
    for kind in kinds.split_whitespace() {
        let (name, n) = kind.split_once('=').unwrap();
        assert!(n.parse::<u64>().unwrap() > 0, "no {name} traffic: {kinds}");
    }
    // The table over time has a row per look (every 10 s for a minute).
    let rows = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| seconds"))
        .count();
    assert!(rows >= 5, "{rows} rows in\n{out}");
}
