//! Converting between quorate tensors (§3.1: little-endian element bytes) and ORT values.
//!
//! A run's inputs are lent to ORT in place when the bytes can be read as the element type
//! (a little-endian machine and a suitably aligned buffer, checked by `bytemuck`, never
//! assumed), and copied element by element otherwise; outputs are copied out in one piece.
//! Small models spend as long converting as running, so both directions avoid per-element
//! work where they can.

use anyhow::{anyhow, bail};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Shape, Tensor as OrtTensor, TensorRef, ValueType};
use quorate_protocol::tensor::{DType, Tensor};

use crate::session::to_dtype;

/// Whether element bytes in memory are already the §3.1 little-endian encoding.
const NATIVE_IS_LE: bool = cfg!(target_endian = "little");

macro_rules! le_vec {
    ($t:ty, $data:expr) => {
        $data
            .chunks_exact(std::mem::size_of::<$t>())
            .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect::<Vec<$t>>()
    };
}

/// An ORT input over `t`: a view of its bytes where they can be read in place, else a copy.
pub(crate) fn to_ort(t: &Tensor) -> anyhow::Result<SessionInputValue<'_>> {
    // Ranks up to 4 stay inline in ORT's shape type: no allocation.
    let shape = Shape::new(t.shape().iter().map(|&d| d as i64));
    let d = t.data();
    macro_rules! view_or_copy {
        ($t:ty) => {
            match bytemuck::try_cast_slice::<u8, $t>(d) {
                Ok(view) if NATIVE_IS_LE => TensorRef::from_array_view((shape, view))?.into(),
                _ => OrtTensor::from_array((shape, le_vec!($t, d)))?.into(),
            }
        };
    }
    let value = match t.dtype() {
        DType::F32 => view_or_copy!(f32),
        DType::F64 => view_or_copy!(f64),
        DType::I16 => view_or_copy!(i16),
        DType::I32 => view_or_copy!(i32),
        DType::I64 => view_or_copy!(i64),
        // One-byte types have no byte order and no alignment.
        DType::I8 => TensorRef::from_array_view((shape, bytemuck::cast_slice::<u8, i8>(d)))?.into(),
        DType::U8 => TensorRef::from_array_view((shape, d))?.into(),
        // `bool` is not plain data to bytemuck (only 0 and 1 are valid), so it is copied.
        DType::Bool => {
            OrtTensor::from_array((shape, d.iter().map(|&b| b != 0).collect::<Vec<bool>>()))?
                .into()
        }
        other => bail!("unsupported input type {other}"),
    };
    Ok(value)
}

/// Little-endian bytes of `data`: one copy on a little-endian machine.
fn le_bytes<T: bytemuck::Pod, const N: usize>(data: &[T], to_le: fn(T) -> [u8; N]) -> Vec<u8> {
    if NATIVE_IS_LE {
        bytemuck::cast_slice::<T, u8>(data).to_vec()
    } else {
        data.iter().flat_map(|&x| to_le(x)).collect()
    }
}

/// The quorate tensor named `name` holding ORT's output `v`.
pub(crate) fn from_ort(name: &str, v: &DynValue) -> anyhow::Result<Tensor> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        bail!("output {name:?} is not a tensor");
    };
    let dtype =
        to_dtype(*ty).ok_or_else(|| anyhow!("output {name:?} has unsupported type {ty:?}"))?;
    macro_rules! bytes_of {
        ($t:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$t>()?;
            (shape, le_bytes(data, <$t>::to_le_bytes))
        }};
    }
    let (shape, data) = match dtype {
        DType::F32 => bytes_of!(f32),
        DType::F64 => bytes_of!(f64),
        DType::I8 => bytes_of!(i8),
        DType::I16 => bytes_of!(i16),
        DType::I32 => bytes_of!(i32),
        DType::I64 => bytes_of!(i64),
        DType::U8 => bytes_of!(u8),
        DType::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>()?;
            (shape, data.iter().map(|&b| u8::from(b)).collect())
        }
        other => bail!("unsupported output type {other}"),
    };
    let shape = shape.iter().map(|&d| d as u64).collect();
    Ok(Tensor::new(name, dtype, shape, data)?)
}
