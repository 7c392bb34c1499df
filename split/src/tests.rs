//! Unit tests of the graph partitioning on small hand-built graphs: the parts of §13.1 the
//! bundled models do not exercise (Constant nodes, subgraphs, local functions).

use crate::onnx::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, TensorProto, TypeProto,
    ValueInfoProto, type_proto,
};
use crate::plan::*;
use prost::Message;

fn vi(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        input: inputs.iter().map(ToString::to_string).collect(),
        output: outputs.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, typed: &[&str], functions: Vec<FunctionProto>) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        graph: Some(GraphProto {
            name: Some("g".to_string()),
            node: nodes,
            input: vec![vi("x")],
            output: vec![vi("y")],
            value_info: typed.iter().map(|n| vi(n)).collect(),
            ..Default::default()
        }),
        functions,
        ..Default::default()
    }
    .encode_to_vec()
}

fn stage_graph(s: &Stage) -> GraphProto {
    ModelProto::decode(s.bytes.as_slice())
        .ok()
        .and_then(|m| m.graph)
        .unwrap_or_default()
}

fn ops(g: &GraphProto) -> Vec<&str> {
    g.node.iter().map(|n| n.op_type()).collect()
}

fn run(bytes: &[u8], at: &str) -> Result<Split, SplitError> {
    split_model(bytes, &parse_cuts(at)?, &SplitOptions::default())
}

#[test]
fn constant_nodes_are_copied_not_carried() {
    let constant = NodeProto {
        attribute: vec![AttributeProto {
            name: Some("value".to_string()),
            t: Some(TensorProto {
                data_type: Some(1),
                float_data: vec![3.0],
                ..Default::default()
            }),
            r#type: Some(4),
            ..Default::default()
        }],
        ..node("Constant", &[], &["k"])
    };
    let bytes = model(
        vec![
            constant,
            node("Mul", &["x", "k"], &["a"]),
            node("Add", &["a", "k"], &["y"]),
        ],
        &["a", "k"],
        Vec::new(),
    );
    let s = run(&bytes, "a").unwrap();
    assert!(s.carried.is_empty(), "{:?}", s.carried);
    assert_eq!(ops(&stage_graph(&s.stages[0])), ["Constant", "Mul"]);
    assert_eq!(ops(&stage_graph(&s.stages[1])), ["Constant", "Add"]);
    let names: Vec<&str> = s.stages[1]
        .inputs
        .iter()
        .map(|(i, _)| i.name.as_str())
        .collect();
    assert_eq!(names, ["a"]);
    assert!(matches!(
        run(&bytes, "k"),
        Err(SplitError::CutAtConstant(_))
    ));
}

#[test]
fn subgraph_reads_from_the_outer_scope_are_stage_inputs() {
    // `If(cond)` whose branches read `a` (computed in stage 1) from the enclosing graph.
    let branch = |op: &str| GraphProto {
        node: vec![node(op, &["a"], &["r"])],
        output: vec![vi("r")],
        ..Default::default()
    };
    let if_node = NodeProto {
        attribute: vec![
            AttributeProto {
                name: Some("then_branch".to_string()),
                g: Some(branch("Relu")),
                r#type: Some(5),
                ..Default::default()
            },
            AttributeProto {
                name: Some("else_branch".to_string()),
                g: Some(branch("Neg")),
                r#type: Some(5),
                ..Default::default()
            },
        ],
        ..node("If", &["cond"], &["y"])
    };
    let bytes = model(
        vec![
            node("Abs", &["x"], &["a"]),
            node("ReduceMax", &["a"], &["m"]),
            node("Cast", &["m"], &["cond"]),
            if_node,
        ],
        &["a", "m", "cond"],
        Vec::new(),
    );
    let s = run(&bytes, "cond").unwrap();
    let names: Vec<&str> = s.stages[1]
        .inputs
        .iter()
        .map(|(i, _)| i.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["a", "cond"],
        "the If node reads a through its branches"
    );
    assert_eq!(s.carried.len(), 1);
    assert_eq!(s.carried[0].name, "a");
    // Stage 1 has to compute `a`, `m` and `cond`: the If node alone forms stage 2.
    assert_eq!(ops(&stage_graph(&s.stages[1])), ["If"]);
}

#[test]
fn only_the_local_functions_a_stage_calls_are_copied() {
    let func = |name: &str, body: Vec<NodeProto>| FunctionProto {
        name: Some(name.to_string()),
        domain: Some("local".to_string()),
        input: vec!["i".to_string()],
        output: vec!["o".to_string()],
        node: body,
        ..Default::default()
    };
    let call = |f: &str, i: &str, o: &str| NodeProto {
        domain: Some("local".to_string()),
        ..node(f, &[i], &[o])
    };
    let bytes = model(
        vec![call("Outer", "x", "a"), node("Relu", &["a"], &["y"])],
        &["a"],
        vec![
            func("Outer", vec![call("Inner", "i", "o")]),
            func("Inner", vec![node("Neg", &["i"], &["o"])]),
            func("Unused", vec![node("Abs", &["i"], &["o"])]),
        ],
    );
    let s = run(&bytes, "a").unwrap();
    let funcs = |k: usize| -> Vec<String> {
        ModelProto::decode(s.stages[k].bytes.as_slice())
            .map(|m| m.functions.iter().map(|f| f.name().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(funcs(0), ["Outer", "Inner"]);
    assert!(funcs(1).is_empty());
}

#[test]
fn parse_cuts_reads_boundaries_and_groups() {
    assert_eq!(
        parse_cuts(" a+b , c").unwrap(),
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string()]
        ]
    );
    assert!(matches!(parse_cuts("a+"), Err(SplitError::EmptyName)));
    assert!(matches!(parse_cuts("  "), Err(SplitError::NoCuts)));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    // The bound is checked on the length alone, so a zero-filled buffer past it suffices.
    let len = usize::try_from(MAX_MODEL_LEN)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let big = vec![0u8; len];
    assert!(matches!(run(&big, "a"), Err(SplitError::TooLarge { .. })));
}
