//! Unit tests of the type and shape inference rules (§13.1, *Types*) and of their use when
//! cutting models that declare no intermediate `value_info`.

use crate::infer::{IDim, Inference, TInfo, infer_graph};
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use crate::plan::*;
use prost::Message;

const F32: i32 = 1;
const I64: i32 = 7;

fn tvi(name: &str, elem: i32, dims: &[&str]) -> ValueInfoProto {
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
        name: Some(format!("n_{}", outputs.join("_"))),
        input: inputs.iter().map(ToString::to_string).collect(),
        output: outputs.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

fn with_ints(mut n: NodeProto, name: &str, v: &[i64]) -> NodeProto {
    n.attribute.push(AttributeProto {
        name: Some(name.to_string()),
        ints: v.to_vec(),
        r#type: Some(7),
        ..Default::default()
    });
    n
}

fn with_int(mut n: NodeProto, name: &str, v: i64) -> NodeProto {
    n.attribute.push(AttributeProto {
        name: Some(name.to_string()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    });
    n
}

fn ints(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(I64),
        dims: vec![v.len() as i64],
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(F32),
        dims: dims.to_vec(),
        float_data: vec![0.5; n as usize],
        ..Default::default()
    }
}

fn graph(
    inputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
    nodes: Vec<NodeProto>,
) -> GraphProto {
    GraphProto {
        name: Some("g".to_string()),
        node: nodes,
        input: inputs,
        initializer: inits,
        ..Default::default()
    }
}

/// `float32[batch, 3]`-style text of what was inferred, `-` when the type is unknown.
fn show(inf: &Inference, name: &str) -> String {
    let Some(t) = inf.tensor(name) else {
        return "-".to_string();
    };
    fmt(t)
}

fn fmt(t: &TInfo) -> String {
    let e = elem_type_name(t.elem);
    match &t.shape {
        None => format!("{e}[?rank]"),
        Some(s) => {
            let d: Vec<String> = s
                .iter()
                .map(|d| match d {
                    IDim::Fixed(v) => v.to_string(),
                    IDim::Sym(s) => s.to_string(),
                    IDim::Unknown => "?".to_string(),
                })
                .collect();
            format!("{e}[{}]", d.join(", "))
        }
    }
}

fn infer(g: &GraphProto) -> Inference {
    infer_graph(g, Some(17))
}

#[test]
fn broadcasting_follows_numpy_and_never_guesses() {
    let g = graph(
        vec![
            tvi("a", F32, &["batch", "1", "4"]),
            tvi("b", F32, &["3", "1"]),
            tvi("c", F32, &["seq"]),
            tvi("d", F32, &["batch", "seq", "4"]),
        ],
        vec![],
        vec![
            node("Add", &["a", "b"], &["ab"]),
            node("Mul", &["d", "c"], &["dc"]),
            node("Sub", &["a", "d"], &["ad"]),
            node("Equal", &["a", "b"], &["eq"]),
            node("Pow", &["a", "b"], &["pw"]),
            node("Where", &["eq", "a", "b"], &["w"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "ab"), "float32[batch, 3, 4]");
    // A trailing `seq` against a fixed 4: the result is 4 whenever the model is valid.
    assert_eq!(show(&inf, "dc"), "float32[batch, seq, 4]");
    // `1` against `seq` gives `seq`; `batch` against `batch` stays.
    assert_eq!(show(&inf, "ad"), "float32[batch, seq, 4]");
    assert_eq!(show(&inf, "eq"), "bool[batch, 3, 4]");
    assert_eq!(show(&inf, "pw"), "float32[batch, 3, 4]");
    assert_eq!(show(&inf, "w"), "float32[batch, 3, 4]");

    // Two different names: either could be 1, so the dimension is unknown.
    let g = graph(
        vec![tvi("p", F32, &["n"]), tvi("q", F32, &["m"])],
        vec![],
        vec![node("Add", &["p", "q"], &["pq"])],
    );
    assert_eq!(show(&infer(&g), "pq"), "float32[?]");
}

#[test]
fn reshape_with_zero_and_minus_one() {
    let g = graph(
        vec![
            tvi("x", F32, &["batch", "seq", "64"]),
            tvi("f", F32, &["2", "3", "8"]),
        ],
        vec![
            ints("heads", &[0, 0, 4, 16]),
            ints("flat", &[-1, 16]),
            ints("merge", &[0, -1]),
            ints("two", &[-1, -1]),
            ints("pos", &[1]),
            ints("minus1", &[-1]),
            ints("hd", &[4, 16]),
        ],
        vec![
            node("Reshape", &["x", "heads"], &["r1"]),
            node("Reshape", &["f", "flat"], &["r2"]),
            // [batch, seq*64]: seq and 64 do not cancel, so the rest is unknown.
            node("Reshape", &["x", "merge"], &["r3"]),
            node("Reshape", &["x", "two"], &["r4"]),
            // The shape computed from the data as exporters do: [batch, -1, 4, 16].
            node("Shape", &["x"], &["sx"]),
            node("Slice", &["sx", "zero", "pos"], &["b1"]),
            node("Concat", &["b1", "minus1", "hd"], &["target"]),
            node("Reshape", &["x", "target"], &["r5"]),
        ],
    );
    let mut g = g;
    g.initializer.push(ints("zero", &[0]));
    let g = GraphProto {
        node: g
            .node
            .into_iter()
            .map(|n| {
                if n.op_type() == "Concat" {
                    with_int(n, "axis", 0)
                } else {
                    n
                }
            })
            .collect(),
        ..g
    };
    let inf = infer(&g);
    assert_eq!(show(&inf, "r1"), "float32[batch, seq, 4, 16]");
    assert_eq!(show(&inf, "r2"), "float32[3, 16]");
    assert_eq!(show(&inf, "r3"), "float32[batch, ?]");
    assert_eq!(
        show(&inf, "r4"),
        "float32[?rank]",
        "two -1 entries: invalid"
    );
    assert_eq!(show(&inf, "sx"), "int64[3]");
    assert_eq!(show(&inf, "target"), "int64[4]");
    assert_eq!(show(&inf, "r5"), "float32[batch, seq, 4, 16]");
}

#[test]
fn transpose_uses_perm_and_rejects_bad_ones() {
    let g = graph(
        vec![tvi("x", F32, &["batch", "seq", "4", "16"])],
        vec![],
        vec![
            with_ints(node("Transpose", &["x"], &["t"]), "perm", &[0, 2, 1, 3]),
            node("Transpose", &["x"], &["rev"]),
            with_ints(node("Transpose", &["x"], &["bad"]), "perm", &[0, 0, 1, 2]),
            with_ints(node("Transpose", &["x"], &["short"]), "perm", &[1, 0]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "t"), "float32[batch, 4, seq, 16]");
    assert_eq!(show(&inf, "rev"), "float32[16, 4, seq, batch]");
    assert_eq!(show(&inf, "bad"), "float32[?rank]");
    assert_eq!(show(&inf, "short"), "float32[?rank]");
}

#[test]
fn gather_on_embeddings_keeps_symbolic_batch_and_seq() {
    let g = graph(
        vec![tvi("ids", I64, &["batch", "seq"])],
        vec![floats("emb", &[100, 8]), ints("zero", &[0])],
        vec![
            node("Gather", &["emb", "ids"], &["e"]),
            // The first token of each sequence: a scalar index on axis 1.
            with_int(node("Gather", &["e", "k"], &["cls"]), "axis", 1),
        ],
    );
    let mut g = g;
    g.initializer.push(TensorProto {
        name: Some("k".to_string()),
        data_type: Some(I64),
        int64_data: vec![0],
        ..Default::default()
    });
    let inf = infer(&g);
    assert_eq!(show(&inf, "e"), "float32[batch, seq, 8]");
    assert_eq!(show(&inf, "cls"), "float32[batch, 8]");
}

#[test]
fn matmul_batched_and_gemm() {
    let g = graph(
        vec![
            tvi("q", F32, &["batch", "4", "seq", "8"]),
            tvi("k", F32, &["batch", "4", "8", "seq"]),
            tvi("x", F32, &["batch", "seq", "32"]),
            tvi("v", F32, &["32"]),
            tvi("m", F32, &["n", "32"]),
        ],
        vec![floats("w", &[32, 64]), floats("wt", &[10, 32])],
        vec![
            node("MatMul", &["q", "k"], &["s"]),
            node("MatMul", &["x", "w"], &["h"]),
            node("MatMul", &["v", "w"], &["vw"]),
            node("MatMul", &["x", "v"], &["xv"]),
            with_int(node("Gemm", &["m", "wt"], &["g"]), "transB", 1),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "s"), "float32[batch, 4, seq, seq]");
    assert_eq!(show(&inf, "h"), "float32[batch, seq, 64]");
    assert_eq!(show(&inf, "vw"), "float32[64]");
    assert_eq!(show(&inf, "xv"), "float32[batch, seq]");
    assert_eq!(show(&inf, "g"), "float32[n, 10]");
}

#[test]
fn layer_normalization_and_softmax() {
    let g = graph(
        vec![tvi("x", F32, &["batch", "seq", "32"])],
        vec![floats("gamma", &[32]), floats("beta", &[32])],
        vec![
            node(
                "LayerNormalization",
                &["x", "gamma", "beta"],
                &["y", "mean", "inv"],
            ),
            with_int(node("Softmax", &["y"], &["p"]), "axis", -1),
            node("Erf", &["p"], &["e"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "y"), "float32[batch, seq, 32]");
    assert_eq!(show(&inf, "mean"), "float32[batch, seq, 1]");
    assert_eq!(show(&inf, "inv"), "float32[batch, seq, 1]");
    assert_eq!(show(&inf, "p"), "float32[batch, seq, 32]");
    assert_eq!(show(&inf, "e"), "float32[batch, seq, 32]");
}

#[test]
fn reduce_mean_with_attribute_and_input_axes() {
    let g = graph(
        vec![tvi("x", F32, &["batch", "seq", "32"])],
        vec![ints("ax", &[-1])],
        vec![
            with_int(
                with_ints(node("ReduceMean", &["x"], &["pooled"]), "axes", &[1]),
                "keepdims",
                0,
            ),
            with_ints(node("ReduceMean", &["x"], &["kept"]), "axes", &[1]),
            // Opset 18 form: axes as an input.
            node("ReduceMean", &["x", "ax"], &["last"]),
            with_int(node("ReduceMean", &["x"], &["all"]), "keepdims", 0),
            // Axes computed at run time: with keepdims the rank stays.
            node("ReduceMean", &["x", "pooled_i"], &["dyn"]),
        ],
    );
    let mut g = g;
    g.input.push(tvi("pooled_i", I64, &["1"]));
    let inf = infer_graph(&g, Some(18));
    assert_eq!(show(&inf, "pooled"), "float32[batch, 32]");
    assert_eq!(show(&inf, "kept"), "float32[batch, 1, 32]");
    assert_eq!(show(&inf, "last"), "float32[batch, seq, 1]");
    assert_eq!(show(&inf, "all"), "float32[]");
    assert_eq!(show(&inf, "dyn"), "float32[?, ?, ?]");
}

#[test]
fn unsqueeze_squeeze_concat_slice_expand() {
    let g = graph(
        vec![
            tvi("x", F32, &["batch", "seq"]),
            tvi("y", F32, &["batch", "3", "1"]),
        ],
        vec![
            ints("a0", &[0]),
            ints("a2", &[2]),
            ints("s0", &[1]),
            ints("e0", &[i64::MAX]),
            ints("e1", &[-1]),
            ints("shape", &[2, 1, 1]),
        ],
        vec![
            node("Unsqueeze", &["x", "a2"], &["u"]),
            with_ints(node("Unsqueeze", &["x"], &["u_attr"]), "axes", &[0, -1]),
            node("Squeeze", &["y", "a2"], &["sq"]),
            node("Squeeze", &["y"], &["sq_all"]),
            with_int(node("Concat", &["u", "y"], &["c"]), "axis", 1),
            // y[:, 1:-1] on a fixed axis, x[:, 1:] on a symbolic one.
            node("Slice", &["y", "s0", "e1", "s0"], &["sl"]),
            node("Slice", &["x", "s0", "e0", "s0"], &["slx"]),
            node("Slice", &["x", "a0", "e0", "s0"], &["full"]),
            node("Expand", &["y", "shape"], &["ex"]),
            node("ConstantOfShape", &["shape"], &["zeros"]),
            node("Flatten", &["ex"], &["fl"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "u"), "float32[batch, seq, 1]");
    assert_eq!(show(&inf, "u_attr"), "float32[1, batch, seq, 1]");
    assert_eq!(show(&inf, "sq"), "float32[batch, 3]");
    assert_eq!(
        show(&inf, "sq_all"),
        "float32[?rank]",
        "batch might be 1: the rank is not known"
    );
    assert_eq!(show(&inf, "c"), "float32[batch, ?, 1]");
    assert_eq!(show(&inf, "sl"), "float32[batch, 1, 1]");
    assert_eq!(show(&inf, "slx"), "float32[batch, ?]");
    assert_eq!(show(&inf, "full"), "float32[batch, seq]");
    assert_eq!(show(&inf, "ex"), "float32[2, 3, 1]");
    assert_eq!(show(&inf, "zeros"), "float32[2, 1, 1]");
    assert_eq!(show(&inf, "fl"), "float32[2, 3]");
}

#[test]
fn cast_shape_range_conv_and_pool() {
    let g = graph(
        vec![
            tvi("img", F32, &["n", "3", "32", "32"]),
            tvi("ids", I64, &["batch", "seq"]),
        ],
        vec![
            floats("k", &[8, 3, 3, 3]),
            ints("zero", &[0]),
            TensorProto {
                name: Some("one".to_string()),
                data_type: Some(I64),
                int64_data: vec![1],
                ..Default::default()
            },
        ],
        vec![
            with_ints(
                with_ints(node("Conv", &["img", "k"], &["c"]), "pads", &[1, 1, 1, 1]),
                "strides",
                &[1, 1],
            ),
            with_ints(
                with_ints(node("MaxPool", &["c"], &["p"]), "kernel_shape", &[2, 2]),
                "strides",
                &[2, 2],
            ),
            node("GlobalAveragePool", &["p"], &["gap"]),
            with_int(node("Cast", &["ids"], &["f"]), "to", 1),
            node("Shape", &["ids"], &["s"]),
            node("Range", &["zero", "zero", "zero"], &["r"]),
            node("Gather", &["s", "one"], &["len"]),
            node("Range", &["zero", "len", "one"], &["pos"]),
            node("Dropout", &["f"], &["d", "mask"]),
            node("Identity", &["d"], &["id"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "c"), "float32[n, 8, 32, 32]");
    assert_eq!(show(&inf, "p"), "float32[n, 8, 16, 16]");
    assert_eq!(show(&inf, "gap"), "float32[n, 8, 1, 1]");
    assert_eq!(show(&inf, "f"), "float32[batch, seq]");
    assert_eq!(show(&inf, "s"), "int64[2]");
    assert_eq!(show(&inf, "r"), "int64[?]", "delta 0: no length");
    assert_eq!(show(&inf, "pos"), "int64[seq]", "Range(0, seq, 1)");
    assert_eq!(show(&inf, "mask"), "bool[batch, seq]");
    assert_eq!(show(&inf, "id"), "float32[batch, seq]");
}

#[test]
fn unknown_ops_leave_the_type_unknown_and_name_where_inference_stopped() {
    let custom = NodeProto {
        domain: Some("com.example".to_string()),
        ..node("Fancy", &["x"], &["f"])
    };
    let g = graph(
        vec![tvi("x", F32, &["batch", "4"])],
        vec![],
        vec![
            node("Relu", &["x"], &["r"]),
            custom,
            node("Relu", &["f"], &["fr"]),
            node("Add", &["fr", "r"], &["mixed"]),
            with_int(node("Cast", &["fr"], &["c"]), "to", 1),
            node("NotAnOnnxOp", &["r"], &["z"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "f"), "-");
    assert_eq!(inf.stopped_at("f"), Some(1));
    assert_eq!(show(&inf, "fr"), "-");
    assert_eq!(inf.stopped_at("fr"), Some(1), "blamed on the custom op");
    // Elementwise: the known input gives the type; the shape is not stated.
    assert_eq!(show(&inf, "mixed"), "float32[?rank]");
    // Cast states its type whatever the input.
    assert_eq!(show(&inf, "c"), "float32[?rank]");
    assert_eq!(inf.stopped_at("z"), Some(5));
}

#[test]
fn hostile_dimensions_give_unknown_not_panics() {
    let big = i64::MAX / 2;
    let g = graph(
        vec![
            tvi("x", F32, &[&big.to_string(), "4"]),
            tvi("y", F32, &[&big.to_string(), "4"]),
        ],
        vec![
            ints("flat", &[-1]),
            ints("neg", &[-7, 2]),
            ints("s", &[i64::MIN]),
        ],
        vec![
            node("Reshape", &["x", "flat"], &["r"]),
            with_int(node("Concat", &["x", "y", "x"], &["c"]), "axis", 0),
            node("Reshape", &["x", "neg"], &["rn"]),
            node("Slice", &["x", "s", "s"], &["sl"]),
            node("ConstantOfShape", &["neg"], &["cs"]),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "r"), "float32[?]", "the element count overflows");
    assert_eq!(show(&inf, "c"), "float32[?, 4]");
    assert_eq!(show(&inf, "rn"), "float32[?rank]");
    assert_eq!(
        show(&inf, "sl"),
        "float32[0, 4]",
        "clamped to an empty slice"
    );
    assert_eq!(show(&inf, "cs"), "float32[?rank]");

    // A rank beyond the bound keeps the type only.
    let dims: Vec<String> = (0..100).map(|_| "1".to_string()).collect();
    let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
    let g = graph(
        vec![tvi("x", F32, &dims)],
        vec![],
        vec![node("Relu", &["x"], &["y"])],
    );
    assert_eq!(show(&infer(&g), "y"), "float32[?rank]");
}

// ---- inference inside split_model ----

fn model(g: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

fn run(bytes: &[u8], at: &str) -> Result<Split, SplitError> {
    split_model(bytes, &parse_cuts(at)?, &SplitOptions::default())
}

fn stage_io(s: &Stage) -> (Vec<ValueInfoProto>, Vec<ValueInfoProto>) {
    let g = ModelProto::decode(s.bytes.as_slice())
        .ok()
        .and_then(|m| m.graph)
        .unwrap_or_default();
    (g.input, g.output)
}

fn mlp(value_info: Vec<ValueInfoProto>) -> GraphProto {
    GraphProto {
        output: vec![tvi("y", F32, &["batch", "2"])],
        value_info,
        ..graph(
            vec![tvi("x", F32, &["batch", "4"])],
            vec![floats("w", &[4, 3]), floats("w2", &[3, 2])],
            vec![
                node("MatMul", &["x", "w"], &["h"]),
                node("Relu", &["h"], &["a"]),
                node("MatMul", &["a", "w2"], &["y"]),
            ],
        )
    }
}

#[test]
fn split_without_value_info_uses_inferred_types_with_symbolic_dims() {
    let bytes = model(mlp(Vec::new()));
    let s = run(&bytes, "a").unwrap();
    assert_eq!(s.stages[0].outputs[0].0.to_string(), "a float32[batch, 3]");
    let (_, out) = stage_io(&s.stages[0]);
    assert_eq!(out, vec![tvi("a", F32, &["batch", "3"])]);
    let (inp, _) = stage_io(&s.stages[1]);
    assert_eq!(inp, vec![tvi("a", F32, &["batch", "3"])]);
    // --list shows the inferred types too.
    let points = cut_points(&bytes).unwrap();
    let shown: Vec<String> = points
        .iter()
        .map(|(n, i)| i.as_ref().map_or(n.clone(), ToString::to_string))
        .collect();
    assert_eq!(shown, ["h float32[batch, 3]", "a float32[batch, 3]"]);
}

#[test]
fn declared_value_info_wins_over_inference() {
    // A declaration with other (still compatible) dim names and a doc string is kept verbatim.
    let mut declared = tvi("a", F32, &["n", "3"]);
    declared.doc_string = Some("hidden".to_string());
    let bytes = model(mlp(vec![declared.clone()]));
    let s = run(&bytes, "a").unwrap();
    let (_, out) = stage_io(&s.stages[0]);
    assert_eq!(out, vec![declared]);
    assert_eq!(s.stages[0].outputs[0].0.to_string(), "a float32[n, 3]");
}

#[test]
fn a_type_that_cannot_be_inferred_is_refused_naming_the_node() {
    let custom = NodeProto {
        domain: Some("com.example".to_string()),
        ..node("Fancy", &["h"], &["f"])
    };
    let mut g = mlp(Vec::new());
    g.node.insert(1, custom);
    g.node[2].input[0] = "f".to_string();
    let bytes = model(g.clone());
    for at in ["f", "a"] {
        let e = run(&bytes, at).unwrap_err();
        match &e {
            SplitError::TypeNotInferred { name, node } => {
                assert_eq!(name, at);
                assert_eq!(node, "\"n_f\" (Fancy)");
            }
            other => panic!("expected TypeNotInferred, got {other}"),
        }
        let text = e.to_string();
        assert!(text.contains("\"n_f\" (Fancy)"), "{text}");
        assert!(text.contains("value_info"), "{text}");
    }
    // Cutting before the custom op still works, and declaring its output fixes the rest.
    assert!(run(&bytes, "h").is_ok());
    g.value_info.push(tvi("f", F32, &["batch", "3"]));
    let s = run(&model(g), "a").unwrap();
    assert_eq!(s.stages[0].outputs[0].0.to_string(), "a float32[batch, 3]");
}

#[test]
fn work_and_memory_stay_bounded_on_wide_and_long_graphs() {
    // A Concat of more inputs than MAX_NODE_INPUTS gets its type only.
    let names: Vec<String> = (0..crate::infer::MAX_NODE_INPUTS + 1)
        .map(|_| "x".to_string())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let g = graph(
        vec![tvi("x", F32, &["2"])],
        vec![],
        vec![
            with_int(node("Concat", &names[..2], &["narrow"]), "axis", 0),
            with_int(node("Concat", &names, &["wide"]), "axis", 0),
        ],
    );
    let inf = infer(&g);
    assert_eq!(show(&inf, "narrow"), "float32[4]");
    assert_eq!(show(&inf, "wide"), "float32[?rank]");

    // A long chain of rank-64 tensors: once the budget of tracked dimensions is spent, later
    // tensors keep their type and lose their shape.
    let dims = vec!["1"; crate::infer::MAX_RANK];
    let per = crate::infer::MAX_RANK;
    let n = crate::infer::MAX_TRACKED_DIMS / per + 2;
    let nodes: Vec<NodeProto> = (0..n)
        .map(|i| {
            let input = if i == 0 {
                "x".to_string()
            } else {
                format!("t{}", i - 1)
            };
            node("Relu", &[&input], &[&format!("t{i}")])
        })
        .collect();
    let g = graph(vec![tvi("x", F32, &dims)], vec![], nodes);
    let inf = infer(&g);
    assert_eq!(inf.tensor("t0").and_then(TInfo::rank), Some(per));
    let last = inf.tensor(&format!("t{}", n - 1)).unwrap();
    assert_eq!((last.elem, last.shape.is_none()), (F32, true));
}
