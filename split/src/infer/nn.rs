//! Neural-network operators (§13.1): MatMul, Gemm, LayerNormalization, reductions,
//! convolution and pooling windows, Pad.

use super::ops::{norm_axes, norm_axis, same};
use super::shape_ops::axes_of;
use super::{IDim, Input, TInfo, attr, attr_i, attr_ints, broadcast, elem};
use crate::onnx::NodeProto;

pub(super) fn matmul(a: Option<&[IDim]>, b: Option<&[IDim]>) -> Option<Vec<IDim>> {
    let (a, b) = (a?, b?);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (ab, n) = if a.len() == 1 {
        (&a[..0], None)
    } else {
        (&a[..a.len() - 2], Some(&a[a.len() - 2]))
    };
    let (bb, m) = if b.len() == 1 {
        (&b[..0], None)
    } else {
        (&b[..b.len() - 2], Some(&b[b.len() - 1]))
    };
    let mut out = broadcast(&[Some(ab), Some(bb)])?;
    out.extend(n.cloned());
    out.extend(m.cloned());
    Some(out)
}

pub(super) fn gemm(n: &NodeProto, a: Option<&[IDim]>, b: Option<&[IDim]>) -> Option<Vec<IDim>> {
    let pick = |s: Option<&[IDim]>, trans: bool, k: usize| match s {
        Some(s) if s.len() == 2 => s[if trans { 1 - k } else { k }].clone(),
        _ => IDim::Unknown,
    };
    let ta = attr_i(n, "transA").unwrap_or(0) != 0;
    let tb = attr_i(n, "transB").unwrap_or(0) != 0;
    Some(vec![pick(a, ta, 0), pick(b, tb, 1)])
}

pub(super) fn layer_norm(n: &NodeProto, d: Option<&TInfo>) -> Vec<Option<TInfo>> {
    let Some(d) = d else {
        return Vec::new();
    };
    let stash = attr_i(n, "stash_type")
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(elem::FLOAT);
    let axis = attr_i(n, "axis").unwrap_or(-1);
    let stats = d.shape.as_deref().and_then(|s| {
        let a = norm_axis(axis, s.len())?;
        let mut o = s[..a].to_vec();
        o.resize(s.len(), IDim::Fixed(1));
        Some(o)
    });
    vec![
        Some(same(d)),
        Some(TInfo::new(stash, stats.clone())),
        Some(TInfo::new(stash, stats)),
    ]
}

pub(super) fn reduced(s: &[IDim], axes: &[usize], keep: bool) -> Vec<IDim> {
    s.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keep) {
            (true, true) => Some(IDim::Fixed(1)),
            (true, false) => None,
            (false, _) => Some(d.clone()),
        })
        .collect()
}

pub(super) fn reduce(
    n: &NodeProto,
    d: Option<&TInfo>,
    axes_in: Option<Input<'_>>,
) -> Option<TInfo> {
    let d = d?;
    let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
    let noop = attr_i(n, "noop_with_empty_axes").unwrap_or(0) != 0;
    let shape = d.shape.as_deref().and_then(|s| match axes_of(n, axes_in) {
        // Axes given but not known: with keepdims the rank stays, each dimension kept or 1.
        Err(()) => keep.then(|| vec![IDim::Unknown; s.len()]),
        Ok(axes) => match axes.filter(|a| !a.is_empty()) {
            None if noop => Some(s.to_vec()),
            None => Some(reduced(s, &(0..s.len()).collect::<Vec<_>>(), keep)),
            Some(a) => norm_axes(&a, s.len()).map(|a| reduced(s, &a, keep)),
        },
    });
    Some(TInfo::new(d.elem, shape))
}

/// One spatial output size of a convolution or pooling window.
#[allow(clippy::too_many_arguments)]
pub(super) fn window_out(
    input: &IDim,
    k: i64,
    stride: i64,
    dil: i64,
    pads: (i64, i64),
    auto_pad: &str,
    ceil: bool,
) -> IDim {
    if k < 1 || stride < 1 || dil < 1 || pads.0 < 0 || pads.1 < 0 {
        return IDim::Unknown;
    }
    let same_pad = matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER");
    let (pb, pe) = if auto_pad == "NOTSET" { pads } else { (0, 0) };
    let Some(reach) = dil.checked_mul(k - 1) else {
        return IDim::Unknown;
    };
    let IDim::Fixed(n) = input else {
        // A stride-1 window padded by exactly its reach keeps the size.
        let keeps = stride == 1 && (same_pad || pb.checked_add(pe) == Some(reach));
        return if keeps { input.clone() } else { IDim::Unknown };
    };
    if *n < 0 {
        return IDim::Unknown;
    }
    if same_pad {
        // ceil(n / stride)
        return IDim::Fixed(if *n == 0 { 0 } else { (n - 1) / stride + 1 });
    }
    let Some(num) = n
        .checked_add(pb)
        .and_then(|v| v.checked_add(pe))
        .and_then(|v| v.checked_sub(reach))
        .and_then(|v| v.checked_sub(1))
    else {
        return IDim::Unknown;
    };
    if num < 0 {
        return IDim::Unknown;
    }
    let floor = num / stride + 1;
    // With ceil_mode the last window may be dropped by runtimes when it starts in the padding;
    // only the case where floor and ceil agree is stated.
    if ceil && num % stride != 0 {
        return IDim::Unknown;
    }
    IDim::Fixed(floor)
}

