//! The main graph indexed for cutting (§13.1): which tensors are inputs, constants and
//! computed, who produces each, what each node reads (subgraph captures included), and the
//! assignment of nodes to stages.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::infer::{Inference, infer_graph};
use crate::onnx::{AttributeProto, GraphProto, NodeProto, ValueInfoProto};

use super::stage::display_cuts;
use super::type_names::{describe, type_known};
use super::{SplitError, TensorInfo};

pub(super) fn subgraphs(a: &AttributeProto) -> impl Iterator<Item = &GraphProto> {
    a.g.iter().chain(a.graphs.iter())
}

/// Names a subgraph reads from enclosing scopes (ONNX IR "outer scope" values): they are
/// implicit inputs of the node holding the subgraph.
fn free_names(g: &GraphProto, out: &mut BTreeSet<String>) {
    let mut local: HashSet<&str> = g
        .input
        .iter()
        .filter_map(|v| v.name.as_deref())
        .chain(g.initializer.iter().filter_map(|t| t.name.as_deref()))
        .chain(
            g.sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().and_then(|v| v.name.as_deref())),
        )
        .collect();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if !local.contains(i.as_str()) {
                out.insert(i.clone());
            }
        }
        let mut inner = BTreeSet::new();
        for sub in n.attribute.iter().flat_map(subgraphs) {
            free_names(sub, &mut inner);
        }
        for i in inner {
            if !local.contains(i.as_str()) {
                out.insert(i);
            }
        }
        local.extend(n.output.iter().map(String::as_str));
    }
}

fn node_label(i: usize, n: &NodeProto) -> String {
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{name:?} ({})", n.op_type()),
        _ => format!("#{i} ({})", n.op_type()),
    }
}

/// Where a constant tensor comes from.
#[derive(Clone, Copy)]
pub(super) enum Const {
    /// The i-th initializer.
    Initializer(usize),
    /// The i-th sparse initializer.
    Sparse(usize),
    /// The output of the i-th node, a `Constant`.
    Node(usize),
}

/// The main graph, indexed.
pub(super) struct Index<'a> {
    pub(super) g: &'a GraphProto,
    /// Graph inputs that no initializer backs.
    pub(super) inputs: HashSet<&'a str>,
    pub(super) consts: HashMap<&'a str, Const>,
    /// Producer of every computed tensor (not of `Constant` outputs).
    pub(super) producer: HashMap<&'a str, usize>,
    /// Per node: the tensors it reads, explicit and from subgraphs, without duplicates.
    pub(super) needs: Vec<Vec<String>>,
    /// Declared types: value_info, graph inputs and outputs.
    pub(super) types: HashMap<&'a str, &'a ValueInfoProto>,
    /// Inferred types and shapes (§13.1), used where nothing usable is declared.
    pub(super) inferred: Inference,
    pub(super) outputs: HashSet<&'a str>,
    /// Per node: whether it is a `Constant` node (copied into the stages that read it).
    pub(super) constant: Vec<bool>,
}

fn define<'a>(defined: &mut HashSet<&'a str>, name: &'a str, what: &str) -> Result<(), SplitError> {
    if name.is_empty() {
        return Err(SplitError::Malformed(format!("{what} with an empty name")));
    }
    if !defined.insert(name) {
        return Err(SplitError::Malformed(format!(
            "tensor {name:?} is defined twice (ONNX graphs are in single static assignment form)"
        )));
    }
    Ok(())
}

fn is_constant_node(n: &NodeProto) -> bool {
    n.op_type() == "Constant"
        && matches!(n.domain(), "" | "ai.onnx")
        && n.input.iter().all(String::is_empty)
        && !n.attribute.iter().any(|a| subgraphs(a).next().is_some())
}

