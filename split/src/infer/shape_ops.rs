//! Shape-manipulating operators (§13.1): Shape, Gather, Reshape, Transpose, Unsqueeze,
//! Squeeze, Concat, Slice, Split, Range, Flatten, and the integer values they carry.

use std::rc::Rc;

use super::ops::{norm_axes, norm_axis};
use super::{IDim, Input, MAX_RANK, TInfo, attr, attr_i, attr_ints, elem};
use crate::onnx::NodeProto;

/// The product of dimensions, when it can be told: fixed sizes multiply (checked), and a
/// single symbolic or unknown dimension times ones is itself.
pub(super) fn product(dims: &[IDim]) -> IDim {
    let rest: Vec<&IDim> = dims.iter().filter(|d| **d != IDim::Fixed(1)).collect();
    match rest.as_slice() {
        [] => IDim::Fixed(1),
        [one] => (*one).clone(),
        _ => {
            let mut p: i64 = 1;
            for d in rest {
                match d {
                    IDim::Fixed(v) => match p.checked_mul(*v) {
                        Some(q) => p = q,
                        None => return IDim::Unknown,
                    },
                    _ => return IDim::Unknown,
                }
            }
            IDim::Fixed(p)
        }
    }
}

/// The size a `-1` entry of a Reshape target stands for: the input's element count divided by
/// the product of the other target dimensions, with symbolic sizes cancelled by name.
pub(super) fn reshape_rest(input: &[IDim], others: &[IDim]) -> IDim {
    fn split(dims: &[IDim]) -> Option<(i64, Vec<Rc<str>>)> {
        let mut p: i64 = 1;
        let mut syms = Vec::new();
        for d in dims {
            match d {
                IDim::Fixed(v) => p = p.checked_mul(*v)?,
                IDim::Sym(s) => syms.push(s.clone()),
                IDim::Unknown => return None,
            }
        }
        Some((p, syms))
    }
    let (Some((pin, mut sin)), Some((pout, sout))) = (split(input), split(others)) else {
        return IDim::Unknown;
    };
    for s in sout {
        match sin.iter().position(|t| *t == s) {
            Some(k) => {
                sin.swap_remove(k);
            }
            None => return IDim::Unknown,
        }
    }
    if pin <= 0 || pout <= 0 || pin % pout != 0 {
        return IDim::Unknown;
    }
    let ratio = pin / pout;
    match sin.as_slice() {
        [] => IDim::Fixed(ratio),
        [s] if ratio == 1 => IDim::Sym(s.clone()),
        _ => IDim::Unknown,
    }
}

/// A shape given as a tensor's values (Reshape, Expand, ConstantOfShape targets): its entries,
/// or as many unknown entries as its static length.
pub(super) fn target_dims(s: &TInfo) -> Option<Vec<IDim>> {
    if let Some(v) = &s.value {
        return Some(v.clone());
    }
    match s.shape.as_deref() {
        Some([IDim::Fixed(k)]) => {
            let k = usize::try_from(*k).ok().filter(|k| *k <= MAX_RANK)?;
            Some(vec![IDim::Unknown; k])
        }
        _ => None,
    }
}

pub(super) fn shape_op(n: &NodeProto, d: Option<&TInfo>) -> TInfo {
    let Some(s) = d.and_then(|d| d.shape.as_deref()) else {
        return TInfo::new(elem::INT64, Some(vec![IDim::Unknown]));
    };
    let r = i64::try_from(s.len()).unwrap_or(i64::MAX);
    let clamp = |v: i64| {
        let v = if v < 0 { v.saturating_add(r) } else { v };
        usize::try_from(v.clamp(0, r)).unwrap_or(0)
    };
    let start = clamp(attr_i(n, "start").unwrap_or(0));
    let end = clamp(attr_i(n, "end").unwrap_or(r));
    let dims = s.get(start..end.max(start)).unwrap_or_default().to_vec();
    let len = IDim::Fixed(i64::try_from(dims.len()).unwrap_or(0));
    TInfo::new(elem::INT64, Some(vec![len])).with_value(Some(dims))
}

