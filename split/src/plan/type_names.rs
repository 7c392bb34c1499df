//! Naming ONNX types for stage interfaces and messages (§13.1, *Types*).

use crate::onnx::{TypeProto, ValueInfoProto, tensor_shape_proto::dimension, type_proto};

use super::{Dim, TensorInfo};

pub(super) fn type_known(t: Option<&TypeProto>) -> bool {
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

pub(super) fn describe(vi: &ValueInfoProto) -> TensorInfo {
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
