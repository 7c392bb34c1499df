//! `quorate gen-model`: writes real ONNX models generated from a seed, for calibration and the
//! provider tests (§12.2.1, §14.10). `transformer` is a small BERT-style encoder-classifier:
//! token and position embeddings, multi-head self-attention, residuals, LayerNormalization,
//! Erf-GELU feed-forward layers, mean pooling and a classifier head. No `value_info`, as
//! exports from training frameworks come out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use quorate_split::Message;
use quorate_split::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

/// Arguments of `quorate gen-model`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  quorate gen-model transformer --out third_party/models/transformer.onnx\n\n\
The transformer takes input_ids int64[batch, seq] (ids below --vocab, seq at most --max-seq) and\n\
returns embedding float32[batch, width] (the mean-pooled last layer) and probabilities\n\
float32[batch, classes]. The same arguments always write the same bytes."
)]
pub struct GenModelArgs {
    /// What to generate: `transformer`.
    pub kind: String,
    /// Where to write the .onnx file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Weight seed.
    #[arg(long, default_value_t = 0x5eed_0f7a_2b1c_93d4)]
    pub seed: u64,
    /// Encoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Model width (a multiple of --heads).
    #[arg(long, default_value_t = 64)]
    pub width: i64,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: i64,
    /// Vocabulary size.
    #[arg(long, default_value_t = 1000)]
    pub vocab: i64,
    /// Longest sequence (positions).
    #[arg(long, default_value_t = 256)]
    pub max_seq: i64,
}

/// Shape of the generated transformer.
#[derive(Clone, Copy, Debug)]
pub struct TransformerShape {
    /// Weight seed.
    pub seed: u64,
    /// Encoder layers.
    pub layers: usize,
    /// Model width.
    pub width: i64,
    /// Attention heads (divides `width`).
    pub heads: i64,
    /// Vocabulary size.
    pub vocab: i64,
    /// Longest sequence.
    pub max_seq: i64,
    /// Classes of the head.
    pub classes: i64,
}

impl Default for TransformerShape {
    fn default() -> Self {
        Self {
            seed: 0x5eed_0f7a_2b1c_93d4,
            layers: 2,
            width: 64,
            heads: 4,
            vocab: 1000,
            max_seq: 256,
            classes: 5,
        }
    }
}

/// Runs `quorate gen-model`.
pub fn run(args: &GenModelArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.kind == "transformer",
        "unknown model kind {:?}; known: transformer",
        args.kind
    );
    let shape = TransformerShape {
        seed: args.seed,
        layers: args.layers,
        width: args.width,
        heads: args.heads,
        vocab: args.vocab,
        max_seq: args.max_seq,
        ..TransformerShape::default()
    };
    let bytes = transformer(&shape)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, sha256 {})",
        args.out.display(),
        bytes.len(),
        hex::encode(quorate_crypto::tensor_digest::sha256(&bytes))
    );
    Ok(ExitCode::SUCCESS)
}

const F32: i32 = 1;
const I64: i32 = 7;

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

/// A tensor value info; dimensions that do not parse as numbers are symbolic.
pub fn tvi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
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

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        ints: v.to_vec(),
        r#type: Some(7),
        ..Default::default()
    }
}

