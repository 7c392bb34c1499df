//! Partitioning an ONNX graph into stage models (§13.1): the graph analysis, the assignment of
//! nodes to stages, and the construction of each stage's `ModelProto`. Pure functions of the
//! model bytes and the cuts; no I/O.

use std::collections::{BTreeSet, HashMap, HashSet};

use prost::Message;

use crate::infer::{Inference, default_opset, infer_graph};

use crate::onnx::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto,
    TensorProto, TypeProto, ValueInfoProto, tensor_proto::DataLocation,
    tensor_shape_proto::dimension, type_proto,
};

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

/// Why a model could not be split. Every message names the tensor, node or cut at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// The file is larger than [`MAX_MODEL_LEN`].
    #[error(
        "the model is {len} bytes; quorate split reads models of at most {MAX_MODEL_LEN} bytes"
    )]
    TooLarge {
        /// Its length.
        len: u64,
    },
    /// The bytes are not an ONNX `ModelProto`.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// The model has no graph, or one without nodes.
    #[error("the model has no graph to split")]
    NoGraph,
    /// The graph breaks an ONNX rule (§13.1: inputs are checked before anything is cut).
    #[error("malformed ONNX graph: {0}")]
    Malformed(String),
    /// A tensor's data lives in an external file, which the stage models could not find.
    #[error(
        "tensor {0:?} keeps its data in an external file; quorate split needs a self-contained \
         model (save it with the weights inside, e.g. onnx.save(model, path, save_as_external_data=False))"
    )]
    ExternalData(String),
    /// `--at` named no tensor.
    #[error("no cut given: name at least one tensor, e.g. --at h1")]
    NoCuts,
    /// An empty name in the cut list.
    #[error("empty tensor name in the cut list (a doubled or trailing ',' or '+')")]
    EmptyName,
    /// The same tensor named twice.
    #[error("tensor {0:?} is named twice in the cut list")]
    Duplicate(String),
    /// The name is not a tensor computed by a node of the main graph.
    #[error("{name:?} is not a tensor of the graph{hint}")]
    UnknownTensor {
        /// The name given.
        name: String,
        /// What could be meant, with a leading separator, or empty.
        hint: String,
    },
    /// A cut at a graph input: the stage before it would be empty.
    #[error("{0:?} is a graph input; cut at a tensor computed inside the graph")]
    CutAtGraphInput(String),
    /// A cut at a graph output: the stage after it would be empty.
    #[error("{0:?} is a graph output; the last stage ends there anyway, cut at an earlier tensor")]
    CutAtGraphOutput(String),
    /// A cut at an initializer or the output of a `Constant` node.
    #[error(
        "{0:?} is a constant (an initializer or a Constant node's output); constants are copied \
         into every stage that uses them, cut at a computed tensor"
    )]
    CutAtConstant(String),
    /// The cuts are not in an order the graph computes them.
    #[error(
        "cut {later:?} is needed before cut {earlier:?} (or computed by the same node); {hint}"
    )]
    OutOfOrder {
        /// The cut given later in the list.
        later: String,
        /// The cut given earlier whose stage already computes `later`.
        earlier: String,
        /// An order that works, or how to regroup.
        hint: String,
    },
    /// A tensor crossing a cut has no declared type and none could be inferred, so the stage
    /// interface cannot be written.
    #[error(
        "the type of tensor {0:?} is unknown (it is not in the graph's value_info); run ONNX shape \
         inference on the model first (onnx.shape_inference.infer_shapes) or cut elsewhere"
    )]
    UnknownType(String),
    /// A tensor crossing a cut has no declared type, and type inference (§13.1) stopped at a
    /// node whose output types it cannot derive (an operator it does not know, or one of
    /// another domain).
    #[error(
        "the type of tensor {name:?} is unknown: it is not in the graph's value_info and type \
         inference stopped at node {node}, whose output types quorate cannot derive; declare the \
         type (run ONNX shape inference on the model first: onnx.shape_inference.infer_shapes) \
         or cut elsewhere"
    )]
    TypeNotInferred {
        /// The tensor.
        name: String,
        /// The node where inference stopped, with its operator.
        node: String,
    },
    /// With `--no-carry`: a tensor crosses a cut without being part of it.
    #[error(
        "the cuts do not separate the graph: {0}; add those tensors to the cut with '+', \
         or drop --no-carry to pass them on automatically"
    )]
    NotSeparating(String),
    /// Every node is computed before the last cut.
    #[error("no node is left after the last cut {0:?}; remove it")]
    EmptyLastStage(String),
    /// A graph output the split does not handle.
    #[error(
        "graph output {0:?} is a graph input passed straight through; quorate split cannot place it"
    )]
    PassThroughOutput(String),
    /// The stage models together would exceed [`MAX_TOTAL_STAGE_LEN`].
    #[error("the stage models would total more than {MAX_TOTAL_STAGE_LEN} bytes")]
    OutputTooLarge,
}

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (`batch`).
    Symbolic(String),
    /// A dimension with neither.
    Unknown,
}

