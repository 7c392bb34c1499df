//! The per-operator inference rules (§13.1), for operators of the default ONNX domain.
//!
//! Each rule returns one entry per node output: `Some` with the element type and whatever
//! shape follows from the operator's definition, `None` when not even the type can be told.
//! Operators without a rule return nothing (every output untyped).

use super::nn::{conv_pool, gemm, layer_norm, matmul, pad, reduce, reduced};
use super::shape_ops::{
    concat, flatten, gather, range, reshape, shape_op, slice, split, squeeze, target_dims,
    transpose, unsqueeze,
};
use super::{IDim, Input, MAX_NODE_INPUTS, MAX_RANK, TInfo, attr, attr_i, broadcast, elem};
use crate::onnx::NodeProto;

/// Unary operators whose output has the input's type and shape.
const SAME_AS_INPUT: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "BatchNormalization",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "CumSum",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "InstanceNormalization",
    "LRN",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "MeanVarianceNormalization",
    "Mish",
    "Neg",
    "PRelu",
    "Reciprocal",
    "Relu",
    "ReverseSequence",
    "Round",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softmax",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Trilu",
];

/// Elementwise operators with numpy broadcasting whose output has the inputs' type.
const BROADCAST_SAME: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Mod",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
];

/// Elementwise operators with numpy broadcasting whose output is `bool`.
const BROADCAST_BOOL: &[&str] = &[
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// Reductions with `axes` (attribute before opset 18 for most, input after) and `keepdims`.
const REDUCE: &[&str] = &[
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// `axis` in `[-rank, rank)`, made non-negative.
pub(super) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r)
        .contains(&a)
        .then(|| usize::try_from(a).ok())
        .flatten()
}

/// A list of distinct axes normalised against `rank`.
pub(super) fn norm_axes(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let mut out: Vec<usize> = Vec::with_capacity(axes.len().min(MAX_RANK));
    for a in axes {
        let a = norm_axis(*a, rank)?;
        if out.contains(&a) {
            return None;
        }
        out.push(a);
    }
    Some(out)
}

pub(super) fn same(t: &TInfo) -> TInfo {
    TInfo::new(t.elem, t.shape.clone())
}

/// Elementwise arithmetic on tracked integer values (shape computations in exported graphs).
fn value_arith(op: &str, a: &TInfo, b: &TInfo) -> Option<Vec<IDim>> {
    let (va, vb) = (a.value.as_ref()?, b.value.as_ref()?);
    let n = va.len().max(vb.len());
    if (va.len() != n && va.len() != 1) || (vb.len() != n && vb.len() != 1) {
        return None;
    }
    let at = |v: &[IDim], i: usize| v.get(if v.len() == 1 { 0 } else { i }).cloned();
    (0..n)
        .map(|i| {
            let (x, y) = (at(va, i)?, at(vb, i)?);
            Some(match (op, &x, &y) {
                ("Add", IDim::Fixed(p), IDim::Fixed(q)) => p.checked_add(*q).map(IDim::Fixed)?,
                ("Sub", IDim::Fixed(p), IDim::Fixed(q)) => p.checked_sub(*q).map(IDim::Fixed)?,
                ("Mul", IDim::Fixed(p), IDim::Fixed(q)) => p.checked_mul(*q).map(IDim::Fixed)?,
                ("Div", IDim::Fixed(p), IDim::Fixed(q))
                    if *q != 0 && p.checked_rem(*q) == Some(0) =>
                {
                    p.checked_div(*q).map(IDim::Fixed)?
                }
                ("Add" | "Sub", s @ IDim::Sym(_), IDim::Fixed(0))
                | ("Mul" | "Div", s @ IDim::Sym(_), IDim::Fixed(1)) => s.clone(),
                ("Add", IDim::Fixed(0), s @ IDim::Sym(_))
                | ("Mul", IDim::Fixed(1), s @ IDim::Sym(_)) => s.clone(),
                _ => IDim::Unknown,
            })
        })
        .collect()
}

