//! `quorate split` (§13.1): stage models run one after another with the real ONNX Runtime give
//! the whole model's output bit for bit; every refusal says what is wrong; malformed files
//! give clean errors; and the CLI writes what stages.json promises.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use quorate_protocol::tensor::Tensor;
use quorate_protocol::tensor_file::parse_npy;
use quorate_runtime::LoadedModel;
use quorate_split::onnx::{
    self, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use quorate_split::{
    Message, Role, Source, Split, SplitError, SplitOptions, parse_cuts, split_model,
};
use quorate_tests::{quorate, read_json, repo_root, text};

fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("models").join(name)).unwrap()
}

fn sample(name: &str) -> Tensor {
    let bytes = std::fs::read(repo_root().join("models/samples").join(name)).unwrap();
    parse_npy(&bytes, "features").unwrap()
}

fn split(bytes: &[u8], at: &str) -> Result<Split, SplitError> {
    split_model(bytes, &parse_cuts(at)?, &SplitOptions::default())
}

/// Runs the stages in order: each takes its declared inputs from the graph inputs or from
/// what earlier stages produced, exactly as stages.json describes.
fn run_stages(split: &Split, inputs: &[Tensor]) -> HashMap<String, Tensor> {
    let mut env: HashMap<String, Tensor> = inputs
        .iter()
        .map(|t| (t.name().to_string(), t.clone()))
        .collect();
    for stage in &split.stages {
        let model = LoadedModel::from_bytes(&stage.bytes, 1).unwrap();
        let declared: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
        let listed: Vec<&str> = stage.inputs.iter().map(|(i, _)| i.name.as_str()).collect();
        assert_eq!(
            declared, listed,
            "stage {}: ONNX Runtime sees other inputs than the split reports",
            stage.index
        );
        let feed: Vec<Tensor> = declared
            .iter()
            .map(|n| {
                env.get(*n)
                    .unwrap_or_else(|| panic!("stage {} needs {n}, not yet computed", stage.index))
                    .clone()
            })
            .collect();
        let feed = model.check_inputs(feed).unwrap();
        let outputs = model.run(&feed).unwrap();
        let produced: Vec<&str> = outputs.iter().map(Tensor::name).collect();
        let listed: Vec<&str> = stage.outputs.iter().map(|(i, _)| i.name.as_str()).collect();
        assert_eq!(produced, listed, "stage {} outputs", stage.index);
        for t in outputs {
            env.insert(t.name().to_string(), t);
        }
    }
    env
}

fn whole(model: &[u8], input: &Tensor) -> Vec<Tensor> {
    let m = LoadedModel::from_bytes(model, 1).unwrap();
    let feed = m.check_inputs(vec![input.clone()]).unwrap();
    m.run(&feed).unwrap()
}

fn assert_bit_exact(model_name: &str, at: &str) {
    let bytes = model_bytes(model_name);
    let s = split(&bytes, at).unwrap_or_else(|e| panic!("{model_name} at {at}: {e}"));
    assert_eq!(s.stages.len(), at.split(',').count() + 1);
    assert!(
        s.carried.is_empty(),
        "{model_name} at {at}: {:?}",
        s.carried
    );
    for sample_name in ["features.npy", "features-batch4.npy"] {
        let input = sample(sample_name);
        let want = whole(&bytes, &input);
        let env = run_stages(&s, std::slice::from_ref(&input));
        for w in &want {
            let got = env
                .get(w.name())
                .unwrap_or_else(|| panic!("{model_name} at {at}: no {}", w.name()));
            assert_eq!(got.shape(), w.shape());
            // The f32 bytes, compared exactly: no tolerance.
            assert_eq!(
                got.data(),
                w.data(),
                "{model_name} cut at {at} on {sample_name}: stages differ from the whole model"
            );
        }
    }
}

#[test]
fn mlp_stages_are_bit_exact_for_every_cut_set() {
    for at in ["h1", "h2", "h3", "h1,h3", "h1,h2,h3"] {
        assert_bit_exact("mlp.onnx", at);
    }
}