/// Where a stage input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An input of the whole model, supplied by the client.
    GraphInput,
    /// An output of an earlier stage (1-based).
    Stage(usize),
}

/// Why a tensor is a stage output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It was named in `--at`.
    Cut,
    /// It is an output of the whole model.
    GraphOutput,
    /// A later stage needs it although no cut names it (§13.1, carried tensors).
    Carried,
}

/// A stage input or output as declared in the stage model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type: `float32`, `int64`, …, or e.g. `sequence(float32)` for non-tensor values.
    pub dtype: String,
    /// Declared shape; `None` when the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl std::fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.dtype)?;
        match &self.shape {
            None => write!(f, "[unknown shape]"),
            Some(dims) => {
                let d: Vec<String> = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => n.to_string(),
                        Dim::Symbolic(s) => s.clone(),
                        Dim::Unknown => "?".to_string(),
                    })
                    .collect();
                write!(f, "[{}]", d.join(", "))
            }
        }
    }
}

/// One stage model.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Position, from 1.
    pub index: usize,
    /// The encoded stage model.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: the stage's model digest (§3.4).
    pub digest: [u8; 32],
    /// Number of nodes it computes (including copied `Constant` nodes).
    pub nodes: usize,
    /// Number of initializers copied into it.
    pub initializers: usize,
    /// Its inputs, in declaration order, with where each comes from.
    pub inputs: Vec<(TensorInfo, Source)>,
    /// Its outputs, in declaration order, with why each is one.
    pub outputs: Vec<(TensorInfo, Role)>,
}

/// A tensor passed on although no cut names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// Tensor name.
    pub name: String,
    /// The stage computing it.
    pub from: usize,
    /// The stages reading it.
    pub to: Vec<usize>,
}

/// The result of a split.
#[derive(Clone, Debug)]
pub struct Split {
    /// SHA-256 of the source model file.
    pub source_digest: [u8; 32],
    /// The stages, in pipeline order.
    pub stages: Vec<Stage>,
    /// Tensors carried across cuts that do not name them.
    pub carried: Vec<Carried>,
    /// `Some(n)` when the decoded model re-encodes to `n` bytes rather than the file's length:
    /// the file uses fields unknown to the bundled ONNX schema (dropped from the stages) or a
    /// non-canonical encoding.
    pub reencoded_len: Option<usize>,
}

/// Options of [`split_model`].
#[derive(Clone, Debug, Default)]
pub struct SplitOptions {
    /// Refuse cuts that do not separate the graph instead of carrying tensors across them.
    pub no_carry: bool,
}

/// Parses `--at`: boundaries separated by `,`, tensors of one boundary joined by `+`.
pub fn parse_cuts(spec: &str) -> Result<Vec<Vec<String>>, SplitError> {
    if spec.trim().is_empty() {
        return Err(SplitError::NoCuts);
    }
    spec.split(',')
        .map(|b| {
            b.split('+')
                .map(|t| {
                    let t = t.trim();
                    if t.is_empty() {
                        Err(SplitError::EmptyName)
                    } else {
                        Ok(t.to_string())
                    }
                })
                .collect()
        })
        .collect()
}

