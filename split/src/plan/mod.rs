//! Partitioning an ONNX graph into stage models (§13.1): the graph analysis, the assignment of
//! nodes to stages, and the construction of each stage's `ModelProto`. Pure functions of the
//! model bytes and the cuts; no I/O.

mod decode;
mod error;
mod functions;
mod graph_index;
mod stage;
mod type_names;

use std::collections::{BTreeSet, HashMap, HashSet};

use prost::Message;

use crate::infer::default_opset;
use crate::onnx::{GraphProto, ModelProto, NodeProto, StringStringEntryProto, ValueInfoProto};

pub use decode::decode_model;
pub use error::SplitError;
pub use stage::{Carried, Dim, Role, Source, Split, SplitOptions, Stage, TensorInfo, parse_cuts};
pub use type_names::elem_type_name;

use functions::used_functions;
use graph_index::{Const, Index};
use type_names::describe;

/// Largest model file `quorate split` reads (1 GiB). ONNX's protobuf encoding cannot exceed
/// 2 GiB anyway; larger models keep their weights in external files, which are refused.
pub const MAX_MODEL_LEN: u64 = 1 << 30;

/// Largest total size of the stage models written by one split (4 GiB): an initializer used by
/// several stages is copied into each of them, so the total can exceed the model's size.
pub const MAX_TOTAL_STAGE_LEN: u64 = 4 << 30;

/// Metadata key naming a stage's position, `"i/n"` (§13.1).
pub const META_STAGE: &str = "quorate.stage";
/// Metadata key holding the hex SHA-256 of the model a stage was cut from (§13.1).
pub const META_SOURCE: &str = "quorate.source.sha256";

/// The computed tensors of a model that `--at` may name, with their types where declared or
/// inferred (§13.1); `None` for a tensor whose type is neither.
pub fn cut_points(bytes: &[u8]) -> Result<Vec<(String, Option<TensorInfo>)>, SplitError> {
    let model = decode_model(bytes)?;
    let g = model.graph.as_ref().ok_or(SplitError::NoGraph)?;
    let index = Index::new(g, default_opset(&model.opset_import))?;
    Ok(index
        .cuttable()
        .into_iter()
        .map(|name| (name.to_string(), index.info(name).ok().map(|(i, _)| i)))
        .collect())
}

