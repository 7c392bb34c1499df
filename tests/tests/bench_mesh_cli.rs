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
        "--minilm-seq",
        "16",
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
    // The machine line names the Ed25519 arithmetic the figures ran on (§6.2.1), as the JSON does.
    let arithmetic = doc["ed25519_arithmetic"].as_str().unwrap();
    assert!(
        ["AVX-512 IFMA", "AVX2", "portable"].contains(&arithmetic),
        "{arithmetic}"
    );
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.ends_with(&format!("Ed25519 arithmetic: {arithmetic}"))),
        "{out}"
    );
    // Each figure's parts were measured, not left at zero.
    for (section, part) in [
        ("latency", "job_ns"),
        ("latency", "ort_ns"),
        ("latency", "round_trip_ns"),
        ("latency", "round_trip_in_process_ns"),
        ("latency", "append_ns"),
        ("batch", "raw_ns"),
        ("audit", "raw_one_core_per_s"),
        ("audit", "quorate_strict_one_core_per_s"),
        ("latency", "node_mean_ns"),
        ("latency", "commit_mean_ns"),
        ("ensemble", "plain_ns"),
        ("ensemble", "empty_round_ns"),
        ("ensemble", "preparation_ns"),
        ("ensemble", "unprepared_ns"),
    ] {
        let v = doc[section][part].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{section}.{part} = {v}");
    }
    // The cores' round trip beside the batch figure (§12.10.1): measured where there are two
    // cores, its median within its range, and printed as the JSON gives it.
    let round_trip = &doc["batch"]["core_round_trip_ns"];
    if doc["cores"].as_u64().unwrap() >= 2 {
        let [median, min, max] = ["median", "min", "max"].map(|k| round_trip[k].as_f64().unwrap());
        assert!(0.0 < min && min <= median && median <= max, "{round_trip}");
        assert!(
            out.contains(&format!(
                "round trip between two cores before each batch: {median:.0} ns median"
            )),
            "{out}"
        );
    }
    // The ensemble's time by round: set-up and its five rounds, each measured, in order.
    let phases: Vec<(&str, f64)> = doc["ensemble"]["phases_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["ns"].as_f64().unwrap()))
        .collect();
    let names: Vec<&str> = phases.iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        [
            "set-up",
            "start",
            "share keys",
            "masked input",
            "consistency",
            "unmasking"
        ]
    );
    assert!(
        phases.iter().all(|p| p.1.is_finite() && p.1 > 0.0),
        "{phases:?}"
    );
    assert!(out.contains("            its rounds: set-up "), "{out}");
    // The figure is the prepared job from its input; the job started with its input, all
    // five rounds on the clock, is printed beside it with its own ratio.
    let e = &doc["ensemble"];
    let shown = e["unprepared_ratio"].as_f64().unwrap();
    let exact = e["unprepared_ns"].as_f64().unwrap() / e["plain_ns"].as_f64().unwrap();
    assert!((shown - exact).abs() <= exact * 1e-9, "{shown} vs {exact}");
    assert!(out.contains("started with its input instead"), "{out}");
    // The node's own account of the latency run's jobs: a commit is part of every job.
    let node = doc["latency"]["node_mean_ns"].as_f64().unwrap();
    let commit = doc["latency"]["commit_mean_ns"].as_f64().unwrap();
    assert!(
        commit < node,
        "a commit {commit} ns within a job of {node} ns"
    );
    assert!(
        out.contains("inside the node (means from its metrics): "),
        "{out}"
    );
    assert_eq!(doc["audit"]["n"], 300);
    // Signatures are accounted for: every reply needs a share of one (§12.4.2).
    let per_signature = doc["throughput"]["receipts_per_signature"]
        .as_f64()
        .unwrap();
    assert!(per_signature >= 1.0, "{per_signature}");
    assert!(
        doc["throughput"]["batch_receipts"].as_u64().is_some(),
        "{doc}"
    );
    // The transformer's figure (./scripts/test fetches the model): both sides ran.
    let minilm = &doc["minilm"];
    for part in ["jobs_per_s", "raw_ort_runs_per_s", "ratio"] {
        let v = minilm[part]
            .as_f64()
            .unwrap_or_else(|| panic!("minilm.{part}: {doc}"));
        assert!(v.is_finite() && v > 0.0, "minilm.{part} = {v}");
    }
    assert_eq!(minilm["tokens"], 16);
    assert_eq!(minilm["failed"], 0, "{out}");
    assert!(out.contains("\nminilm      "), "{out}");
    assert_eq!(doc["batch"]["n"], 50);
}

