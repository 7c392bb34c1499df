//! `quorate split` on a model without intermediate `value_info` (§13.1, *Types*): a small
//! BERT-style encoder written by `quorate gen-model transformer` (the one generator, used here
//! as a library), as transformer exports come out of training frameworks. Split at layer
//! boundaries and inside attention, the stages run one after another with the
//! real ONNX Runtime give the whole model's output bit for bit for several batch sizes and
//! sequence lengths; a tensor whose type cannot be inferred is still refused with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use quorate_cli::commands::gen_model::{TransformerShape, tvi};
use quorate_protocol::tensor::{DType, Tensor};
use quorate_runtime::LoadedModel;
use quorate_split::onnx::ModelProto;
use quorate_split::{
    Message, Split, SplitError, SplitOptions, cut_points, parse_cuts, split_model,
};

const F32: i32 = 1;

const VOCAB: i64 = 50;
const CLASSES: i64 = 3;

// ---- the model ----

/// The encoder-classifier of `quorate gen-model transformer`, small: width 32, 4 heads, 2
/// layers, feed-forward width 128, vocabulary 50, 64 positions, 3 classes. It declares no
/// `value_info` at all: int64 `input_ids[batch, seq]` → `embedding[batch, 32]` and
/// `probabilities[batch, 3]`.
fn transformer() -> ModelProto {
    let bytes = quorate_cli::commands::gen_model::transformer(&TransformerShape {
        seed: 0x5eed_0f7a_2b1c_93d4,
        layers: 2,
        width: 32,
        heads: 4,
        vocab: VOCAB,
        max_seq: 64,
        classes: CLASSES,
    })
    .unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

// ---- running ----

fn split(bytes: &[u8], at: &str) -> Result<Split, SplitError> {
    split_model(bytes, &parse_cuts(at)?, &SplitOptions::default())
}

/// Runs the stages in order, each fed its declared inputs from the graph inputs and what
/// earlier stages produced (as in `split.rs`).
fn run_stages(split: &Split, inputs: &[Tensor]) -> HashMap<String, Tensor> {
    let mut env: HashMap<String, Tensor> = inputs
        .iter()
        .map(|t| (t.name().to_string(), t.clone()))
        .collect();
    for stage in &split.stages {
        let model = LoadedModel::from_bytes(&stage.bytes, 1)
            .unwrap_or_else(|e| panic!("stage {} does not load: {e:#}", stage.index));
        let declared: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
        let listed: Vec<&str> = stage.inputs.iter().map(|(i, _)| i.name.as_str()).collect();
        assert_eq!(declared, listed, "stage {} inputs", stage.index);
        let feed: Vec<Tensor> = declared
            .iter()
            .map(|n| {
                env.get(*n)
                    .unwrap_or_else(|| panic!("stage {} needs {n}, not yet computed", stage.index))
                    .clone()
            })
            .collect();
        let feed = model
            .check_inputs(feed)
            .unwrap_or_else(|e| panic!("stage {}: {e}", stage.index));
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

fn input_ids(batch: u64, seq: u64, seed: u64) -> Tensor {
    let mut s = seed | 1;
    let data: Vec<u8> = (0..batch * seq)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s % VOCAB as u64) as i64).to_le_bytes()
        })
        .collect();
    Tensor::new("input_ids", DType::I64, vec![batch, seq], data).unwrap()
}

fn whole(model: &[u8], input: &Tensor) -> Vec<Tensor> {
    let m = LoadedModel::from_bytes(model, 1).unwrap();
    let feed = m.check_inputs(vec![input.clone()]).unwrap();
    m.run(&feed).unwrap()
}

