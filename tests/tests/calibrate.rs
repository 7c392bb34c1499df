//! `quorate calibrate` end to end (§14.10) on the generated transformer, and the real
//! all-MiniLM-L6-v2 (fetched by `scripts/fetch-models.sh`) across the CPU provider and the
//! OpenVINO plugin at f32 and bf16, fed from `.npz` files (§3.5). The proposed policies are
//! then checked against fresh honest runs they were not computed from. On a processor for
//! which the plugin offers no CPU device (see `quorate_tests::openvino`), the plugin's
//! configurations are passed over with that reason and the CPU's are measured alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quorate_protocol::policy::Policy;
use quorate_protocol::tensor::{DType, Tensor};
use quorate_protocol::tensor_file::to_npy;
use quorate_runtime::LoadedModel;
use quorate_runtime::plugin::openvino_plugin;
use quorate_runtime::providers::Provider;
use quorate_tests::{openvino, quorate, read_json, repo_root, text};

fn plugin() {
    if let Err(e) = openvino_plugin() {
        panic!(
            "this test runs the OpenVINO plugin execution provider, which could not be loaded:\n{e}"
        );
    }
}

fn minilm() -> PathBuf {
    let p = repo_root().join("third_party/models/all-MiniLM-L6-v2-int8.onnx");
    assert!(
        p.is_file(),
        "{} is missing: run ./scripts/fetch-models.sh (./scripts/test does)",
        p.display()
    );
    p
}