pub(super) fn conv_pool(
    n: &NodeProto,
    x: Option<&[IDim]>,
    w: Option<&[IDim]>,
) -> Option<Vec<IDim>> {
    let x = x?;
    if x.len() < 3 {
        return None;
    }
    let nsp = x.len() - 2;
    let conv = n.op_type() == "Conv";
    let kernel: Vec<Option<i64>> = match attr_ints(n, "kernel_shape") {
        Some(k) if k.len() == nsp => k.iter().map(|v| Some(*v)).collect(),
        Some(_) => return None,
        None if conv => match w {
            Some(w) if w.len() == x.len() => w[2..]
                .iter()
                .map(|d| {
                    if let IDim::Fixed(v) = d {
                        Some(*v)
                    } else {
                        None
                    }
                })
                .collect(),
            _ => vec![None; nsp],
        },
        None => return None,
    };
    let list = |name: &str, len: usize, default: i64| -> Option<Vec<i64>> {
        match attr_ints(n, name) {
            Some(v) if v.len() == len => Some(v.to_vec()),
            Some(_) => None,
            None => Some(vec![default; len]),
        }
    };
    let strides = list("strides", nsp, 1)?;
    let dil = list("dilations", nsp, 1)?;
    let pads = list("pads", 2 * nsp, 0)?;
    let auto_pad = attr(n, "auto_pad")
        .and_then(|a| a.s.as_deref())
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let auto_pad = if auto_pad.is_empty() {
        "NOTSET"
    } else {
        &*auto_pad
    };
    if !matches!(auto_pad, "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER") {
        return None;
    }
    let ceil = attr_i(n, "ceil_mode").unwrap_or(0) != 0;
    let channels = if conv {
        w.and_then(|w| w.first().cloned()).unwrap_or(IDim::Unknown)
    } else {
        x[1].clone()
    };
    let mut out = vec![x[0].clone(), channels];
    for i in 0..nsp {
        out.push(match kernel[i] {
            Some(k) => window_out(
                &x[2 + i],
                k,
                strides[i],
                dil[i],
                (pads[i], pads[nsp + i]),
                auto_pad,
                ceil,
            ),
            None => IDim::Unknown,
        });
    }
    Some(out)
}

pub(super) fn pad(n: &NodeProto, d: &TInfo, ins: &[Input<'_>], opset: Option<i64>) -> TInfo {
    let Some(s) = d.shape.as_deref() else {
        return TInfo::new(d.elem, None);
    };
    let pads = if opset.is_some_and(|v| v < 11) || attr(n, "pads").is_some() {
        attr_ints(n, "pads").map(<[i64]>::to_vec)
    } else {
        ins.get(1).and_then(|i| i.get()).and_then(TInfo::ints)
    };
    let axes: Option<Vec<usize>> = match ins.get(3) {
        None | Some(Input::Absent) => Some((0..s.len()).collect()),
        Some(i) => i
            .get()
            .and_then(TInfo::ints)
            .and_then(|a| norm_axes(&a, s.len())),
    };
    let out = match (pads, axes) {
        (Some(p), Some(axes)) if p.len() == 2 * axes.len() => {
            let mut o = s.to_vec();
            for (k, a) in axes.iter().enumerate() {
                let (pb, pe) = (p[k], p[axes.len() + k]);
                o[*a] = match &s[*a] {
                    dim if pb == 0 && pe == 0 => dim.clone(),
                    IDim::Fixed(v) => v
                        .checked_add(pb)
                        .and_then(|v| v.checked_add(pe))
                        .filter(|v| *v >= 0)
                        .map_or(IDim::Unknown, IDim::Fixed),
                    _ => IDim::Unknown,
                };
            }
            o
        }
        _ => vec![IDim::Unknown; s.len()],
    };
    TInfo::new(d.elem, Some(out))
}