#[test]
fn the_generated_model_has_no_value_info_and_every_cut_gets_a_type() {
    let model = transformer();
    let g = model.graph.as_ref().unwrap();
    assert!(g.value_info.is_empty(), "the test must exercise inference");
    let bytes = model.encode_to_vec();
    let points = cut_points(&bytes).unwrap();
    assert!(points.len() > 70, "{} cut points", points.len());
    let untyped: Vec<&str> = points
        .iter()
        .filter(|(_, i)| i.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(untyped.is_empty(), "no inferred type for {untyped:?}");
    let shown: HashMap<&str, String> = points
        .iter()
        .filter_map(|(n, i)| Some((n.as_str(), i.as_ref()?.to_string())))
        .collect();
    for (name, want) in [
        ("emb.tok", "emb.tok float32[batch, seq, 32]"),
        ("emb.pos", "emb.pos float32[batch, seq, 32]"),
        ("emb", "emb float32[batch, seq, 32]"),
        ("l0.attn.q.t", "l0.attn.q.t float32[batch, 4, seq, 8]"),
        ("l0.attn.k.t", "l0.attn.k.t float32[batch, 4, 8, seq]"),
        ("l0.attn.probs", "l0.attn.probs float32[batch, 4, seq, seq]"),
        ("l0.attn.merged", "l0.attn.merged float32[batch, seq, 32]"),
        ("l1.attn.merged", "l1.attn.merged float32[batch, seq, 32]"),
        ("l0.ffn.gelu", "l0.ffn.gelu float32[batch, seq, 128]"),
        ("l0.out", "l0.out float32[batch, seq, 32]"),
        ("l1.out", "l1.out float32[batch, seq, 32]"),
        ("classifier", "classifier float32[batch, 3]"),
        ("emb.pos_ids", "emb.pos_ids int64[batch, seq]"),
    ] {
        assert_eq!(shown.get(name).map(String::as_str), Some(want), "{name}");
    }
}

#[test]
fn transformer_stages_are_bit_exact_at_layer_boundaries_and_inside_attention() {
    let bytes = transformer().encode_to_vec();
    let cut_sets = [
        "l0.out",
        "l0.out,l1.out",
        "emb,l0.out,l1.out,classifier",
        "l0.attn.probs",
        "l0.attn.probs,l1.attn.merged",
        "l1.ffn.gelu",
    ];
    let splits: Vec<(&str, Split)> = cut_sets
        .iter()
        .map(|at| {
            (
                *at,
                split(&bytes, at).unwrap_or_else(|e| panic!("--at {at}: {e}")),
            )
        })
        .collect();
    for (at, s) in &splits {
        assert_eq!(s.stages.len(), at.split(',').count() + 1, "{at}");
        // Every tensor crossing a cut carries its inferred, fully known rank.
        for stage in &s.stages {
            for (info, _) in &stage.inputs {
                assert!(info.shape.is_some(), "--at {at}: {info}");
            }
        }
    }
    // A cut inside attention carries the layer's input (for V and the residual) across it.
    let mid = &splits[3].1;
    let carried: Vec<&str> = mid.carried.iter().map(|c| c.name.as_str()).collect();
    assert!(carried.contains(&"emb"), "{carried:?}");

    let mut checked = 0;
    let mut differ = Vec::new();
    for (batch, seq) in [(1, 8), (3, 8), (1, 32), (3, 32)] {
        let input = input_ids(batch, seq, batch * 1000 + seq);
        let want = whole(&bytes, &input);
        let names: Vec<&str> = want.iter().map(Tensor::name).collect();
        assert_eq!(names, ["embedding", "probabilities"]);
        assert_eq!(want[1].shape(), &[batch, CLASSES as u64]);
        for (at, s) in &splits {
            let env = run_stages(s, std::slice::from_ref(&input));
            for w in &want {
                let got = &env[w.name()];
                assert_eq!(got.shape(), w.shape(), "--at {at}: {}", w.name());
                // The f32 bytes, compared exactly: no tolerance.
                if got.data() != w.data() {
                    differ.push(format!("--at {at}, batch {batch}, seq {seq}: {}", w.name()));
                }
            }
            checked += 1;
        }
    }
    assert!(
        differ.is_empty(),
        "stages differ from the whole model: {differ:#?}"
    );
    assert_eq!(checked, 4 * cut_sets.len());
    // The model computes something that depends on its input.
    let a = whole(&bytes, &input_ids(1, 8, 1));
    let b = whole(&bytes, &input_ids(1, 8, 2));
    assert_ne!(a[0].data(), b[0].data());
}

#[test]
fn a_type_that_truly_cannot_be_inferred_is_still_refused_clearly() {
    // Replace layer 1's Erf by an operator of a custom domain: nothing is known of its output.
    let mut model = transformer();
    let g = model.graph.as_mut().unwrap();
    let erf = g
        .node
        .iter_mut()
        .find(|n| n.output[0] == "l1.ffn.erf")
        .unwrap();
    erf.op_type = Some("FastErf".to_string());
    erf.domain = Some("com.example".to_string());
    let bytes = model.encode_to_vec();
    for at in ["l1.ffn.erf", "l0.out,l1.ffn.erf"] {
        let e = split(&bytes, at).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, SplitError::TypeNotInferred { node, .. } if node.contains("FastErf")),
            "--at {at}: {text}"
        );
        assert!(text.contains("\"l1.ffn.erf/Erf\" (FastErf)"), "{text}");
        assert!(text.contains("value_info"), "{text}");
    }
    // Cuts before it still work; so do cuts after it where an elementwise operator takes its
    // type from its other input (Mul of two float tensors), with the shape left unknown.
    assert!(split(&bytes, "l0.out").is_ok());
    let s = split(&bytes, "l1.ffn.gelu").unwrap();
    assert_eq!(
        s.stages[0].outputs[0].0.to_string(),
        "l1.ffn.gelu float32[unknown shape]"
    );
    // Declaring the output's type is enough to cut after it.
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = model.graph.as_mut().unwrap();
    g.value_info
        .push(tvi("l1.ffn.erf", F32, &["batch", "seq", "128"]));
    let s = split(&model.encode_to_vec(), "l1.ffn.gelu").unwrap();
    assert_eq!(
        s.stages[0].outputs[0].0.to_string(),
        "l1.ffn.gelu float32[batch, seq, 128]"
    );
}