impl<'a> Index<'a> {
    pub(super) fn new(g: &'a GraphProto, opset: Option<i64>) -> Result<Self, SplitError> {
        let mut defined: HashSet<&str> = HashSet::new();
        let mut consts = HashMap::new();
        for (i, t) in g.initializer.iter().enumerate() {
            define(&mut defined, t.name(), "an initializer")?;
            consts.insert(t.name(), Const::Initializer(i));
        }
        for (i, s) in g.sparse_initializer.iter().enumerate() {
            let name = s.values.as_ref().map(|v| v.name()).unwrap_or_default();
            define(&mut defined, name, "a sparse initializer")?;
            consts.insert(name, Const::Sparse(i));
        }
        let mut inputs = HashSet::new();
        for v in &g.input {
            // An input that is also an initializer is an input with a default value (IR < 4
            // lists every initializer as an input): it is treated as a constant.
            if !consts.contains_key(v.name()) {
                define(&mut defined, v.name(), "a graph input")?;
                inputs.insert(v.name());
            }
        }
        let mut producer = HashMap::new();
        let mut constant_nodes = Vec::with_capacity(g.node.len());
        let mut needs = Vec::with_capacity(g.node.len());
        for (i, n) in g.node.iter().enumerate() {
            let mut reads: Vec<String> = Vec::new();
            let mut seen = HashSet::new();
            let mut outer = BTreeSet::new();
            for sub in n.attribute.iter().flat_map(subgraphs) {
                free_names(sub, &mut outer);
            }
            for name in n.input.iter().filter(|i| !i.is_empty()).chain(outer.iter()) {
                if !defined.contains(name.as_str()) {
                    return Err(SplitError::Malformed(format!(
                        "node {} reads {name:?}, which no input, initializer or earlier node \
                         defines (ONNX requires nodes in topological order)",
                        node_label(i, n)
                    )));
                }
                if seen.insert(name.as_str()) {
                    reads.push(name.clone());
                }
            }
            needs.push(reads);
            let constant = is_constant_node(n);
            constant_nodes.push(constant);
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                define(&mut defined, o, "a node output")?;
                if constant {
                    consts.insert(o.as_str(), Const::Node(i));
                } else {
                    producer.insert(o.as_str(), i);
                }
            }
        }
        let mut types = HashMap::new();
        for v in g.value_info.iter().chain(&g.input).chain(&g.output) {
            if let Some(name) = v.name.as_deref() {
                types.entry(name).or_insert(v);
            }
        }
        let mut outputs = HashSet::new();
        for v in &g.output {
            if !defined.contains(v.name()) {
                return Err(SplitError::Malformed(format!(
                    "graph output {:?} is not computed by any node",
                    v.name()
                )));
            }
            outputs.insert(v.name());
        }
        // Only after the checks above: inference relies on the topological order.
        let inferred = infer_graph(g, opset);
        Ok(Self {
            g,
            inputs,
            consts,
            producer,
            needs,
            types,
            inferred,
            outputs,
            constant: constant_nodes,
        })
    }

    /// Computed tensors a cut may name, in the order the graph computes them.
    pub(super) fn cuttable(&self) -> Vec<&'a str> {
        self.g
            .node
            .iter()
            .flat_map(|n| n.output.iter())
            .map(String::as_str)
            .filter(|o| self.producer.contains_key(o) && !self.outputs.contains(o))
            .collect()
    }

    pub(super) fn check_cut_name(&self, name: &str) -> Result<usize, SplitError> {
        if self.inputs.contains(name) {
            return Err(SplitError::CutAtGraphInput(name.to_string()));
        }
        if self.outputs.contains(name) {
            return Err(SplitError::CutAtGraphOutput(name.to_string()));
        }
        if self.consts.contains_key(name) {
            return Err(SplitError::CutAtConstant(name.to_string()));
        }
        if let Some(&p) = self.producer.get(name) {
            return Ok(p);
        }
        let hint = if let Some(n) = self.g.node.iter().find(|n| n.name() == name) {
            format!(
                " (it is the name of a node; its outputs are {})",
                n.output.join(", ")
            )
        } else {
            let names = self.cuttable();
            let shown: Vec<&str> = names.iter().take(16).copied().collect();
            let more = if names.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            if shown.is_empty() {
                String::new()
            } else {
                format!("; tensors you can cut at: {}{more}", shown.join(", "))
            }
        };
        Err(SplitError::UnknownTensor {
            name: name.to_string(),
            hint,
        })
    }

    /// Assigns every computed node to a stage (0-based): stage `k` holds the nodes needed for
    /// boundary `k` that no earlier stage computes; the rest form the last stage.
    pub(super) fn assign(&self, cuts: &[Vec<String>]) -> Result<Vec<usize>, SplitError> {
        for t in cuts.iter().flatten() {
            self.check_cut_name(t)?;
        }
        let stage = self
            .closures(cuts)
            .map_err(|(later, k)| self.out_of_order(cuts, later, &cuts[k]))?;
        let last = cuts.len();
        let mut any_last = false;
        let mut out = Vec::with_capacity(stage.len());
        for (i, s) in stage.into_iter().enumerate() {
            match s {
                Some(s) => out.push(s),
                // Constant nodes are copied into the stages that read them; no slot.
                None if self.constant[i] => out.push(usize::MAX),
                None => {
                    any_last = true;
                    out.push(last);
                }
            }
        }
        if !any_last {
            return Err(SplitError::EmptyLastStage(
                cuts.last().map(|b| b.join("+")).unwrap_or_default(),
            ));
        }
        Ok(out)
    }

    /// The ancestor closure of each boundary in turn, minus what earlier boundaries took.
    /// Fails with (a cut, the boundary already computing it) when a boundary computes a cut
    /// listed after it. Cut names must have been checked.
    pub(super) fn closures<'c>(
        &self,
        cuts: &'c [Vec<String>],
    ) -> Result<Vec<Option<usize>>, (&'c str, usize)> {
        let mut stage: Vec<Option<usize>> = vec![None; self.g.node.len()];
        let producer = |t: &str| self.producer.get(t).copied().unwrap_or(usize::MAX);
        for (k, boundary) in cuts.iter().enumerate() {
            let mut stack: Vec<usize> = Vec::new();
            for t in boundary {
                let p = producer(t);
                match stage.get(p) {
                    Some(None) => stack.push(p),
                    Some(Some(j)) => return Err((t.as_str(), *j)),
                    None => return Err((t.as_str(), k)),
                }
            }
            while let Some(i) = stack.pop() {
                if stage[i].is_some() {
                    continue;
                }
                stage[i] = Some(k);
                for name in &self.needs[i] {
                    if let Some(&p) = self.producer.get(name.as_str())
                        && stage[p].is_none()
                    {
                        stack.push(p);
                    }
                }
            }
            for t in cuts[k + 1..].iter().flatten() {
                if stage.get(producer(t)).copied().flatten() == Some(k) {
                    return Err((t.as_str(), k));
                }
            }
        }
        Ok(stage)
    }

    pub(super) fn out_of_order(
        &self,
        cuts: &[Vec<String>],
        later: &str,
        earlier: &[String],
    ) -> SplitError {
        // Boundaries sorted by the position of their last producer form a topological order
        // whenever one exists.
        let pos = |b: &Vec<String>| {
            b.iter()
                .filter_map(|t| self.producer.get(t.as_str()).copied())
                .max()
                .unwrap_or(0)
        };
        let mut sorted = cuts.to_vec();
        sorted.sort_by_key(pos);
        let hint = if sorted != cuts && self.closures(&sorted).is_ok() {
            format!("this order works: --at {}", display_cuts(&sorted))
        } else {
            "tensors computed by the same node, or needing each other, must be one boundary: \
             join them with '+'"
                .to_string()
        };
        SplitError::OutOfOrder {
            later: later.to_string(),
            earlier: earlier.join("+"),
            hint,
        }
    }

    /// The type of a stage input or output (§13.1, *Types*): the declared one when its type is
    /// known, else the inferred one; refused when neither is.
    pub(super) fn info(&self, name: &str) -> Result<(TensorInfo, ValueInfoProto), SplitError> {
        let declared = self.types.get(name).copied();
        if let Some(vi) = declared.filter(|v| type_known(v.r#type.as_ref())) {
            return Ok((describe(vi), vi.clone()));
        }
        if let Some(mut vi) = self.inferred.value_info(name) {
            if let Some(d) = declared {
                vi.doc_string = d.doc_string.clone();
                vi.metadata_props = d.metadata_props.clone();
            }
            return Ok((describe(&vi), vi));
        }
        Err(match self.inferred.stopped_at(name) {
            Some(i) if i < self.g.node.len() => SplitError::TypeNotInferred {
                name: name.to_string(),
                node: node_label(i, &self.g.node[i]),
            },
            _ => SplitError::UnknownType(name.to_string()),
        })
    }
}