#[test]
fn hospital_model_cut_at_a_hidden_tensor_is_bit_exact() {
    assert_bit_exact("hospital-1.onnx", "h1");
    assert_bit_exact("hospital-1.onnx", "h1,h2");
}

#[test]
fn stage_interfaces_initializers_and_header() {
    let bytes = model_bytes("mlp.onnx");
    let source = ModelProto::decode(bytes.as_slice()).unwrap();
    let s = split(&bytes, "h1,h3").unwrap();
    assert_eq!(s.reencoded_len, None, "mlp.onnx must round-trip unchanged");
    let names = |v: &[(quorate_split::TensorInfo, Role)]| {
        v.iter().map(|(i, _)| i.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&s.stages[0].outputs), ["h1"]);
    assert_eq!(names(&s.stages[1].outputs), ["h3"]);
    assert_eq!(names(&s.stages[2].outputs), ["probabilities"]);
    assert_eq!(s.stages[1].inputs[0].1, Source::Stage(1));
    assert_eq!(s.stages[0].inputs[0].1, Source::GraphInput);
    let shape = format!("{}", s.stages[1].outputs[0].0);
    assert_eq!(shape, "h3 float32[batch, 8]");

    let mut all_inits = Vec::new();
    for (k, stage) in s.stages.iter().enumerate() {
        assert_eq!(
            stage.digest,
            quorate_crypto::tensor_digest::sha256(&stage.bytes)
        );
        let m = ModelProto::decode(stage.bytes.as_slice()).unwrap();
        assert_eq!(m.ir_version, source.ir_version);
        assert_eq!(m.opset_import, source.opset_import);
        let meta: HashMap<&str, &str> = m
            .metadata_props
            .iter()
            .map(|p| (p.key(), p.value()))
            .collect();
        assert_eq!(meta["quorate.stage"], format!("{}/3", k + 1));
        assert_eq!(meta["quorate.source.sha256"], hex::encode(s.source_digest));
        assert_eq!(
            meta["classes"], "0=malignant,1=benign",
            "source metadata kept"
        );
        let g = m.graph.unwrap();
        // Every initializer of the stage is read by one of its nodes.
        for init in &g.initializer {
            assert!(
                g.node
                    .iter()
                    .any(|n| n.input.iter().any(|i| i == init.name())),
                "stage {} carries unused initializer {}",
                k + 1,
                init.name()
            );
            all_inits.push(init.name().to_string());
        }
        // Shape information of the stage's internal tensors is kept.
        for n in &g.node {
            for o in &n.output {
                let declared = g.value_info.iter().chain(&g.output).any(|v| v.name() == o);
                assert!(declared, "stage {}: {o} lost its value_info", k + 1);
            }
        }
    }
    all_inits.sort();
    let mut want: Vec<String> = source
        .graph
        .unwrap()
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    want.sort();
    assert_eq!(
        all_inits, want,
        "each initializer in exactly one stage of a chain"
    );
}

#[test]
fn splitting_is_deterministic() {
    let bytes = model_bytes("mlp.onnx");
    let a = split(&bytes, "h1,h2").unwrap();
    let b = split(&bytes, "h1,h2").unwrap();
    let da: Vec<_> = a.stages.iter().map(|s| s.digest).collect();
    let db: Vec<_> = b.stages.iter().map(|s| s.digest).collect();
    assert_eq!(da, db);
    let c = split(&bytes, "h1,h3").unwrap();
    assert_eq!(a.stages[0].digest, c.stages[0].digest, "same first stage");
    assert_ne!(a.stages[1].digest, c.stages[1].digest);
}

// ---- a graph with a skip connection: y = relu(x) + neg(relu(x)) * 2 ----