/// Splits `bytes` (an ONNX model) at `cuts` (boundaries, each one or more tensor names) into
/// `cuts.len() + 1` stage models (§13.1).
pub fn split_model(
    bytes: &[u8],
    cuts: &[Vec<String>],
    opts: &SplitOptions,
) -> Result<Split, SplitError> {
    if cuts.is_empty() {
        return Err(SplitError::NoCuts);
    }
    let mut seen = HashSet::new();
    for t in cuts.iter().flatten() {
        if t.is_empty() {
            return Err(SplitError::EmptyName);
        }
        if !seen.insert(t.as_str()) {
            return Err(SplitError::Duplicate(t.clone()));
        }
    }
    let model = decode_model(bytes)?;
    let reencoded = model.encoded_len();
    let g = model.graph.as_ref().ok_or(SplitError::NoGraph)?;
    let index = Index::new(g, default_opset(&model.opset_import))?;
    for t in cuts.iter().flatten() {
        index.check_cut_name(t)?;
    }
    let stage_of = index.assign(cuts)?;
    let n_stages = cuts.len() + 1;
    let last = n_stages - 1;

    // What each stage reads from outside itself, and which computed tensors each stage must
    // hand on (stage, tensor) → readers.
    let mut reads: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); n_stages];
    let mut consts_of: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); n_stages];
    for (i, s) in stage_of.iter().enumerate() {
        if *s == usize::MAX {
            continue;
        }
        for name in &index.needs[i] {
            let name = name.as_str();
            if index.consts.contains_key(name) {
                consts_of[*s].insert(name);
            } else if index.inputs.contains(name) {
                reads[*s].insert(name);
            } else if let Some(&p) = index.producer.get(name)
                && stage_of[p] != *s
            {
                reads[*s].insert(name);
            }
        }
    }
    // A graph output that is a constant is produced by the last stage.
    for o in &g.output {
        if index.consts.contains_key(o.name()) {
            consts_of[last].insert(o.name());
        } else if index.inputs.contains(o.name()) {
            return Err(SplitError::PassThroughOutput(o.name().to_string()));
        }
    }
    // Constant nodes can read other constants (never computed tensors): close over them.
    for set in &mut consts_of {
        let mut work: Vec<&str> = set.iter().copied().collect();
        while let Some(c) = work.pop() {
            if let Some(Const::Node(i)) = index.consts.get(c) {
                for name in &index.needs[*i] {
                    if index.consts.contains_key(name.as_str()) && set.insert(name.as_str()) {
                        work.push(name.as_str());
                    }
                }
            }
        }
    }

    let mut handed: HashMap<&str, Vec<usize>> = HashMap::new();
    for (s, names) in reads.iter().enumerate() {
        for name in names {
            if let Some(&p) = index.producer.get(name) {
                let from = stage_of[p];
                if from > s {
                    return Err(SplitError::Malformed(format!(
                        "tensor {name:?} is read before it is computed"
                    )));
                }
                handed.entry(name).or_default().push(s);
            }
        }
    }
    let cut_stage: HashMap<&str, usize> = cuts
        .iter()
        .enumerate()
        .flat_map(|(k, b)| b.iter().map(move |t| (t.as_str(), k)))
        .collect();
    let mut carried: Vec<Carried> = Vec::new();
    let mut crossing: Vec<String> = Vec::new();
    let mut handed_sorted: Vec<(&str, &Vec<usize>)> = handed.iter().map(|(k, v)| (*k, v)).collect();
    handed_sorted.sort_by_key(|(name, _)| index.producer.get(name).copied());
    for (name, to) in handed_sorted {
        let from = index.producer.get(name).map(|&p| stage_of[p]).unwrap_or(0);
        let is_cut = cut_stage.get(name) == Some(&from);
        if !is_cut && !index.outputs.contains(name) {
            carried.push(Carried {
                name: name.to_string(),
                from: from + 1,
                to: to.iter().map(|s| s + 1).collect(),
            });
        }
        // Strict separation: each stage reads computed tensors only from the cut just before it.
        if !is_cut || to.iter().any(|&s| s != from + 1) {
            crossing.push(format!(
                "{name:?} (computed in stage {}, read by stage {})",
                from + 1,
                to.iter()
                    .map(|s| (s + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if opts.no_carry && !crossing.is_empty() {
        return Err(SplitError::NotSeparating(crossing.join("; ")));
    }

    // Header fields shared by every stage (§13.1: IR version, opsets and metadata are kept).
    let source_digest = quorate_crypto::tensor_digest::sha256(bytes);
    let mut total: u64 = 0;
    let mut stages = Vec::with_capacity(n_stages);
    for s in 0..n_stages {
        // Nodes: copied Constant nodes and the stage's own, in the original order.
        let node_idx: Vec<usize> = (0..g.node.len())
            .filter(|&i| {
                stage_of[i] == s
                    || (stage_of[i] == usize::MAX
                        && g.node[i]
                            .output
                            .iter()
                            .any(|o| consts_of[s].contains(o.as_str())))
            })
            .collect();
        let nodes: Vec<&NodeProto> = node_idx.iter().map(|&i| &g.node[i]).collect();
        let produced: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();

        // Inputs: graph inputs in the model's order, then tensors of earlier stages in the
        // order the graph computes them.
        let mut inputs: Vec<(TensorInfo, Source)> = Vec::new();
        let mut input_vis: Vec<ValueInfoProto> = Vec::new();
        for v in &g.input {
            if reads[s].contains(v.name()) {
                inputs.push((describe(v), Source::GraphInput));
                input_vis.push(v.clone());
            } else if consts_of[s].contains(v.name()) {
                // An input with a default value stays an (optional) input of the stage.
                input_vis.push(v.clone());
            }
        }
        let mut from_stages: Vec<(&str, usize)> = reads[s]
            .iter()
            .filter_map(|name| index.producer.get(name).map(|&p| (*name, p)))
            .collect();
        from_stages.sort_by_key(|&(_, p)| p);
        for (name, p) in from_stages {
            let (info, vi) = index.info(name)?;
            inputs.push((info, Source::Stage(stage_of[p] + 1)));
            input_vis.push(vi);
        }

        // Outputs: this stage's cut tensors in --at order, graph outputs in the model's order,
        // then carried tensors in the order the graph computes them.
        let mut outputs: Vec<(TensorInfo, Role)> = Vec::new();
        let mut output_vis: Vec<ValueInfoProto> = Vec::new();
        if let Some(b) = cuts.get(s) {
            for t in b {
                let (info, vi) = index.info(t)?;
                outputs.push((info, Role::Cut));
                output_vis.push(vi);
            }
        }
        for v in &g.output {
            let here = match index.producer.get(v.name()) {
                Some(&p) => stage_of[p] == s,
                None => s == last,
            };
            if here {
                outputs.push((describe(v), Role::GraphOutput));
                output_vis.push(v.clone());
            }
        }
        for c in carried.iter().filter(|c| c.from == s + 1) {
            let (info, vi) = index.info(&c.name)?;
            outputs.push((info, Role::Carried));
            output_vis.push(vi);
        }

        let declared: HashSet<String> = input_vis
            .iter()
            .chain(&output_vis)
            .map(|v| v.name().to_string())
            .collect();
        let value_info: Vec<ValueInfoProto> = g
            .value_info
            .iter()
            .filter(|v| produced.contains(v.name()) && !declared.contains(v.name()))
            .cloned()
            .collect();
        let mut initializer = Vec::new();
        let mut sparse_initializer = Vec::new();
        let mut const_names: Vec<(usize, &str)> = consts_of[s]
            .iter()
            .filter_map(|c| match index.consts.get(c) {
                Some(Const::Initializer(i)) => Some((*i, *c)),
                _ => None,
            })
            .collect();
        const_names.sort_unstable();
        for (i, _) in const_names {
            initializer.push(g.initializer[i].clone());
        }
        let mut sparse: Vec<usize> = consts_of[s]
            .iter()
            .filter_map(|c| match index.consts.get(c) {
                Some(Const::Sparse(i)) => Some(*i),
                _ => None,
            })
            .collect();
        sparse.sort_unstable();
        for i in sparse {
            sparse_initializer.push(g.sparse_initializer[i].clone());
        }
        let known: HashSet<&str> = produced
            .iter()
            .copied()
            .chain(declared.iter().map(String::as_str))
            .chain(consts_of[s].iter().copied())
            .collect();
        let graph = GraphProto {
            node: nodes.iter().map(|n| (*n).clone()).collect(),
            name: Some(format!("{}_stage{}", g.name(), s + 1)),
            initializer,
            sparse_initializer,
            doc_string: g.doc_string.clone(),
            input: input_vis,
            output: output_vis,
            value_info,
            quantization_annotation: g
                .quantization_annotation
                .iter()
                .filter(|a| known.contains(a.tensor_name()))
                .cloned()
                .collect(),
            metadata_props: g.metadata_props.clone(),
        };
        let mut metadata_props = model.metadata_props.clone();
        metadata_props.retain(|p| p.key() != META_STAGE && p.key() != META_SOURCE);
        metadata_props.push(StringStringEntryProto {
            key: Some(META_STAGE.to_string()),
            value: Some(format!("{}/{}", s + 1, n_stages)),
        });
        metadata_props.push(StringStringEntryProto {
            key: Some(META_SOURCE.to_string()),
            value: Some(hex::encode(source_digest)),
        });
        let initializers = graph.initializer.len() + graph.sparse_initializer.len();
        let stage_model = ModelProto {
            ir_version: model.ir_version,
            opset_import: model.opset_import.clone(),
            producer_name: model.producer_name.clone(),
            producer_version: model.producer_version.clone(),
            domain: model.domain.clone(),
            model_version: model.model_version,
            doc_string: model.doc_string.clone(),
            functions: used_functions(&model, &nodes)
                .into_iter()
                .cloned()
                .collect(),
            graph: Some(graph),
            metadata_props,
            training_info: Vec::new(),
            configuration: Vec::new(),
        };
        total = total.saturating_add(stage_model.encoded_len() as u64);
        if total > MAX_TOTAL_STAGE_LEN {
            return Err(SplitError::OutputTooLarge);
        }
        let bytes = stage_model.encode_to_vec();
        stages.push(Stage {
            index: s + 1,
            digest: quorate_crypto::tensor_digest::sha256(&bytes),
            bytes,
            nodes: nodes.len(),
            initializers,
            inputs,
            outputs,
        });
    }
    Ok(Split {
        source_digest,
        stages,
        carried,
        reencoded_len: (reencoded != bytes.len()).then_some(reencoded),
    })
}