/// Infers the outputs of one node of the default domain.
pub(crate) fn infer_node(
    n: &NodeProto,
    ins: &[Input<'_>],
    opset: Option<i64>,
) -> Vec<Option<TInfo>> {
    let x = |k: usize| ins.get(k).and_then(|i| i.get());
    let first_known = |ks: &[usize]| ks.iter().find_map(|k| x(*k));
    let shape = |k: usize| x(k).and_then(|t| t.shape.as_deref());
    let op = n.op_type();
    let wide = ins.len() > MAX_NODE_INPUTS;
    if SAME_AS_INPUT.contains(&op) {
        return vec![x(0).map(same)];
    }
    if BROADCAST_SAME.contains(&op) {
        let all: Vec<usize> = (0..ins.len()).collect();
        let Some(t) = first_known(&all) else {
            return Vec::new();
        };
        let out = if wide {
            TInfo::new(t.elem, None)
        } else {
            let shapes: Vec<_> = (0..ins.len()).map(shape).collect();
            TInfo::new(t.elem, broadcast(&shapes))
        };
        let value = match (x(0), x(1)) {
            (Some(a), Some(b)) if ins.len() == 2 => value_arith(op, a, b),
            _ => None,
        };
        return vec![Some(out.with_value(value))];
    }
    if BROADCAST_BOOL.contains(&op) {
        return vec![Some(TInfo::new(
            elem::BOOL,
            broadcast(&[shape(0), shape(1)]),
        ))];
    }
    if REDUCE.contains(&op) {
        return vec![reduce(n, x(0), ins.get(1).copied())];
    }
    match op {
        "Identity" => vec![x(0).cloned()],
        "Dropout" => vec![
            x(0).map(same),
            x(0).map(|t| TInfo::new(elem::BOOL, t.shape.clone())),
        ],
        "Pow" => vec![x(0).map(|t| TInfo::new(t.elem, broadcast(&[shape(0), shape(1)])))],
        "Not" | "IsNaN" | "IsInf" => vec![x(0).map(|t| TInfo::new(elem::BOOL, t.shape.clone()))],
        "Where" => vec![
            first_known(&[1, 2])
                .map(|t| TInfo::new(t.elem, broadcast(&[shape(0), shape(1), shape(2)]))),
        ],
        "Cast" => {
            let Some(to) = attr_i(n, "to")
                .and_then(|v| i32::try_from(v).ok())
                .filter(|v| *v != 0)
            else {
                return Vec::new();
            };
            // Values pass through only when every one fits the target type unchanged.
            let fits = |v: &Vec<IDim>| {
                to == elem::INT64
                    || v.iter().all(|d| match d {
                        IDim::Fixed(x) => i32::try_from(*x).is_ok(),
                        _ => true,
                    })
            };
            vec![Some(match x(0) {
                Some(t) => TInfo::new(to, t.shape.clone()).with_value(t.value.clone().filter(fits)),
                None => TInfo::new(to, None),
            })]
        }
        "CastLike" => vec![x(1).map(|t| TInfo::new(t.elem, shape(0).map(<[IDim]>::to_vec)))],
        "Shape" => vec![Some(shape_op(n, x(0)))],
        "Size" => vec![Some(TInfo::new(elem::INT64, Some(Vec::new())))],
        "Gather" => vec![x(0).map(|d| gather(n, d, x(1)))],
        "GatherElements" => vec![x(0).map(|d| TInfo::new(d.elem, shape(1).map(<[IDim]>::to_vec)))],
        "GatherND" | "Einsum" | "Compress" | "Resize" | "Upsample" | "DepthToSpace"
        | "SpaceToDepth" => vec![x(0).map(|d| {
            let keeps_rank = matches!(op, "Resize" | "Upsample" | "DepthToSpace" | "SpaceToDepth");
            let rank = d.rank().filter(|_| keeps_rank);
            TInfo::new(d.elem, rank.map(|r| vec![IDim::Unknown; r]))
        })],
        "MatMul" => vec![x(0).map(|a| TInfo::new(a.elem, matmul(shape(0), shape(1))))],
        "MatMulInteger" => vec![Some(TInfo::new(elem::INT32, matmul(shape(0), shape(1))))],
        "Gemm" => {
            vec![first_known(&[0, 1]).map(|t| TInfo::new(t.elem, gemm(n, shape(0), shape(1))))]
        }
        "Reshape" => vec![x(0).map(|d| reshape(n, d, x(1)))],
        "Transpose" => vec![x(0).map(|d| TInfo::new(d.elem, transpose(n, d.shape.as_deref())))],
        "Unsqueeze" => vec![x(0).map(|d| unsqueeze(n, d, ins.get(1).copied()))],
        "Squeeze" => vec![x(0).map(|d| squeeze(n, d, ins.get(1).copied()))],
        "Concat" => {
            let all: Vec<usize> = (0..ins.len()).collect();
            vec![first_known(&all).map(|t| {
                if wide {
                    TInfo::new(t.elem, None)
                } else {
                    concat(n, t.elem, ins)
                }
            })]
        }
        "Slice" => vec![x(0).map(|d| slice(n, d, ins, opset))],
        "Split" => split(n, x(0), x(1)),
        "Expand" => vec![x(0).map(|d| {
            let target = x(1).and_then(target_dims);
            let shape = target.and_then(|t| {
                t.iter()
                    .all(|d| !matches!(d, IDim::Fixed(v) if *v < 0))
                    .then(|| broadcast(&[d.shape.as_deref(), Some(&t)]))
                    .flatten()
            });
            TInfo::new(d.elem, shape)
        })],
        "ConstantOfShape" => {
            let e = attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .map_or(elem::FLOAT, |t| t.data_type());
            let shape = x(0)
                .and_then(target_dims)
                .filter(|t| t.iter().all(|d| !matches!(d, IDim::Fixed(v) if *v < 0)));
            vec![(e != 0).then(|| TInfo::new(e, shape))]
        }
        "Range" => vec![first_known(&[0, 1, 2]).map(|t| range(t.elem, x(0), x(1), x(2)))],
        "Flatten" => vec![x(0).map(|d| TInfo::new(d.elem, flatten(n, d.shape.as_deref())))],
        "LayerNormalization" => layer_norm(n, x(0)),
        "ArgMax" | "ArgMin" => vec![x(0).map(|d| {
            let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
            let axis = attr_i(n, "axis").unwrap_or(0);
            let shape = d.shape.as_deref().and_then(|s| {
                let a = norm_axis(axis, s.len())?;
                Some(reduced(s, &[a], keep))
            });
            TInfo::new(elem::INT64, shape)
        })],
        "Conv" | "MaxPool" | "AveragePool" | "LpPool" => {
            let out = x(0).map(|d| TInfo::new(d.elem, conv_pool(n, d.shape.as_deref(), shape(1))));
            let idx = out
                .as_ref()
                .map(|o| TInfo::new(elem::INT64, o.shape.clone()));
            vec![out, idx]
        }
        "ConvTranspose" => vec![x(0).map(|d| {
            let shape = d.shape.as_deref().filter(|s| s.len() >= 3).map(|s| {
                let mut o = vec![IDim::Unknown; s.len()];
                o[0] = s[0].clone();
                o
            });
            TInfo::new(d.elem, shape)
        })],
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => vec![x(0).map(|d| {
            let shape = d.shape.as_deref().filter(|s| s.len() >= 2).map(|s| {
                let mut o = s[..2].to_vec();
                o.resize(s.len(), IDim::Fixed(1));
                o
            });
            TInfo::new(d.elem, shape)
        })],
        "Tile" => vec![x(0).map(|d| {
            let reps = x(1).and_then(TInfo::ints);
            let shape = d.shape.as_deref().map(|s| match reps.as_deref() {
                Some(r) if r.len() == s.len() => s
                    .iter()
                    .zip(r)
                    .map(|(dim, rep)| match (dim, rep) {
                        (_, 1) => dim.clone(),
                        (IDim::Fixed(v), rep) if *rep >= 0 => {
                            v.checked_mul(*rep).map_or(IDim::Unknown, IDim::Fixed)
                        }
                        _ => IDim::Unknown,
                    })
                    .collect(),
                _ => vec![IDim::Unknown; s.len()],
            });
            TInfo::new(d.elem, shape)
        })],
        "Pad" => vec![x(0).map(|d| pad(n, d, ins, opset))],
        "TopK" => {
            let k = x(1)
                .and_then(TInfo::ints)
                .and_then(|v| v.first().copied())
                .filter(|k| *k >= 0);
            let axis = attr_i(n, "axis").unwrap_or(-1);
            let shape = shape(0).map(|s| {
                let mut o = s.to_vec();
                if let Some(a) = norm_axis(axis, s.len()) {
                    o[a] = k.map_or(IDim::Unknown, IDim::Fixed);
                }
                o
            });
            vec![
                x(0).map(|d| TInfo::new(d.elem, shape.clone())),
                Some(TInfo::new(elem::INT64, shape)),
            ]
        }
        "NonZero" => vec![Some(TInfo::new(
            elem::INT64,
            Some(vec![
                x(0).and_then(TInfo::rank)
                    .and_then(|r| i64::try_from(r).ok())
                    .map_or(IDim::Unknown, IDim::Fixed),
                IDim::Unknown,
            ]),
        ))],
        "OneHot" => vec![x(2).map(|v| TInfo::new(v.elem, None))],
        "EyeLike" => {
            let e = attr_i(n, "dtype")
                .and_then(|v| i32::try_from(v).ok())
                .filter(|v| *v != 0);
            vec![x(0).map(|d| TInfo::new(e.unwrap_or(d.elem), d.shape.clone()))]
        }
        "QuantizeLinear" => {
            let e = attr_i(n, "output_dtype")
                .and_then(|v| i32::try_from(v).ok())
                .filter(|v| *v != 0)
                .or_else(|| match ins.get(2) {
                    Some(Input::Known(z)) => Some(z.elem),
                    Some(Input::Untyped(_)) => None,
                    _ => Some(elem::UINT8),
                });
            vec![e.map(|e| TInfo::new(e, shape(0).map(<[IDim]>::to_vec)))]
        }
        "DequantizeLinear" => {
            vec![x(1).map(|s| TInfo::new(s.elem, shape(0).map(<[IDim]>::to_vec)))]
        }
        "DynamicQuantizeLinear" => vec![
            Some(TInfo::new(elem::UINT8, shape(0).map(<[IDim]>::to_vec))),
            Some(TInfo::new(elem::FLOAT, Some(Vec::new()))),
            Some(TInfo::new(elem::UINT8, Some(Vec::new()))),
        ],
        "If" => {
            // Both branches yield the same element types; shapes may differ between them.
            let then = attr(n, "then_branch").and_then(|a| a.g.as_ref());
            then.map(|g| {
                g.output
                    .iter()
                    .map(|o| super::from_type(o.r#type.as_ref()).map(|t| TInfo::new(t.elem, None)))
                    .collect()
            })
            .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}