fn gen_transformer(dir: &Path) -> PathBuf {
    let model = dir.join("transformer.onnx");
    let o = quorate([
        "gen-model",
        "transformer",
        "--out",
        model.to_str().unwrap(),
        "--max-seq",
        "64",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    model
}

fn i64s(name: &str, shape: Vec<u64>, v: &[i64]) -> Tensor {
    Tensor::new(
        name,
        DType::I64,
        shape,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
    .unwrap()
}

/// A numpy-style `.npz` of `tensors` (`np.savez` when `deflate` is false, else
/// `np.savez_compressed`).
fn write_npz(path: &Path, tensors: &[Tensor], deflate: bool) {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for t in tensors {
        w.start_file(format!("{}.npy", t.name()), opts).unwrap();
        w.write_all(&to_npy(t)).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn calibrate_measures_the_transformer_across_providers_and_its_policies_hold_on_fresh_runs() {
    plugin();
    let dir = tempfile::tempdir().unwrap();
    let model = gen_transformer(dir.path());
    let out = dir.path().join("policy.json");
    let o = quorate([
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--providers",
        "cpu,openvino:CPU:f32,openvino:CPU:bf16",
        "--threads",
        "1,2",
        "--samples",
        "3",
        "--seq-max",
        "24",
        "--out",
        out.to_str().unwrap(),
        "--table",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    let missing = openvino::cpu_missing();
    if missing.is_some() {
        for p in ["openvino:CPU:f32", "openvino:CPU:bf16"] {
            let passed_over = format!(
                "provider passed over: {p}: unavailable: the OpenVINO plugin offers no CPU device"
            );
            assert!(log.contains(&passed_over), "{log}");
        }
    } else {
        assert!(
            log.contains(
                "| transformer.onnx | OpenVINOExecutionProvider:CPU:bf16 | bf16 | 1 | probabilities |"
            ),
            "{log}"
        );
    }
    let doc = read_json(&out);
    assert_eq!(doc["samples"], 3);
    let labels: Vec<&str> = doc["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    let want: &[&str] = match missing {
        None => &["cpu/1", "cpu/2", "openvino:CPU:f32", "openvino:CPU:bf16"],
        Some(_) => &["cpu/1", "cpu/2"],
    };
    assert_eq!(labels, want);
    // cpu threads 1 vs 2: bit-identical, so the proposal for that pair alone is exact.
    let cpu_pair = doc["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == "cpu/1" && p["b"] == "cpu/2")
        .unwrap();
    assert_eq!(cpu_pair["bit_identical"], true, "{cpu_pair}");
    if missing.is_some() {
        // The proposal for the CPU alone, bit-identical across threads, is exact.
        assert_eq!(doc["mesh_policy"], "exact", "{doc}");
        return;
    }
    for pair in ["f32~f32", "bf16~f32"] {
        for output in ["embedding", "probabilities"] {
            let p = &doc["policies"][pair][output];
            let tol = Policy::parse(p["tolerance"].as_str().unwrap()).unwrap();
            assert!(
                matches!(tol, Policy::Tolerance { .. }),
                "{pair} {output}: {p}"
            );
            assert!(
                p["observed"]["max_abs"].as_f64().unwrap() > 0.0,
                "{pair} {output}: {p}"
            );
        }
    }
    let bf16 = doc["policies"]["bf16~f32"]["embedding"]["observed"]["max_abs"]
        .as_f64()
        .unwrap();
    let f32_ = doc["policies"]["f32~f32"]["embedding"]["observed"]["max_abs"]
        .as_f64()
        .unwrap();
    assert!(
        bf16 > 10.0 * f32_,
        "bf16 drift {bf16:e} vs f32 drift {f32_:e}"
    );

    // The mesh policy holds on fresh inputs of other lengths on every configuration.
    let mesh = Policy::parse(doc["mesh_policy"].as_str().unwrap()).unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let runs: Vec<LoadedModel> = ["cpu", "openvino:CPU:f32", "openvino:CPU:bf16"]
        .iter()
        .map(|p| LoadedModel::on_provider(&bytes, 1, &Provider::parse(p).unwrap()).unwrap())
        .collect();
    // The same input through a stored .npz, as `quorate calibrate --input` reads it.
    for (seq, seed) in [(40u64, 11i64), (64, 12)] {
        let ids: Vec<i64> = (0..seq as i64)
            .map(|i| (i * 131 + seed * 17) % 1000)
            .collect();
        let npz = dir.path().join(format!("ids-{seq}.npz"));
        write_npz(&npz, &[i64s("input_ids", vec![1, seq], &ids)], seq % 2 == 0);
        let parsed =
            quorate_protocol::tensor_file::parse_any(&std::fs::read(&npz).unwrap(), "x").unwrap();
        let input: Vec<Tensor> = parsed.into_iter().map(|r| r.tensor).collect();
        let outs: Vec<Vec<Tensor>> = runs
            .iter()
            .map(|m| m.run(&m.check_inputs(input.clone()).unwrap()).unwrap())
            .collect();
        for a in &outs {
            for b in &outs {
                assert!(
                    mesh.agree_all(a, b),
                    "{} refused an honest pair",
                    mesh.describe()
                );
            }
        }
    }
}

#[test]
fn calibrate_reads_multi_input_npz_samples_of_minilm_and_proposes_cosine_for_embeddings() {
    plugin();
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (i, seq) in [12u64, 37].into_iter().enumerate() {
        let ids: Vec<i64> = (0..seq as i64)
            .map(|j| {
                if j == 0 {
                    101
                } else if j == seq as i64 - 1 {
                    102
                } else {
                    1000 + (j * 977 + i as i64 * 31) % 28000
                }
            })
            .collect();
        let path = dir.path().join(format!("sample-{i}.npz"));
        write_npz(
            &path,
            &[
                i64s("input_ids", vec![1, seq], &ids),
                i64s("attention_mask", vec![1, seq], &vec![1; seq as usize]),
                i64s("token_type_ids", vec![1, seq], &vec![0; seq as usize]),
            ],
            i == 1,
        );
        inputs.push(path);
    }
    let out = dir.path().join("minilm.json");
    // Where the plugin cannot run, the CPU at two thread counts makes the pair.
    let missing = openvino::cpu_missing();
    let threads = if missing.is_some() { "1,2" } else { "1" };
    let mut args: Vec<String> = [
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--providers",
        "cpu,openvino:CPU:f32,openvino:CPU:bf16",
        "--threads",
        threads,
        "--out",
        out.to_str().unwrap(),
        "--name",
        "all-MiniLM-L6-v2",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    for p in &inputs {
        args.push("--input".into());
        args.push(p.to_str().unwrap().into());
    }
    let o = quorate(&args);
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_json(&out);
    assert_eq!(doc["samples"], 2);
    if missing.is_some() {
        // Both samples, one of them deflated, ran on the CPU at both thread counts.
        let pair = doc["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["a"] == "cpu/1" && p["b"] == "cpu/2")
            .unwrap_or_else(|| panic!("{doc}"));
        assert_eq!(pair["bit_identical"], true, "{pair}");
    } else {
        let p = &doc["policies"]["bf16~f32"]["last_hidden_state"];
        let cos = Policy::parse(p["cosine"].as_str().unwrap()).unwrap();
        let Policy::Cosine { min } = cos else {
            panic!("{p}")
        };
        assert!((0.9..1.0).contains(&min), "{p}");
        assert!(p["observed"]["min_cosine"].as_f64().unwrap() < 1.0, "{p}");
    }
    // A malformed .npz is refused with the reason, naming the file.
    let bad = dir.path().join("bad.npz");
    let good = std::fs::read(&inputs[0]).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let o = quorate([
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a valid .npz file"), "{}", text(&o));
    assert!(text(&o).contains("bad.npz"), "{}", text(&o));
}
