//! `quorate bench hetero` (§14.10), short: a mixed mesh of real node processes (CPU f32 with
//! 1, 2 and 4 threads, the OpenVINO plugin at f32 and bf16) serving all-MiniLM-L6-v2 under its
//! calibrated policy. Honest jobs must all be accepted with no node accused; poisoning at 10×
//! the honest envelope must be convicted every time; poisoning far below it must not convict
//! an honest node. The full campaign (1,000 honest jobs, 100 trials per row) is the same
//! command with its default counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorate_tests::{quorate, repo_root, text};

#[test]
fn a_mixed_mesh_accepts_honest_minilm_jobs_and_convicts_poisoning_at_ten_times_the_envelope() {
    let model = repo_root().join("third_party/models/all-MiniLM-L6-v2-int8.onnx");
    assert!(
        model.is_file(),
        "{} is missing: run ./scripts/fetch-models.sh (./scripts/test does)",
        model.display()
    );
    let o = quorate([
        "bench",
        "hetero",
        "--jobs",
        "9",
        "--trials",
        "6",
        "--multiples",
        "0.01,10",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["honest_jobs"], 9);
    assert_eq!(doc["honest_all_agreed"], 9, "{doc}");
    assert_eq!(doc["honest_disagreements"], 0, "{doc}");
    assert_eq!(doc["honest_accused"], 0, "{doc}");
    // Different providers and precisions never give bit-identical outputs here, so the jobs
    // really crossed providers (the CPU alone is bit-identical across thread counts).
    assert_eq!(doc["honest_bit_identical"], 0, "{doc}");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let (tiny, ten) = (&rows[0], &rows[1]);
    assert_eq!(ten["multiple"], 10.0);
    assert_eq!(ten["convicted"], 6, "{doc}");
    assert_eq!(ten["accepted_with_poisoner"], 0, "{doc}");
    // One hundredth of the honest drift is honest-looking: accepted, nobody convicted.
    assert_eq!(tiny["convicted"], 0, "{doc}");
    assert_eq!(tiny["accepted_with_poisoner"], 6, "{doc}");
    for r in rows {
        assert_eq!(r["honest_accused"], 0, "{doc}");
    }
    assert!(doc["policy"].as_str().unwrap().starts_with("cosine:min="));
}
