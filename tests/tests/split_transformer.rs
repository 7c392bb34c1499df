//! `quorate split` on a model without intermediate `value_info` (§13.1, *Types*): a small
//! BERT-style encoder, generated here, as transformer exports come out of training frameworks.
//! Split at layer boundaries and inside attention, the stages run one after another with the
//! real ONNX Runtime give the whole model's output bit for bit for several batch sizes and
//! sequence lengths; a tensor whose type cannot be inferred is still refused with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use quorate_protocol::tensor::{DType, Tensor};
use quorate_runtime::LoadedModel;
use quorate_split::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use quorate_split::{
    Message, Split, SplitError, SplitOptions, cut_points, parse_cuts, split_model,
};

const F32: i32 = 1;
const I64: i32 = 7;

const VOCAB: i64 = 50;
const MAX_POS: i64 = 64;
const D: i64 = 32;
const HEADS: i64 = 4;
const HEAD_DIM: i64 = D / HEADS;
const FFN: i64 = 64;
const CLASSES: i64 = 3;
const LAYERS: usize = 2;

// ---- the model ----

/// Deterministic pseudo-random weights (xorshift64), uniform in [-scale, scale].
struct Weights(u64);

impl Weights {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn tensor(&mut self, name: &str, dims: &[i64], scale: f32) -> TensorProto {
        let n: i64 = dims.iter().product();
        TensorProto {
            name: Some(name.to_string()),
            data_type: Some(F32),
            dims: dims.to_vec(),
            float_data: (0..n).map(|_| self.next() * scale).collect(),
            ..Default::default()
        }
    }
}