fn display_cuts(cuts: &[Vec<String>]) -> String {
    cuts.iter()
        .map(|b| b.join("+"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes a model, bounding its size first and refusing external data.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, SplitError> {
    if bytes.len() as u64 > MAX_MODEL_LEN {
        return Err(SplitError::TooLarge {
            len: bytes.len() as u64,
        });
    }
    let model = ModelProto::decode(bytes).map_err(|e| SplitError::Decode(e.to_string()))?;
    match &model.graph {
        Some(g) if !g.node.is_empty() => {
            check_no_external(g)?;
            Ok(model)
        }
        _ => Err(SplitError::NoGraph),
    }
}

fn check_tensor(t: &TensorProto) -> Result<(), SplitError> {
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(SplitError::ExternalData(t.name.clone().unwrap_or_default()));
    }
    Ok(())
}

fn check_no_external(g: &GraphProto) -> Result<(), SplitError> {
    for t in &g.initializer {
        check_tensor(t)?;
    }
    for s in &g.sparse_initializer {
        for t in s.values.iter().chain(s.indices.iter()) {
            check_tensor(t)?;
        }
    }
    for n in &g.node {
        for a in &n.attribute {
            for t in a.t.iter().chain(a.tensors.iter()) {
                check_tensor(t)?;
            }
            for sub in a.g.iter().chain(a.graphs.iter()) {
                check_no_external(sub)?;
            }
        }
    }
    Ok(())
}

fn subgraphs(a: &AttributeProto) -> impl Iterator<Item = &GraphProto> {
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
enum Const {
    Initializer(usize),
    Sparse(usize),
    Node(usize),
}

/// The main graph, indexed.
struct Index<'a> {
    g: &'a GraphProto,
    /// Graph inputs that no initializer backs.
    inputs: HashSet<&'a str>,
    consts: HashMap<&'a str, Const>,
    /// Producer of every computed tensor (not of `Constant` outputs).
    producer: HashMap<&'a str, usize>,
    /// Per node: the tensors it reads, explicit and from subgraphs, without duplicates.
    needs: Vec<Vec<String>>,
    /// Declared types: value_info, graph inputs and outputs.
    types: HashMap<&'a str, &'a ValueInfoProto>,
    /// Inferred types and shapes (§13.1), used where nothing usable is declared.
    inferred: Inference,
    outputs: HashSet<&'a str>,
    /// Per node: whether it is a `Constant` node (copied into the stages that read it).
    constant: Vec<bool>,
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
    fn new(g: &'a GraphProto, opset: Option<i64>) -> Result<Self, SplitError> {
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
    fn cuttable(&self) -> Vec<&'a str> {
        self.g
            .node
            .iter()
            .flat_map(|n| n.output.iter())
            .map(String::as_str)
            .filter(|o| self.producer.contains_key(o) && !self.outputs.contains(o))
            .collect()
    }

    fn check_cut_name(&self, name: &str) -> Result<usize, SplitError> {
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
    fn assign(&self, cuts: &[Vec<String>]) -> Result<Vec<usize>, SplitError> {
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
    fn closures<'c>(
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

    fn out_of_order(&self, cuts: &[Vec<String>], later: &str, earlier: &[String]) -> SplitError {
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
    fn info(&self, name: &str) -> Result<(TensorInfo, ValueInfoProto), SplitError> {
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

fn type_known(t: Option<&TypeProto>) -> bool {
    match t.and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type.is_some_and(|e| e != 0),
        Some(type_proto::Value::SparseTensorType(t)) => t.elem_type.is_some_and(|e| e != 0),
        Some(type_proto::Value::SequenceType(s)) => type_known(s.elem_type.as_deref()),
        Some(type_proto::Value::OptionalType(o)) => type_known(o.elem_type.as_deref()),
        Some(type_proto::Value::MapType(m)) => {
            m.key_type.is_some_and(|e| e != 0) && type_known(m.value_type.as_deref())
        }
        Some(type_proto::Value::OpaqueType(_)) => true,
        None => false,
    }
}

/// ONNX `TensorProto.DataType` names, numpy-style where quorate has one (§3.1).
pub fn elem_type_name(code: i32) -> String {
    let name = match code {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        24 => "float8e8m0",
        25 => "uint2",
        26 => "int2",
        other => return format!("onnx-type-{other}"),
    };
    name.to_string()
}

fn type_name(t: Option<&TypeProto>) -> String {
    match t.and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => elem_type_name(t.elem_type()),
        Some(type_proto::Value::SparseTensorType(t)) => {
            format!("sparse({})", elem_type_name(t.elem_type()))
        }
        Some(type_proto::Value::SequenceType(s)) => {
            format!("sequence({})", type_name(s.elem_type.as_deref()))
        }
        Some(type_proto::Value::OptionalType(o)) => {
            format!("optional({})", type_name(o.elem_type.as_deref()))
        }
        Some(type_proto::Value::MapType(m)) => format!(
            "map({}, {})",
            elem_type_name(m.key_type()),
            type_name(m.value_type.as_deref())
        ),
        Some(type_proto::Value::OpaqueType(o)) => format!("opaque({}.{})", o.domain(), o.name()),
        None => "unknown".to_string(),
    }
}

fn describe(vi: &ValueInfoProto) -> TensorInfo {
    let shape = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(type_proto::Tensor { shape, .. }))
        | Some(type_proto::Value::SparseTensorType(type_proto::SparseTensor { shape, .. })) => {
            shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                        Some(dimension::Value::DimParam(p)) if !p.is_empty() => {
                            Dim::Symbolic(p.clone())
                        }
                        _ => Dim::Unknown,
                    })
                    .collect()
            })
        }
        _ => None,
    };
    TensorInfo {
        name: vi.name().to_string(),
        dtype: type_name(vi.r#type.as_ref()),
        shape,
    }
}

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

fn function_key(domain: &str, name: &str, overload: &str) -> (String, String, String) {
    (domain.to_string(), name.to_string(), overload.to_string())
}

/// Local functions (`ModelProto.functions`) the given nodes call, directly or through other
/// functions, in the model's order.
fn used_functions<'m>(model: &'m ModelProto, nodes: &[&NodeProto]) -> Vec<&'m FunctionProto> {
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