pub(super) fn gather(n: &NodeProto, d: &TInfo, idx: Option<&TInfo>) -> TInfo {
    let axis = attr_i(n, "axis").unwrap_or(0);
    let (Some(ds), Some(is)) = (d.shape.as_deref(), idx.and_then(|i| i.shape.as_deref())) else {
        return TInfo::new(d.elem, None);
    };
    let Some(a) = norm_axis(axis, ds.len()) else {
        return TInfo::new(d.elem, None);
    };
    let mut out = ds[..a].to_vec();
    out.extend_from_slice(is);
    out.extend_from_slice(&ds[a + 1..]);
    let value = (ds.len() == 1).then(|| {
        let v = d.value.as_ref()?;
        let len = i64::try_from(v.len()).ok()?;
        idx?.ints()?
            .iter()
            .map(|k| {
                let k = if *k < 0 { k.checked_add(len)? } else { *k };
                v.get(usize::try_from(k).ok()?).cloned()
            })
            .collect::<Option<Vec<_>>>()
    });
    TInfo::new(d.elem, Some(out)).with_value(value.flatten())
}

pub(super) fn reshape(n: &NodeProto, d: &TInfo, s: Option<&TInfo>) -> TInfo {
    let allowzero = attr_i(n, "allowzero").unwrap_or(0) != 0;
    let Some(target) = s.and_then(target_dims) else {
        return TInfo::new(d.elem, None);
    };
    let input = d.shape.as_deref();
    let mut out = Vec::with_capacity(target.len());
    let mut rest = None;
    for (i, t) in target.iter().enumerate() {
        out.push(match t {
            IDim::Fixed(0) if !allowzero => input
                .and_then(|s| s.get(i))
                .cloned()
                .unwrap_or(IDim::Unknown),
            IDim::Fixed(-1) if rest.is_none() => {
                rest = Some(i);
                IDim::Unknown
            }
            IDim::Fixed(v) if *v < 0 => return TInfo::new(d.elem, None),
            other => other.clone(),
        });
    }
    if let (Some(k), Some(input)) = (rest, input) {
        let others: Vec<IDim> = out
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != k)
            .map(|(_, d)| d.clone())
            .collect();
        out[k] = reshape_rest(input, &others);
    }
    // Reshape keeps the elements in order, so tracked values pass through.
    TInfo::new(d.elem, Some(out)).with_value(d.value.clone())
}

pub(super) fn transpose(n: &NodeProto, s: Option<&[IDim]>) -> Option<Vec<IDim>> {
    let s = s?;
    let perm: Vec<usize> = match attr_ints(n, "perm") {
        Some(p) => p
            .iter()
            .map(|v| usize::try_from(*v).ok())
            .collect::<Option<_>>()?,
        None => (0..s.len()).rev().collect(),
    };
    let mut seen = vec![false; s.len()];
    if perm.len() != s.len() {
        return None;
    }
    for p in &perm {
        if *seen.get(*p)? {
            return None;
        }
        seen[*p] = true;
    }
    Some(perm.iter().map(|p| s[*p].clone()).collect())
}

/// Axes from the attribute (older opsets) or the second input (newer ones); `Err` when given
/// as an input whose value is unknown.
pub(super) fn axes_of(n: &NodeProto, input: Option<Input<'_>>) -> Result<Option<Vec<i64>>, ()> {
    if let Some(a) = attr_ints(n, "axes") {
        return Ok(Some(a.to_vec()));
    }
    match input {
        None | Some(Input::Absent) => Ok(None),
        Some(i) => i.get().and_then(TInfo::ints).map(Some).ok_or(()),
    }
}

pub(super) fn unsqueeze(n: &NodeProto, d: &TInfo, axes_in: Option<Input<'_>>) -> TInfo {
    let shape = (|| {
        let s = d.shape.as_deref()?;
        let axes = axes_of(n, axes_in).ok()??;
        let rank = s.len().checked_add(axes.len()).filter(|r| *r <= MAX_RANK)?;
        let axes = norm_axes(&axes, rank)?;
        let mut it = s.iter();
        (0..rank)
            .map(|j| {
                if axes.contains(&j) {
                    Some(IDim::Fixed(1))
                } else {
                    it.next().cloned()
                }
            })
            .collect::<Option<Vec<_>>>()
    })();
    TInfo::new(d.elem, shape).with_value(d.value.clone())
}

pub(super) fn squeeze(n: &NodeProto, d: &TInfo, axes_in: Option<Input<'_>>) -> TInfo {
    let shape = (|| {
        let s = d.shape.as_deref()?;
        match axes_of(n, axes_in).ok()? {
            Some(axes) => {
                let axes = norm_axes(&axes, s.len())?;
                if axes
                    .iter()
                    .any(|a| matches!(s[*a], IDim::Fixed(v) if v != 1))
                {
                    return None;
                }
                Some(
                    s.iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, d)| d.clone())
                        .collect(),
                )
            }
            // Without axes every dimension of size 1 goes: only known when all are fixed.
            None => s
                .iter()
                .filter(|d| **d != IDim::Fixed(1))
                .map(|d| matches!(d, IDim::Fixed(_)).then(|| d.clone()))
                .collect(),
        }
    })();
    TInfo::new(d.elem, shape).with_value(d.value.clone())
}