fn tensor_vi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(match d.parse::<i64>() {
                                Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                                Err(_) => {
                                    tensor_shape_proto::dimension::Value::DimParam(d.to_string())
                                }
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        name: Some(format!("{op}_{}", outputs.join("_"))),
        input: inputs.iter().map(ToString::to_string).collect(),
        output: outputs.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

/// `x → Relu → a → Neg → b → Mul(b, two) → c → Add(a, c) → y`: `a` skips over `b` and `c`.
fn skip_model(with_types: bool) -> Vec<u8> {
    const F32: i32 = 1;
    let two = TensorProto {
        name: Some("two".to_string()),
        data_type: Some(F32),
        dims: vec![1],
        float_data: vec![2.0],
        ..Default::default()
    };
    let value_info = if with_types {
        ["a", "b", "c"]
            .iter()
            .map(|n| tensor_vi(n, F32, &["batch", "30"]))
            .collect()
    } else {
        Vec::new()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("quorate-tests".to_string()),
        graph: Some(GraphProto {
            name: Some("skip".to_string()),
            node: vec![
                node("Relu", &["x"], &["a"]),
                node("Neg", &["a"], &["b"]),
                node("Mul", &["b", "two"], &["c"]),
                node("Add", &["a", "c"], &["y"]),
            ],
            initializer: vec![two],
            input: vec![tensor_vi("x", F32, &["batch", "30"])],
            output: vec![tensor_vi("y", F32, &["batch", "30"])],
            value_info,
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn skip_connection_is_carried_and_still_bit_exact() {
    let bytes = skip_model(true);
    let input = sample("features-batch4.npy").with_name("x").unwrap();
    let want = whole(&bytes, &input);
    let s = split(&bytes, "b,c").unwrap();
    assert_eq!(s.carried.len(), 1);
    assert_eq!(s.carried[0].name, "a");
    assert_eq!((s.carried[0].from, s.carried[0].to.clone()), (1, vec![3]));
    assert!(
        s.stages[0]
            .outputs
            .iter()
            .any(|(i, r)| i.name == "a" && *r == Role::Carried)
    );
    assert!(
        s.stages[2]
            .inputs
            .iter()
            .any(|(i, src)| i.name == "a" && *src == Source::Stage(1))
    );
    // The initializer goes only to the stage that multiplies by it.
    assert_eq!(
        s.stages.iter().map(|s| s.initializers).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    let env = run_stages(&s, std::slice::from_ref(&input));
    assert_eq!(env["y"].data(), want[0].data());
    assert_ne!(
        env["y"].data(),
        input.data(),
        "the model must compute something"
    );
}

#[test]
fn no_carry_refuses_a_cut_that_does_not_separate() {
    let bytes = skip_model(true);
    let e = split_model(
        &bytes,
        &parse_cuts("b").unwrap(),
        &SplitOptions { no_carry: true },
    )
    .unwrap_err();
    assert!(matches!(e, SplitError::NotSeparating(_)), "{e}");
    assert!(e.to_string().contains("\"a\""), "{e}");
    // Naming the skipping tensor in the cut separates the graph.
    let ok = split_model(
        &bytes,
        &parse_cuts("a+b").unwrap(),
        &SplitOptions { no_carry: true },
    )
    .unwrap();
    assert!(ok.carried.is_empty());
    assert_eq!(ok.stages.len(), 2);
    let input = sample("features.npy").with_name("x").unwrap();
    let env = run_stages(&ok, std::slice::from_ref(&input));
    assert_eq!(env["y"].data(), whole(&bytes, &input)[0].data());
}

#[test]
fn crossing_tensors_without_value_info_get_inferred_types() {
    // §13.1: a cut or carried tensor with no declaration gets the type and shape quorate
    // infers; declared information would win.
    let bytes = skip_model(false);
    let s = split(&bytes, "b").unwrap();
    let described = |name: &str| {
        s.stages
            .iter()
            .flat_map(|st| st.outputs.iter().map(|(i, _)| i))
            .find(|i| i.name == name)
            .map(ToString::to_string)
    };
    assert_eq!(described("b").as_deref(), Some("b float32[batch, 30]"));
    assert_eq!(described("a").as_deref(), Some("a float32[batch, 30]"));
    // Dropping mlp.onnx's declaration of h2 no longer makes it uncuttable: its type and
    // shape are inferred from the graph.
    let mut m = ModelProto::decode(model_bytes("mlp.onnx").as_slice()).unwrap();
    m.graph
        .as_mut()
        .unwrap()
        .value_info
        .retain(|v| v.name() != "h2");
    let bytes = m.encode_to_vec();
    let s = split(&bytes, "h2").unwrap();
    let h2 = s.stages[0]
        .outputs
        .iter()
        .find(|(i, _)| i.name == "h2")
        .map(|(i, _)| i.to_string());
    assert_eq!(h2.as_deref(), Some("h2 float32[batch, 16]"));
    assert!(split(&bytes, "h1").is_ok());
}

// ---- refusals ----

fn err(at: &str) -> SplitError {
    split(&model_bytes("mlp.onnx"), at).unwrap_err()
}

#[test]
fn cut_names_that_are_not_tensors_are_refused_with_the_alternatives() {
    let e = err("h9");
    assert!(matches!(&e, SplitError::UnknownTensor { name, .. } if name == "h9"));
    assert!(e.to_string().contains("h1, h2_pre"), "{e}");
    let e = err("fc2");
    assert!(e.to_string().contains("its outputs are h2_pre"), "{e}");
}

#[test]
fn cuts_at_inputs_outputs_and_constants_are_refused() {
    assert!(matches!(err("features"), SplitError::CutAtGraphInput(n) if n == "features"));
    assert!(
        matches!(err("probabilities"), SplitError::CutAtGraphOutput(n) if n == "probabilities")
    );
    assert!(matches!(err("fc2.weight"), SplitError::CutAtConstant(n) if n == "fc2.weight"));
}

#[test]
fn duplicate_and_empty_cuts_are_refused() {
    assert!(matches!(err("h1,h2,h1"), SplitError::Duplicate(n) if n == "h1"));
    assert!(matches!(err("h1+h1"), SplitError::Duplicate(n) if n == "h1"));
    assert!(matches!(err("h1,,h2"), SplitError::EmptyName));
    assert!(matches!(err("h1,"), SplitError::EmptyName));
    assert!(matches!(err(""), SplitError::NoCuts));
}

#[test]
fn cuts_out_of_order_are_refused_with_an_order_that_works() {
    let e = err("h3,h1");
    match &e {
        SplitError::OutOfOrder {
            later,
            earlier,
            hint,
        } => {
            assert_eq!((later.as_str(), earlier.as_str()), ("h1", "h3"));
            assert!(hint.contains("--at h1,h3"), "{e}");
        }
        other => panic!("expected OutOfOrder, got {other}"),
    }
    let e = err("h1,h3,h2");
    assert!(e.to_string().contains("--at h1,h2,h3"), "{e}");
    // A tensor and one it needs can never be in separate boundaries in the wrong order, and
    // the one-node case (h1_pre and h1 in one boundary) is fine.
    assert!(split(&model_bytes("mlp.onnx"), "h1_pre+h1").is_ok());
}

#[test]
fn nodes_out_of_topological_order_are_refused() {
    let mut m = ModelProto::decode(model_bytes("mlp.onnx").as_slice()).unwrap();
    m.graph.as_mut().unwrap().node.swap(2, 3);
    let e = split(&m.encode_to_vec(), "h2").unwrap_err();
    assert!(matches!(e, SplitError::Malformed(_)), "{e}");
    assert!(e.to_string().contains("topological"), "{e}");
}

#[test]
fn external_data_is_refused() {
    let mut m = ModelProto::decode(model_bytes("mlp.onnx").as_slice()).unwrap();
    let init = &mut m.graph.as_mut().unwrap().initializer[0];
    init.data_location = Some(onnx::tensor_proto::DataLocation::External as i32);
    let name = init.name().to_string();
    let e = split(&m.encode_to_vec(), "h1").unwrap_err();
    assert!(
        matches!(&e, SplitError::ExternalData(n) if *n == name),
        "{e}"
    );
}

#[test]
fn truncated_and_garbage_models_give_clean_errors() {
    let bytes = model_bytes("mlp.onnx");
    let cuts = parse_cuts("h1,h2").unwrap();
    let mut refused = 0;
    for len in 0..bytes.len() {
        if split_model(&bytes[..len], &cuts, &SplitOptions::default()).is_err() {
            refused += 1;
        }
    }
    // A protobuf prefix can be a valid smaller message; nearly every prefix must still be refused
    // (no graph, a cut tensor missing, …), and none may panic.
    assert!(
        refused > bytes.len() * 9 / 10,
        "{refused} of {}",
        bytes.len()
    );

    // Deterministic byte flips (xorshift), a few per run: Ok or Err, never a panic.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let _ = split_model(&b, &cuts, &SplitOptions::default());
    }
    for garbage in [
        &b""[..],
        b"\x93NUMPY",
        b"\x0a\xff\xff\xff\xff\x0f",
        &[0xff; 64],
    ] {
        assert!(split_model(garbage, &cuts, &SplitOptions::default()).is_err());
    }
}

// ---- the binary ----

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_writes_stage_files_and_a_manifest_that_matches_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stages");
    let mlp = repo_root().join("models/mlp.onnx");
    let o = quorate(["split", s(&mlp), "--at", "h1,h2,h3", "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("stage 4"), "{t}");
    assert!(
        t.contains("in   h3 float32[batch, 8]  (from stage 3)"),
        "{t}"
    );

    let doc = read_json(&out.join("stages.json"));
    assert_eq!(doc["format"], "quorate-stages/1");
    assert_eq!(
        doc["source"]["sha256"],
        "d0563fffd48e706f4defcf9dd7409f3430bacd70fd9954f7e04761ea9160d2a8"
    );
    let stages = doc["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    for (k, st) in stages.iter().enumerate() {
        let file = st["file"].as_str().unwrap();
        assert_eq!(file, format!("stage-{}.onnx", k + 1));
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert_eq!(
            st["sha256"].as_str().unwrap(),
            hex::encode(quorate_crypto::tensor_digest::sha256(&bytes))
        );
    }
    assert_eq!(stages[0]["inputs"][0]["name"], "features");
    assert_eq!(stages[0]["inputs"][0]["from"], "input");
    assert_eq!(stages[0]["inputs"][0]["shape"][0], "batch");
    assert_eq!(stages[0]["inputs"][0]["shape"][1], 30);
    assert_eq!(stages[1]["inputs"][0]["from"], 1);
    assert_eq!(stages[1]["outputs"][0]["name"], "h2");
    assert_eq!(stages[1]["outputs"][0]["dtype"], "float32");
    assert_eq!(stages[3]["outputs"][0]["role"], "output");

    // The first stage file runs under `quorate run` as any model does.
    let key = dir.path().join("node.key");
    assert!(quorate(["keygen", "--out", s(&key)]).status.success());
    let run_out = dir.path().join("run1");
    let o = quorate([
        "run",
        "--model",
        s(&out.join("stage-1.onnx")),
        "--input",
        s(&repo_root().join("models/samples/features.npy")),
        "--key",
        s(&key),
        "--out",
        s(&run_out),
        "--no-salt",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let outputs = read_json(&run_out.join("outputs.json"));
    assert_eq!(outputs["tensors"][0]["name"], "h1");

    // A second split into the same directory is refused, then replaces it with --force,
    // leaving no stale stage file behind.
    let o = quorate(["split", s(&mlp), "--at", "h2", "--out", s(&out)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let o = quorate(["split", s(&mlp), "--at", "h2", "--out", s(&out), "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("stage-2.onnx").is_file());
    assert!(!out.join("stage-3.onnx").exists());
}

#[test]
fn cli_errors_are_clear_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let mlp = repo_root().join("models/mlp.onnx");
    for (at, says) in [
        ("h3,h1", "this order works: --at h1,h3"),
        ("nope", "\"nope\" is not a tensor of the graph"),
        ("probabilities", "is a graph output"),
    ] {
        let o = quorate(["split", s(&mlp), "--at", at, "--out", s(&out)]);
        assert!(!o.status.success(), "{at}");
        assert!(text(&o).contains(says), "{at}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
    assert!(!out.exists(), "a refused split writes nothing");
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf \xff\xff").unwrap();
    let o = quorate(["split", s(&junk), "--at", "h1", "--out", s(&out)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not an ONNX model"), "{}", text(&o));
    let o = quorate(["split", s(&mlp), "--list"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("h2 float32[batch, 16]"), "{}", text(&o));
    let o = quorate(["split", "--help"]);
    assert!(text(&o).contains("carried"), "{}", text(&o));
}