/// The smallest bench, the transformer's file missing, with `extra` arguments: its standard
/// output and its JSON.
fn smallest_bench(extra: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("mesh.json");
    let missing = dir.path().join("no-such-model.onnx");
    let mut args = vec![
        "bench",
        "mesh",
        "--rounds",
        "5",
        "--clients",
        "1",
        "--seconds",
        "0.1",
        "--batch",
        "1",
        "--audit",
        "1",
        "--ensembles",
        "1",
        "--minilm",
        missing.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = quorate(&args);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let doc = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (out, doc)
}

#[test]
fn a_missing_transformer_is_skipped_saying_how_to_fetch_it() {
    let (out, doc) = smallest_bench(&[]);
    assert!(
        out.contains("minilm      skipped:") && out.contains("fetch-models.sh"),
        "{out}"
    );
    assert!(doc["minilm"].is_null(), "{doc}");
}

#[test]
fn several_runs_end_with_each_figures_median_range_and_goals_met() {
    let (out, doc) = smallest_bench(&["--runs", "2"]);
    assert!(
        out.contains("\nrun 1 of 2\n") && out.contains("\nrun 2 of 2\n"),
        "{out}"
    );
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{doc}");
    // Each run printed its own summary line, as the JSON gives it.
    for run in runs {
        let line = run["summary"].as_str().unwrap();
        assert!(out.contains(&format!("{line}\n")), "{line} not in {out}");
    }
    // Each figure's median and range over the runs are those of the runs' own values.
    let over = &doc["over_runs"];
    for (name, section) in [
        ("latency/parts", "latency"),
        ("batch/raw", "batch"),
        ("audit/cores", "audit"),
        ("ensemble/plain", "ensemble"),
    ] {
        let values: Vec<f64> = runs
            .iter()
            .map(|r| r[section]["ratio"].as_f64().unwrap())
            .collect();
        let figure = &over[name];
        let median = figure["median"].as_f64().unwrap();
        assert!(
            (median - (values[0] + values[1]) / 2.0).abs() < 1e-9,
            "{name}: {figure}"
        );
        assert_eq!(figure["min"].as_f64().unwrap(), values[0].min(values[1]));
        assert_eq!(figure["max"].as_f64().unwrap(), values[0].max(values[1]));
        let met = figure["runs_meeting_goal"].as_u64().unwrap();
        assert!(met <= 2, "{figure}");
        assert!(
            out.contains(&format!(
                "  {name:<15} {median:.2} ({:.2}-{:.2})   {met} of 2 runs met the goal",
                values[0].min(values[1]),
                values[0].max(values[1])
            )),
            "{name}: {out}"
        );
    }
    // No run measured the transformer, and the block says so.
    assert!(out.contains("  minilm          not measured\n"), "{out}");
    // The last line gives the medians, and is the JSON's summary.
    let last = out.lines().last().unwrap();
    assert_eq!(last, doc["summary"].as_str().unwrap());
    let latency = over["latency/parts"]["median"].as_f64().unwrap();
    assert!(
        last.starts_with(&format!("latency/parts={latency:.2} ")),
        "{last}"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    for (args, says) in [
        (vec!["--rounds", "2"], "--rounds must be at least 5"),
        (vec!["--batch", "0"], "--batch must be 1 to"),
        (vec!["--seconds", "0"], "--seconds must be above 0"),
        (vec!["--clients", "0"], "--clients must be 1 to 1024"),
        (vec!["--minilm-seq", "0"], "--minilm-seq must be 1 to 512"),
        (vec!["--runs", "0"], "--runs must be 1 to 100"),
    ] {
        let mut all = vec!["bench", "mesh"];
        all.extend(args);
        let o = quorate(&all);
        assert!(!o.status.success());
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
    }
    // The round-trip baseline's server process refuses what it cannot serve.
    let key = "11".repeat(32);
    for (args, says) in [
        (
            ["--client-key", "zz", "--response-len", "5"],
            "--client-key must be",
        ),
        (
            ["--client-key", "ab", "--response-len", "5"],
            "--client-key must be",
        ),
        (
            ["--client-key", key.as_str(), "--response-len", "99999999"],
            "--response-len must be at most",
        ),
    ] {
        let mut all = vec!["bench", "echo"];
        all.extend(args);
        let o = quorate(&all);
        assert!(!o.status.success());
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
    }
}