pub(super) fn concat(n: &NodeProto, e: i32, ins: &[Input<'_>]) -> TInfo {
    let shapes: Option<Vec<&[IDim]>> = ins
        .iter()
        .filter(|i| !matches!(i, Input::Absent))
        .map(|i| i.get().and_then(|t| t.shape.as_deref()))
        .collect();
    let shape = (|| {
        let shapes = shapes?;
        let r = shapes.first()?.len();
        if shapes.iter().any(|s| s.len() != r) {
            return None;
        }
        let a = norm_axis(attr_i(n, "axis")?, r)?;
        let mut out = Vec::with_capacity(r);
        for k in 0..r {
            let dims = shapes.iter().map(|s| &s[k]);
            out.push(if k == a {
                let mut sum: i64 = 0;
                let mut ok = true;
                for d in dims {
                    match d {
                        IDim::Fixed(v) => match sum.checked_add(*v) {
                            Some(t) => sum = t,
                            None => ok = false,
                        },
                        _ => ok = false,
                    }
                }
                if ok { IDim::Fixed(sum) } else { IDim::Unknown }
            } else {
                // All inputs agree on the other dimensions: any one that is known is right.
                let dims: Vec<&IDim> = dims.collect();
                dims.iter()
                    .find(|d| matches!(d, IDim::Fixed(_)))
                    .or_else(|| dims.iter().find(|d| matches!(d, IDim::Sym(_))))
                    .map_or(IDim::Unknown, |d| (*d).clone())
            });
        }
        Some(out)
    })();
    let value = (shape.as_ref().is_some_and(|s| s.len() == 1))
        .then(|| {
            ins.iter()
                .filter(|i| !matches!(i, Input::Absent))
                .map(|i| i.get().and_then(|t| t.value.clone()))
                .collect::<Option<Vec<_>>>()
                .map(|vs| vs.concat())
        })
        .flatten();
    TInfo::new(e, shape).with_value(value)
}

/// Length of a sliced dimension (ONNX `Slice` semantics, with clamping), or unknown.
pub(super) fn slice_len(dim: &IDim, start: i64, end: i64, step: i64) -> IDim {
    let IDim::Fixed(n) = dim else {
        let whole = (step == 1 && (start == 0 || start == i64::MIN) && end == i64::MAX)
            || (step == -1 && (start == -1 || start == i64::MAX) && end == i64::MIN);
        return if whole { dim.clone() } else { IDim::Unknown };
    };
    slice_range(*n, start, end, step).map_or(IDim::Unknown, |(_, _, len)| IDim::Fixed(len))
}

/// (first index, step, count) of a slice of a dimension of size `n`.
pub(super) fn slice_range(n: i64, start: i64, end: i64, step: i64) -> Option<(i64, i64, i64)> {
    if step == 0 || n < 0 {
        return None;
    }
    if n == 0 {
        return Some((0, step, 0));
    }
    let adj = |v: i64| if v < 0 { v.checked_add(n) } else { Some(v) };
    let (s, e) = (adj(start)?, adj(end)?);
    let len = if step > 0 {
        let (s, e) = (s.clamp(0, n), e.clamp(0, n));
        if e > s { (e - s - 1) / step + 1 } else { 0 }
    } else {
        let (s, e) = (s.clamp(0, n - 1), e.clamp(-1, n - 1));
        let st = step.checked_neg()?;
        if s > e { (s - e - 1) / st + 1 } else { 0 }
    };
    let first = if step > 0 {
        s.clamp(0, n)
    } else {
        s.clamp(0, n - 1)
    };
    Some((first, step, len))
}

pub(super) fn slice(n: &NodeProto, d: &TInfo, ins: &[Input<'_>], opset: Option<i64>) -> TInfo {
    let Some(s) = d.shape.as_deref() else {
        return TInfo::new(d.elem, None);
    };
    let from_input = |k: usize| ins.get(k).and_then(|i| i.get()).and_then(TInfo::ints);
    let present = |k: usize| matches!(ins.get(k), Some(Input::Known(_) | Input::Untyped(_)));
    let old = opset.is_some_and(|v| v < 10) || attr(n, "starts").is_some();
    let (starts, ends, axes, steps) = if old {
        (
            attr_ints(n, "starts").map(<[i64]>::to_vec),
            attr_ints(n, "ends").map(<[i64]>::to_vec),
            attr_ints(n, "axes").map(<[i64]>::to_vec),
            None,
        )
    } else {
        (from_input(1), from_input(2), from_input(3), from_input(4))
    };
    let axes_known = !old && present(3) && axes.is_none();
    let unknown_all = || TInfo::new(d.elem, Some(vec![IDim::Unknown; s.len()]));
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return unknown_all();
    };
    if axes_known || starts.len() != ends.len() || (!old && present(4) && steps.is_none()) {
        return unknown_all();
    }
    let axes = axes.unwrap_or_else(|| {
        (0..starts.len())
            .filter_map(|i| i64::try_from(i).ok())
            .collect()
    });
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    let (Some(axes), true) = (
        norm_axes(&axes, s.len()),
        steps.len() == starts.len() && axes.len() == starts.len(),
    ) else {
        return TInfo::new(d.elem, None);
    };
    let mut out = s.to_vec();
    for (k, a) in axes.iter().enumerate() {
        if steps[k] == 0 {
            return TInfo::new(d.elem, None);
        }
        out[*a] = slice_len(&s[*a], starts[k], ends[k], steps[k]);
    }
    let value = (s.len() == 1 && axes == [0])
        .then(|| {
            let v = d.value.as_ref()?;
            let len = i64::try_from(v.len()).ok()?;
            let (first, step, count) = slice_range(len, starts[0], ends[0], steps[0])?;
            (0..count)
                .map(|i| {
                    let idx = first.checked_add(i.checked_mul(step)?)?;
                    v.get(usize::try_from(idx).ok()?).cloned()
                })
                .collect::<Option<Vec<_>>>()
        })
        .flatten();
    TInfo::new(d.elem, Some(out)).with_value(value)
}

pub(super) fn split(
    n: &NodeProto,
    d: Option<&TInfo>,
    sizes_in: Option<&TInfo>,
) -> Vec<Option<TInfo>> {
    let Some(d) = d else {
        return Vec::new();
    };
    let k = n.output.len();
    let sizes = attr_ints(n, "split")
        .map(<[i64]>::to_vec)
        .or_else(|| sizes_in.and_then(TInfo::ints));
    let axis = attr_i(n, "axis").unwrap_or(0);
    (0..k)
        .map(|i| {
            let shape = d.shape.as_deref().map(|s| {
                let mut o = s.to_vec();
                if let Some(a) = norm_axis(axis, s.len()) {
                    o[a] = match (&sizes, &s[a]) {
                        (Some(sz), _) if sz.len() == k && sz[i] >= 0 => IDim::Fixed(sz[i]),
                        (None, IDim::Fixed(len)) => match i64::try_from(k) {
                            Ok(kk) if kk > 0 && len % kk == 0 => IDim::Fixed(len / kk),
                            _ => IDim::Unknown,
                        },
                        _ => IDim::Unknown,
                    };
                    Some(o)
                } else {
                    None
                }
            });
            Some(TInfo::new(d.elem, shape.flatten()))
        })
        .collect()
}

pub(super) fn range(
    e: i32,
    start: Option<&TInfo>,
    limit: Option<&TInfo>,
    delta: Option<&TInfo>,
) -> TInfo {
    let one = |t: Option<&TInfo>| t.and_then(TInfo::ints).and_then(|v| v.first().copied());
    let len = match (one(start), one(limit), one(delta)) {
        (Some(s), Some(l), Some(d)) if d != 0 => (|| {
            // ceil(span / d), at least 0
            let span = l.checked_sub(s)?;
            let q = span.checked_div(d)?;
            let up = span.checked_rem(d)? != 0 && (span < 0) == (d < 0);
            let q = if up { q.checked_add(1)? } else { q };
            Some(IDim::Fixed(q.max(0)))
        })()
        .unwrap_or(IDim::Unknown),
        // Range(0, n, 1) with n a symbolic size (positions 0..seq): n elements.
        (Some(0), None, Some(1)) => match limit.and_then(|t| t.value.as_deref()) {
            Some([d @ IDim::Sym(_)]) => d.clone(),
            _ => IDim::Unknown,
        },
        _ => IDim::Unknown,
    };
    TInfo::new(e, Some(vec![len]))
}

pub(super) fn flatten(n: &NodeProto, s: Option<&[IDim]>) -> Option<Vec<IDim>> {
    let s = s?;
    let r = i64::try_from(s.len()).ok()?;
    let axis = attr_i(n, "axis").unwrap_or(1);
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    let a = usize::try_from(a).ok().filter(|a| *a <= s.len())?;
    Some(vec![product(&s[..a]), product(&s[a..])])
}
