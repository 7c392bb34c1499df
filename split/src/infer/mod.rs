//! Type and shape inference for tensors the model does not declare (SPEC §13.1, *Types*).
//!
//! Models exported without intermediate `value_info` still need a type for every tensor that
//! crosses a cut, since each stage declares its inputs and outputs. This module walks the main
//! graph once, in its topological order, and derives for every node output an element type and,
//! where it can, a shape: fixed dimensions, symbolic dimensions carried through by name
//! (`dim_param`), and unknown dimensions where nothing can be said. Declared information (graph
//! inputs and outputs, `value_info`) always wins over what is inferred.
//!
//! The rules are conservative: a shape is only stated when it follows from the operator's
//! definition for every input the model accepts; otherwise the dimension, or the whole shape,
//! is left unknown. Work is bounded: ranks above [`MAX_RANK`] and constant values longer than
//! [`MAX_VALUE_LEN`] are not tracked, and all shape arithmetic is checked (an overflow gives an
//! unknown dimension, never a panic).

mod nn;
mod ops;
mod shape_ops;

use std::collections::HashMap;
use std::rc::Rc;

use crate::onnx::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, tensor_shape_proto, tensor_shape_proto::dimension, type_proto,
};

/// Largest rank whose dimensions inference tracks; a tensor of higher rank gets an unknown
/// shape (its type is still inferred). ONNX models in practice stay below 10.
pub const MAX_RANK: usize = 64;

/// Largest number of elements of an integer tensor whose values inference tracks (shape
/// tensors, axes, slice bounds).
pub const MAX_VALUE_LEN: usize = 64;

/// Largest number of inputs of a node whose shape inference combines them all (broadcasting,
/// `Concat`); wider nodes get their type only.
pub const MAX_NODE_INPUTS: usize = 1024;

/// Largest total number of dimensions and values inference keeps for the whole graph (about
/// 50 MB). Beyond it, later tensors get their type only: the memory used stays bounded however
/// many nodes of high rank a model holds.
pub const MAX_TRACKED_DIMS: usize = 2 << 20;

/// ONNX element type codes used by the rules (`TensorProto.DataType`).
pub(crate) mod elem {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
}

/// One inferred dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IDim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size, named as in the model (`batch`).
    Sym(Rc<str>),
    /// Nothing known.
    Unknown,
}

/// What inference knows about one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TInfo {
    /// ONNX element type code (never 0).
    pub elem: i32,
    /// The shape; `None` when even the rank is unknown.
    pub shape: Option<Vec<IDim>>,
    /// For small integer tensors of rank 0 or 1 (shapes, axes): their elements, each a known
    /// integer, a symbolic size or unknown.
    pub value: Option<Vec<IDim>>,
}

impl TInfo {
    /// A tensor of element type `elem` and the given shape; shapes of rank above [`MAX_RANK`]
    /// are dropped.
    pub fn new(elem: i32, shape: Option<Vec<IDim>>) -> Self {
        Self {
            elem,
            shape: shape.filter(|s| s.len() <= MAX_RANK),
            value: None,
        }
    }

    /// The same tensor with its value recorded, when small enough and of an integer type.
    pub fn with_value(mut self, value: Option<Vec<IDim>>) -> Self {
        let int = matches!(self.elem, elem::INT64 | elem::INT32);
        let rank_ok = self.shape.as_ref().is_none_or(|s| s.len() <= 1);
        self.value = value.filter(|v| int && rank_ok && v.len() <= MAX_VALUE_LEN);
        self
    }

    /// The rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }

    /// The tensor's values as plain integers, when all are known.
    pub fn ints(&self) -> Option<Vec<i64>> {
        self.value
            .as_ref()?
            .iter()
            .map(|d| match d {
                IDim::Fixed(v) => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// The ONNX type of this tensor, for a stage model's `ValueInfoProto` (§13.1): unknown
    /// dimensions are dimensions without value, symbolic ones keep their `dim_param`.
    pub fn type_proto(&self) -> TypeProto {
        let shape = self.shape.as_ref().map(|dims| TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| tensor_shape_proto::Dimension {
                    value: match d {
                        IDim::Fixed(v) => Some(dimension::Value::DimValue(*v)),
                        IDim::Sym(s) => Some(dimension::Value::DimParam(s.to_string())),
                        IDim::Unknown => None,
                    },
                    denotation: None,
                })
                .collect(),
        });
        TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(self.elem),
                shape,
            })),
        }
    }
}

