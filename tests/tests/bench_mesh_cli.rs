//! `quorate bench mesh` as a user runs it (§12.10), in a short version: five real node
//! processes, every figure measured, the JSON figures consistent with the summary line, and
//! bad arguments refused with a message. (Timings are printed, never asserted.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_tests::{quorate, text};

#[test]
fn short_run_measures_every_figure_and_sums_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("mesh.json");
    let o = quorate([
        "bench",
        "mesh",
        "--rounds",
        "10",
        "--clients",
        "4",
        "--seconds",
        "0.5",
        "--batch",
        "50",
        "--audit",
        "300",
        "--ensembles",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The last line is the summary, and it says what the JSON says.
    let last = out.lines().last().unwrap();
    assert_eq!(last, doc["summary"].as_str().unwrap(), "{out}");
    let keys = [
        ("latency/parts=", &doc["latency"]["ratio"]),
        ("jobs_per_s=", &doc["throughput"]["jobs_per_s"]),
        ("batch/raw=", &doc["batch"]["ratio"]),
        ("audit/cores=", &doc["audit"]["ratio"]),
        ("ensemble/plain=", &doc["ensemble"]["ratio"]),
    ];
    let fields: Vec<&str> = last.split(' ').collect();
    assert_eq!(fields.len(), keys.len(), "{last}");
    for (field, (key, value)) in fields.iter().zip(keys) {
        let shown: f64 = field
            .strip_prefix(key)
            .unwrap_or_else(|| panic!("{last:?} lacks {key}"))
            .parse()
            .unwrap();
        let exact = value.as_f64().unwrap();
        assert!(exact.is_finite() && exact > 0.0, "{key} {exact}");
        assert!(
            (shown - exact).abs() <= exact * 0.01 + 1.0,
            "{key}: {shown} vs {exact}"
        );
    }
    // Each figure's parts were measured, not left at zero.
    for (section, part) in [
        ("latency", "job_ns"),
        ("latency", "ort_ns"),
        ("latency", "round_trip_ns"),
        ("latency", "append_ns"),
        ("batch", "raw_ns"),
        ("audit", "raw_one_core_per_s"),
        ("ensemble", "plain_ns"),
    ] {
        let v = doc[section][part].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{section}.{part} = {v}");
    }
    assert_eq!(doc["audit"]["n"], 300);
    assert_eq!(doc["batch"]["n"], 50);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    for (args, says) in [
        (vec!["--rounds", "2"], "--rounds must be at least 5"),
        (vec!["--batch", "0"], "--batch must be 1 to"),
        (vec!["--seconds", "0"], "--seconds must be above 0"),
        (vec!["--clients", "0"], "--clients must be 1 to 1024"),
    ] {
        let mut all = vec!["bench", "mesh"];
        all.extend(args);
        let o = quorate(&all);
        assert!(!o.status.success());
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
    }
}