#[test]
fn inference_agrees_with_the_declared_value_info_of_the_bundled_models() {
    // Every bundled model declares all its intermediate tensors (ONNX shape inference ran on
    // them): stripped of those declarations, quorate's inference must find the same types
    // and shapes, and the stages must still be bit-exact.
    let dir = quorate_tests::repo_root().join("models");
    let mut compared = 0;
    for name in [
        "mlp.onnx",
        "logistic.onnx",
        "hospital-1.onnx",
        "hospital-2.onnx",
        "hospital-3.onnx",
        "hospital-4.onnx",
        "hospital-5.onnx",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let declared = cut_points(&bytes).unwrap();
        let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
        m.graph.as_mut().unwrap().value_info.clear();
        let stripped = m.encode_to_vec();
        let inferred = cut_points(&stripped).unwrap();
        assert_eq!(inferred, declared, "{name}");
        compared += declared.iter().filter(|(_, i)| i.is_some()).count();
    }
    assert!(compared > 10, "{compared} tensors compared");

    let mut m =
        ModelProto::decode(std::fs::read(dir.join("mlp.onnx")).unwrap().as_slice()).unwrap();
    m.graph.as_mut().unwrap().value_info.clear();
    let stripped = m.encode_to_vec();
    let s = split(&stripped, "h1,h2,h3").unwrap();
    let input = quorate_protocol::tensor_file::parse_npy(
        &std::fs::read(dir.join("samples/features-batch4.npy")).unwrap(),
        "features",
    )
    .unwrap();
    let want = whole(&stripped, &input);
    let env = run_stages(&s, std::slice::from_ref(&input));
    assert_eq!(env[want[0].name()].data(), want[0].data());
}