/// What is known of one tensor after inference.
#[derive(Clone, Debug)]
enum Slot {
    Typed(TInfo),
    /// No type: inference stopped at this node (index into the graph's nodes).
    Stopped(usize),
}

/// The result of [`infer_graph`]: inferred information for every tensor of the main graph.
#[derive(Debug, Default)]
pub struct Inference {
    slots: HashMap<String, Slot>,
}

impl Inference {
    /// What is known about `name`, if its type could be inferred or was declared.
    pub fn tensor(&self, name: &str) -> Option<&TInfo> {
        match self.slots.get(name) {
            Some(Slot::Typed(t)) => Some(t),
            _ => None,
        }
    }

    /// For a tensor whose type could not be inferred: the index of the node where inference
    /// stopped (the node itself, or the first node upstream whose outputs have no type).
    pub fn stopped_at(&self, name: &str) -> Option<usize> {
        match self.slots.get(name) {
            Some(Slot::Stopped(i)) => Some(*i),
            _ => None,
        }
    }

    /// A `ValueInfoProto` for `name` built from inferred information, if its type is known.
    pub fn value_info(&self, name: &str) -> Option<ValueInfoProto> {
        self.tensor(name).map(|t| ValueInfoProto {
            name: Some(name.to_string()),
            r#type: Some(t.type_proto()),
            doc_string: None,
            metadata_props: Vec::new(),
        })
    }
}

/// The version of the default ONNX operator set a model imports, if any.
pub fn default_opset(imports: &[crate::onnx::OperatorSetIdProto]) -> Option<i64> {
    imports
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
}

/// Converts a declared tensor type into inferred form; `None` for non-tensor or undefined
/// types.
pub fn from_type(t: Option<&TypeProto>) -> Option<TInfo> {
    match t?.value.as_ref()? {
        type_proto::Value::TensorType(t) => {
            let e = t.elem_type.filter(|e| *e != 0)?;
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) if *v >= 0 => IDim::Fixed(*v),
                        Some(dimension::Value::DimParam(p)) if !p.is_empty() => {
                            IDim::Sym(Rc::from(p.as_str()))
                        }
                        _ => IDim::Unknown,
                    })
                    .collect()
            });
            Some(TInfo::new(e, shape))
        }
        _ => None,
    }
}

/// Reads the values of a small integer tensor (rank ≤ 1, at most [`MAX_VALUE_LEN`] elements).
fn tensor_ints(t: &TensorProto) -> Option<Vec<i64>> {
    if t.dims.len() > 1 {
        return None;
    }
    let n = match t.dims.first() {
        None => 1usize,
        Some(&d) => usize::try_from(d).ok()?,
    };
    if n > MAX_VALUE_LEN {
        return None;
    }
    let vals: Vec<i64> = match (t.data_type(), &t.raw_data) {
        (elem::INT64, Some(raw)) => raw
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).map(i64::from_le_bytes))
            .collect::<Result<_, _>>()
            .ok()?,
        (elem::INT32, Some(raw)) => raw
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map(|b| i64::from(i32::from_le_bytes(b))))
            .collect::<Result<_, _>>()
            .ok()?,
        (elem::INT64, None) => t.int64_data.clone(),
        (elem::INT32, None) => t.int32_data.iter().map(|v| i64::from(*v)).collect(),
        _ => return None,
    };
    // A raw buffer whose length is not a whole number of elements, or a count that disagrees
    // with the dims, is not trusted.
    let raw_ok = t.raw_data.as_ref().is_none_or(|r| {
        let w = if t.data_type() == elem::INT64 { 8 } else { 4 };
        r.len() % w == 0
    });
    (raw_ok && vals.len() == n).then_some(vals)
}