fn f32_const(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(F32),
        dims: dims.to_vec(),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn i64_const(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(I64),
        dims: dims.to_vec(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn tvi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
    let dim = |d: &&str| tensor_shape_proto::Dimension {
        value: Some(match d.parse::<i64>() {
            Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
            Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.to_string()),
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(dim).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

/// Graph builder: nodes named after their (first) output.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Builder {
    fn op(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) -> String {
        self.nodes.push(NodeProto {
            op_type: Some(op.to_string()),
            name: Some(format!("{out}/{op}")),
            input: inputs.iter().map(ToString::to_string).collect(),
            output: vec![out.to_string()],
            attribute: attrs,
            ..Default::default()
        });
        out.to_string()
    }

    /// `x · W + b` with fresh weights of shape [din, dout].
    fn linear(&mut self, w: &mut Weights, x: &str, name: &str, din: i64, dout: i64) -> String {
        let scale = 1.0 / (din as f32).sqrt();
        self.inits
            .push(w.tensor(&format!("{name}.weight"), &[din, dout], scale));
        self.inits
            .push(w.tensor(&format!("{name}.bias"), &[dout], 0.1));
        let mm = self.op(
            "MatMul",
            &[x, &format!("{name}.weight")],
            &format!("{name}.mm"),
            vec![],
        );
        self.op("Add", &[&mm, &format!("{name}.bias")], name, vec![])
    }

    fn layer_norm(&mut self, w: &mut Weights, x: &str, name: &str) -> String {
        let g = w.tensor(&format!("{name}.gamma"), &[D], 0.1);
        let g = TensorProto {
            float_data: g.float_data.iter().map(|v| 1.0 + v).collect(),
            ..g
        };
        self.inits.push(g);
        self.inits
            .push(w.tensor(&format!("{name}.beta"), &[D], 0.1));
        self.op(
            "LayerNormalization",
            &[x, &format!("{name}.gamma"), &format!("{name}.beta")],
            name,
            vec![
                int_attr("axis", -1),
                AttributeProto {
                    name: Some("epsilon".to_string()),
                    f: Some(1e-5),
                    r#type: Some(1),
                    ..Default::default()
                },
            ],
        )
    }

    /// One encoder layer: multi-head self-attention, residual, LayerNorm, Erf-GELU
    /// feed-forward, residual, LayerNorm.
    fn encoder(&mut self, w: &mut Weights, x: &str, l: usize) -> String {
        let p = format!("l{l}");
        let q = self.linear(w, x, &format!("{p}.attn.q"), D, D);
        let k = self.linear(w, x, &format!("{p}.attn.k"), D, D);
        let v = self.linear(w, x, &format!("{p}.attn.v"), D, D);
        let perm = |v: &[i64]| AttributeProto {
            name: Some("perm".to_string()),
            ints: v.to_vec(),
            r#type: Some(7),
            ..Default::default()
        };
        let heads = |b: &mut Self, t: &str, pm: &[i64]| {
            let r = b.op(
                "Reshape",
                &[t, "heads_shape"],
                &format!("{t}.heads"),
                vec![],
            );
            b.op("Transpose", &[&r], &format!("{t}.t"), vec![perm(pm)])
        };
        let qh = heads(self, &q, &[0, 2, 1, 3]);
        let kt = heads(self, &k, &[0, 2, 3, 1]);
        let vh = heads(self, &v, &[0, 2, 1, 3]);
        let scores = self.op("MatMul", &[&qh, &kt], &format!("{p}.attn.scores"), vec![]);
        let scaled = self.op(
            "Div",
            &[&scores, "sqrt_head_dim"],
            &format!("{p}.attn.scaled"),
            vec![],
        );
        let probs = self.op(
            "Softmax",
            &[&scaled],
            &format!("{p}.attn.probs"),
            vec![int_attr("axis", -1)],
        );
        let ctx = self.op("MatMul", &[&probs, &vh], &format!("{p}.attn.ctx"), vec![]);
        let ctx_t = self.op(
            "Transpose",
            &[&ctx],
            &format!("{p}.attn.ctx.t"),
            vec![perm(&[0, 2, 1, 3])],
        );
        let merged = self.op(
            "Reshape",
            &[&ctx_t, "merge_heads"],
            &format!("{p}.attn.merged"),
            vec![],
        );
        let attn = self.linear(w, &merged, &format!("{p}.attn.out"), D, D);
        let res1 = self.op("Add", &[x, &attn], &format!("{p}.res1"), vec![]);
        let ln1 = self.layer_norm(w, &res1, &format!("{p}.ln1"));
        let h = self.linear(w, &ln1, &format!("{p}.ffn.in"), D, FFN);
        // GELU(h) = h · 0.5 · (1 + erf(h / √2))
        let hs = self.op("Div", &[&h, "sqrt2"], &format!("{p}.ffn.h_s2"), vec![]);
        let erf = self.op("Erf", &[&hs], &format!("{p}.ffn.erf"), vec![]);
        let onep = self.op("Add", &[&erf, "one"], &format!("{p}.ffn.1p"), vec![]);
        let half = self.op("Mul", &[&h, "half"], &format!("{p}.ffn.half"), vec![]);
        let gelu = self.op("Mul", &[&half, &onep], &format!("{p}.ffn.gelu"), vec![]);
        let f = self.linear(w, &gelu, &format!("{p}.ffn.out"), FFN, D);
        let res2 = self.op("Add", &[&ln1, &f], &format!("{p}.res2"), vec![]);
        self.layer_norm(w, &res2, &format!("{p}.out"))
    }
}

/// The encoder-classifier, with no `value_info` at all: int64 `input_ids[batch, seq]` →
/// `probabilities[batch, 3]`. Opset 18 (ReduceMean takes its axes as an input), IR 9.
fn transformer() -> ModelProto {
    let mut w = Weights(0x5eed_0f7a_2b1c_93d4);
    let mut b = Builder::default();
    b.inits.extend([
        w.tensor("tok_emb", &[VOCAB, D], 0.5),
        w.tensor("pos_emb", &[MAX_POS, D], 0.5),
        i64_const("heads_shape", &[4], &[0, 0, HEADS, HEAD_DIM]),
        i64_const("merge_heads", &[3], &[0, 0, D]),
        i64_const("seq_axis", &[1], &[1]),
        i64_const("zero", &[], &[0]),
        i64_const("one_i", &[], &[1]),
        f32_const("sqrt_head_dim", &[], &[(HEAD_DIM as f32).sqrt()]),
        f32_const("sqrt2", &[], &[std::f32::consts::SQRT_2]),
        f32_const("one", &[], &[1.0]),
        f32_const("half", &[], &[0.5]),
    ]);
    let tok = b.op("Gather", &["tok_emb", "input_ids"], "emb.tok", vec![]);
    // Positions 0..seq as RoBERTa exports compute them: a running count of ones shaped like
    // the input.
    let zeros = b.op("Mul", &["input_ids", "zero"], "emb.zeros", vec![]);
    let ones = b.op("Add", &[&zeros, "one_i"], "emb.ones", vec![]);
    let count = b.op("CumSum", &[&ones, "one_i"], "emb.count", vec![]);
    let pos_ids = b.op("Sub", &[&count, "one_i"], "emb.pos_ids", vec![]);
    let pos = b.op("Gather", &["pos_emb", &pos_ids], "emb.pos", vec![]);
    let mut x = b.op("Add", &[&tok, &pos], "emb", vec![]);
    for l in 0..LAYERS {
        x = b.encoder(&mut w, &x, l);
    }
    let pooled = b.op(
        "ReduceMean",
        &[&x, "seq_axis"],
        "pooled",
        vec![int_attr("keepdims", 0)],
    );
    let logits = b.linear(&mut w, &pooled, "classifier", D, CLASSES);
    b.op(
        "Softmax",
        &[&logits],
        "probabilities",
        vec![int_attr("axis", -1)],
    );
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        producer_name: Some("quorate-tests".to_string()),
        graph: Some(GraphProto {
            name: Some("encoder".to_string()),
            node: b.nodes,
            initializer: b.inits,
            input: vec![tvi("input_ids", I64, &["batch", "seq"])],
            output: vec![tvi("probabilities", F32, &["batch", &CLASSES.to_string()])],
            ..Default::default()
        }),
        ..Default::default()
    }
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
        ("l0.ffn.gelu", "l0.ffn.gelu float32[batch, seq, 64]"),
        ("l0.out", "l0.out float32[batch, seq, 32]"),
        ("l1.out", "l1.out float32[batch, seq, 32]"),
        ("pooled", "pooled float32[batch, 32]"),
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
        "emb,l0.out,l1.out,pooled",
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
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].shape(), &[batch, CLASSES as u64]);
        for (at, s) in &splits {
            let env = run_stages(s, std::slice::from_ref(&input));
            let got = &env["probabilities"];
            assert_eq!(got.shape(), want[0].shape(), "--at {at}");
            // The f32 bytes, compared exactly: no tolerance.
            if got.data() != want[0].data() {
                differ.push(format!("--at {at}, batch {batch}, seq {seq}"));
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
        .push(tvi("l1.ffn.erf", F32, &["batch", "seq", "64"]));
    let s = split(&model.encode_to_vec(), "l1.ffn.gelu").unwrap();
    assert_eq!(
        s.stages[0].outputs[0].0.to_string(),
        "l1.ffn.gelu float32[batch, seq, 64]"
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
