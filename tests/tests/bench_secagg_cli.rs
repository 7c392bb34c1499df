//! `quorate bench secagg` as a user runs it (§9.10): a small round, full graph and SecAgg+,
//! must end with an exact sum, the replay lines and a parseable ratio line; bad arguments
//! are refused with a message. (Timings are printed, never asserted.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_tests::{quorate, text};

/// Runs the bench and returns its stdout, asserting success.
fn bench(extra: &[&str]) -> String {
    let mut args = vec!["bench", "secagg", "--length", "300", "--dropout", "0.25"];
    args.extend_from_slice(extra);
    let o = quorate(&args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The two ratios of the last line `client/bound=X server/bound=Y`.
fn ratios(out: &str) -> (f64, f64) {
    let last = out.lines().last().unwrap();
    let mut parts = last.split(' ');
    let mut value = |key: &str| -> f64 {
        let p = parts
            .next()
            .unwrap_or_else(|| panic!("no {key} in {last:?}"));
        let v = p
            .strip_prefix(key)
            .unwrap_or_else(|| panic!("{last:?} does not have {key}"));
        v.parse()
            .unwrap_or_else(|_| panic!("{v:?} is not a number"))
    };
    let c = value("client/bound=");
    let s = value("server/bound=");
    (c, s)
}

#[test]
fn full_graph_round_is_exact_and_reports_replayed_ratios() {
    let out = bench(&["--clients", "12"]);
    assert!(
        out.contains("sum: exact (9 contributors, 3 dropped"),
        "{out}"
    );
    assert!(out.contains("clients replayed alone"), "{out}");
    assert!(out.contains("answers byte-identical"), "{out}");
    assert!(out.contains("s (thread CPU time) median of"), "{out}");
    assert!(out.contains("graph=full (SecAgg) t=7"), "{out}");
    let (c, s) = ratios(&out);
    assert!(c.is_finite() && c > 0.0, "{out}");
    assert!(s.is_finite() && s > 0.0, "{out}");
}

#[test]
fn secagg_plus_round_is_exact() {
    let out = bench(&["--clients", "40", "--neighbours", "auto"]);
    assert!(out.contains("graph=SecAgg+ k="), "{out}");
    assert!(
        out.contains("sum: exact (30 contributors, 10 dropped"),
        "{out}"
    );
    let (c, s) = ratios(&out);
    assert!(c > 0.0 && s > 0.0, "{out}");
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    for (args, reason) in [
        (
            vec!["--clients", "2"],
            "--clients must be between 3 and 10000",
        ),
        (
            vec!["--clients", "10", "--dropout", "1"],
            "--dropout must be in [0, 1)",
        ),
        (
            vec!["--clients", "10", "--neighbours", "three"],
            "--neighbours takes an even number or `auto`",
        ),
    ] {
        let mut all = vec!["bench", "secagg"];
        all.extend(args);
        let o = quorate(&all);
        assert!(!o.status.success(), "{all:?} was accepted");
        assert!(text(&o).contains(reason), "{all:?}: {}", text(&o));
    }
}