/// What a constant tensor (initializer or `Constant` value) tells: type, shape and small values.
fn tensor_info(t: &TensorProto) -> Option<TInfo> {
    let e = t.data_type.filter(|e| *e != 0)?;
    if t.dims.len() > MAX_RANK || t.dims.iter().any(|d| *d < 0) {
        return Some(TInfo::new(e, None));
    }
    let shape = t.dims.iter().map(|d| IDim::Fixed(*d)).collect();
    let value = tensor_ints(t).map(|v| v.into_iter().map(IDim::Fixed).collect());
    Some(TInfo::new(e, Some(shape)).with_value(value))
}

pub(crate) fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

pub(crate) fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

pub(crate) fn attr_ints<'n>(n: &'n NodeProto, name: &str) -> Option<&'n [i64]> {
    attr(n, name).map(|a| a.ints.as_slice())
}

/// The output of a `Constant` node.
fn constant_info(n: &NodeProto) -> Option<TInfo> {
    let a = n.attribute.first()?;
    let ints = |v: &[i64]| Some(v.iter().map(|x| IDim::Fixed(*x)).collect::<Vec<_>>());
    match a.name() {
        "value" => tensor_info(a.t.as_ref()?),
        "sparse_value" => {
            let s = a.sparse_tensor.as_ref()?;
            let e = s.values.as_ref()?.data_type.filter(|e| *e != 0)?;
            let ok = s.dims.len() <= MAX_RANK && s.dims.iter().all(|d| *d >= 0);
            Some(TInfo::new(
                e,
                ok.then(|| s.dims.iter().map(|d| IDim::Fixed(*d)).collect()),
            ))
        }
        "value_float" => Some(TInfo::new(elem::FLOAT, Some(Vec::new()))),
        "value_int" => Some(TInfo::new(elem::INT64, Some(Vec::new())).with_value(ints(&[a.i?]))),
        "value_string" => Some(TInfo::new(8, Some(Vec::new()))),
        "value_floats" => Some(TInfo::new(
            elem::FLOAT,
            Some(vec![IDim::Fixed(a.floats.len() as i64)]),
        )),
        "value_ints" => Some(
            TInfo::new(elem::INT64, Some(vec![IDim::Fixed(a.ints.len() as i64)]))
                .with_value(ints(&a.ints)),
        ),
        "value_strings" => Some(TInfo::new(
            8,
            Some(vec![IDim::Fixed(a.strings.len() as i64)]),
        )),
        _ => None,
    }
}