/// Graph builder: nodes named after their (first) output.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    width: i64,
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
        let g = w.tensor(&format!("{name}.gamma"), &[self.width], 0.1);
        let g = TensorProto {
            float_data: g.float_data.iter().map(|v| 1.0 + v).collect(),
            ..g
        };
        self.inits.push(g);
        self.inits
            .push(w.tensor(&format!("{name}.beta"), &[self.width], 0.1));
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
        let d = self.width;
        let p = format!("l{l}");
        let q = self.linear(w, x, &format!("{p}.attn.q"), d, d);
        let k = self.linear(w, x, &format!("{p}.attn.k"), d, d);
        let v = self.linear(w, x, &format!("{p}.attn.v"), d, d);
        let heads = |b: &mut Self, t: &str, pm: &[i64]| {
            let r = b.op(
                "Reshape",
                &[t, "heads_shape"],
                &format!("{t}.heads"),
                vec![],
            );
            b.op(
                "Transpose",
                &[&r],
                &format!("{t}.t"),
                vec![ints_attr("perm", pm)],
            )
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
            vec![ints_attr("perm", &[0, 2, 1, 3])],
        );
        let merged = self.op(
            "Reshape",
            &[&ctx_t, "merge_heads"],
            &format!("{p}.attn.merged"),
            vec![],
        );
        let attn = self.linear(w, &merged, &format!("{p}.attn.out"), d, d);
        let res1 = self.op("Add", &[x, &attn], &format!("{p}.res1"), vec![]);
        let ln1 = self.layer_norm(w, &res1, &format!("{p}.ln1"));
        let h = self.linear(w, &ln1, &format!("{p}.ffn.in"), d, 4 * d);
        // GELU(h) = h · 0.5 · (1 + erf(h / √2))
        let hs = self.op("Div", &[&h, "sqrt2"], &format!("{p}.ffn.h_s2"), vec![]);
        let erf = self.op("Erf", &[&hs], &format!("{p}.ffn.erf"), vec![]);
        let onep = self.op("Add", &[&erf, "one"], &format!("{p}.ffn.1p"), vec![]);
        let half = self.op("Mul", &[&h, "half"], &format!("{p}.ffn.half"), vec![]);
        let gelu = self.op("Mul", &[&half, &onep], &format!("{p}.ffn.gelu"), vec![]);
        let f = self.linear(w, &gelu, &format!("{p}.ffn.out"), 4 * d, d);
        let res2 = self.op("Add", &[&ln1, &f], &format!("{p}.res2"), vec![]);
        self.layer_norm(w, &res2, &format!("{p}.out"))
    }
}

/// The encoder-classifier as ONNX bytes: int64 `input_ids[batch, seq]` → float32
/// `embedding[batch, width]` and `probabilities[batch, classes]`. Opset 18, IR 9.
pub fn transformer(shape: &TransformerShape) -> anyhow::Result<Vec<u8>> {
    let TransformerShape {
        seed,
        layers,
        width: d,
        heads,
        vocab,
        max_seq,
        classes,
    } = *shape;
    anyhow::ensure!(
        heads >= 1 && d >= heads && d % heads == 0,
        "width {d} must be a positive multiple of heads {heads}"
    );
    anyhow::ensure!(
        (1..=1 << 16).contains(&vocab) && (1..=1 << 14).contains(&max_seq) && d <= 4096,
        "vocab (1..=65536), max-seq (1..=16384) or width (..=4096) out of range"
    );
    anyhow::ensure!(layers <= 48, "at most 48 layers");
    let head_dim = d / heads;
    let mut w = Weights(seed | 1);
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        width: d,
    };
    b.inits.extend([
        w.tensor("tok_emb", &[vocab, d], 0.5),
        w.tensor("pos_emb", &[max_seq, d], 0.5),
        i64_const("heads_shape", &[4], &[0, 0, heads, head_dim]),
        i64_const("merge_heads", &[3], &[0, 0, d]),
        i64_const("seq_axis", &[1], &[1]),
        i64_const("zero", &[], &[0]),
        i64_const("one_i", &[], &[1]),
        f32_const("sqrt_head_dim", &[], &[(head_dim as f32).sqrt()]),
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
    for l in 0..layers {
        x = b.encoder(&mut w, &x, l);
    }
    let pooled = b.op(
        "ReduceMean",
        &[&x, "seq_axis"],
        "embedding",
        vec![int_attr("keepdims", 0)],
    );
    let logits = b.linear(&mut w, &pooled, "classifier", d, classes);
    b.op(
        "Softmax",
        &[&logits],
        "probabilities",
        vec![int_attr("axis", -1)],
    );
    let model = ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(18),
        }],
        producer_name: Some("quorate gen-model".to_string()),
        graph: Some(GraphProto {
            name: Some("encoder".to_string()),
            node: b.nodes,
            initializer: b.inits,
            input: vec![tvi("input_ids", I64, &["batch", "seq"])],
            output: vec![
                tvi("embedding", F32, &["batch", &d.to_string()]),
                tvi("probabilities", F32, &["batch", &classes.to_string()]),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
