//! The model-local functions a stage must carry along with its nodes (§13.1).

use std::collections::{HashMap, HashSet};

use crate::onnx::{FunctionProto, ModelProto, NodeProto};

use super::graph_index::subgraphs;

fn function_key(domain: &str, name: &str, overload: &str) -> (String, String, String) {
    (domain.to_string(), name.to_string(), overload.to_string())
}

/// Local functions (`ModelProto.functions`) the given nodes call, directly or through other
/// functions, in the model's order.
pub(super) fn used_functions<'m>(
    model: &'m ModelProto,
    nodes: &[&NodeProto],
) -> Vec<&'m FunctionProto> {
    let by_key: HashMap<_, _> = model
        .functions
        .iter()
        .map(|f| (function_key(f.domain(), f.name(), f.overload()), f))
        .collect();
    let mut used = HashSet::new();
    let mut work: Vec<(String, String, String)> = Vec::new();
    fn calls(nodes: &[NodeProto], work: &mut Vec<(String, String, String)>) {
        for n in nodes {
            work.push(function_key(n.domain(), n.op_type(), n.overload()));
            for sub in n.attribute.iter().flat_map(subgraphs) {
                calls(&sub.node, work);
            }
        }
    }
    for n in nodes {
        calls(std::slice::from_ref(*n), &mut work);
    }
    while let Some(k) = work.pop() {
        if let Some(f) = by_key.get(&k)
            && used.insert(k)
        {
            calls(&f.node, &mut work);
        }
    }
    model
        .functions
        .iter()
        .filter(|f| used.contains(&function_key(f.domain(), f.name(), f.overload())))
        .collect()
}