/// Infers types and shapes for every tensor of the main graph `g` (§13.1). `opset` is the
/// model's default-domain operator set version. Declared information (graph inputs, outputs
/// and `value_info` with a known element type) is taken as given and wins over inference;
/// inferred information fills the gaps. Never panics; the work is linear in the graph's size
/// times [`MAX_RANK`].
pub fn infer_graph(g: &GraphProto, opset: Option<i64>) -> Inference {
    let mut declared: HashMap<&str, &TypeProto> = HashMap::new();
    for v in g.value_info.iter().chain(&g.input).chain(&g.output) {
        if let Some(t) = v.r#type.as_ref().filter(|t| from_type(Some(t)).is_some()) {
            declared.entry(v.name()).or_insert(t);
        }
    }
    let decl = |name: &str| declared.get(name).and_then(|t| from_type(Some(t)));
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut budget = MAX_TRACKED_DIMS;
    // Every tensor kept is charged its rank and value length against the budget; once it is
    // spent, tensors keep their type only.
    let mut charge = |mut t: TInfo| {
        let cost = t.rank().unwrap_or(0) + t.value.as_ref().map_or(0, Vec::len);
        match budget.checked_sub(cost) {
            Some(left) => budget = left,
            None => {
                t.shape = None;
                t.value = None;
            }
        }
        Slot::Typed(t)
    };
    for t in &g.initializer {
        if let Some(info) = tensor_info(t) {
            // A declared input with a default value keeps its declared type; the values are
            // the initializer's.
            let info = match decl(t.name()) {
                Some(d) => d.with_value(info.value),
                None => info,
            };
            slots.insert(t.name().to_string(), charge(info));
        }
    }
    for v in &g.input {
        if !slots.contains_key(v.name())
            && let Some(d) = decl(v.name())
        {
            slots.insert(v.name().to_string(), charge(d));
        }
    }
    for (i, n) in g.node.iter().enumerate() {
        let ins: Vec<Input<'_>> = n
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    Input::Absent
                } else {
                    match slots.get(name.as_str()) {
                        Some(Slot::Typed(t)) => Input::Known(t),
                        Some(Slot::Stopped(at)) => Input::Untyped(*at),
                        None => Input::Untyped(i),
                    }
                }
            })
            .collect();
        let upstream = ins.iter().find_map(|x| match x {
            Input::Untyped(at) => Some(*at),
            _ => None,
        });
        let outs: Vec<Option<TInfo>> = if is_default_domain(n) && n.op_type() == "Constant" {
            vec![constant_info(n)]
        } else if is_default_domain(n) {
            ops::infer_node(n, &ins, opset)
        } else {
            Vec::new()
        };
        let mut outs = outs.into_iter();
        for o in &n.output {
            let inferred = outs.next().flatten();
            if o.is_empty() {
                continue;
            }
            let slot = match (decl(o), inferred) {
                // Declared wins; a declared tensor without shape takes the inferred one, and
                // keeps any inferred values (used for later shape arithmetic only).
                (Some(mut d), inf) => {
                    if let Some(inf) = inf.filter(|x| x.elem == d.elem) {
                        if d.shape.is_none() {
                            d.shape = inf.shape.clone();
                        }
                        d = d.with_value(inf.value);
                    }
                    charge(d)
                }
                (None, Some(inf)) => charge(inf),
                (None, None) => Slot::Stopped(upstream.unwrap_or(i)),
            };
            slots.insert(o.clone(), slot);
        }
    }
    Inference { slots }
}

fn is_default_domain(n: &NodeProto) -> bool {
    matches!(n.domain(), "" | "ai.onnx")
}

/// One input of a node as the rules see it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Input<'a> {
    /// Optional input left out (empty name).
    Absent,
    /// Its type is unknown; inference stopped at the given node.
    Untyped(usize),
    /// Known.
    Known(&'a TInfo),
}

impl<'a> Input<'a> {
    pub(crate) fn get(self) -> Option<&'a TInfo> {
        match self {
            Input::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// Multidirectional (numpy) broadcasting of shapes (ONNX `Broadcasting.md`). `None` when a
/// rank is unknown. A dimension is stated only when it is the same for every valid input.
pub fn broadcast(shapes: &[Option<&[IDim]>]) -> Option<Vec<IDim>> {
    let shapes: Vec<&[IDim]> = shapes.iter().copied().collect::<Option<_>>()?;
    let rank = shapes.iter().map(|s| s.len()).max()?;
    if rank > MAX_RANK {
        return None;
    }
    let mut out = Vec::with_capacity(rank);
    for k in 0..rank {
        let dims: Vec<&IDim> = shapes
            .iter()
            .filter_map(|s| {
                let off = rank - s.len();
                k.checked_sub(off).and_then(|j| s.get(j))
            })
            .filter(|d| **d != IDim::Fixed(1))
            .collect();
        out.push(broadcast_dim(&dims));
    }
    Some(out)
}

/// One dimension of a broadcast, given the dimensions other than a fixed 1.
fn broadcast_dim(dims: &[&IDim]) -> IDim {
    let fixed: Vec<i64> = dims
        .iter()
        .filter_map(|d| match d {
            IDim::Fixed(v) => Some(*v),
            _ => None,
        })
        .collect();
    if let Some(&f) = fixed.first() {
        // Any symbolic or unknown dimension must equal f or be 1: the result is f.
        return if fixed.iter().all(|v| *v == f) {
            IDim::Fixed(f)
        } else {
            IDim::Unknown
        };
    }
    match dims.first() {
        None => IDim::Fixed(1),
        Some(IDim::Sym(s)) if dims.iter().all(|d| matches!(d, IDim::Sym(t) if t == s)) => {
            IDim::Sym(s.clone())
        }
        _ => IDim::Unknown,
    }
}
