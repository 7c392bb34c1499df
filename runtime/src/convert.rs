//! Converting between quorate tensors (§3.1: little-endian element bytes) and ORT values.
//!
//! A run's inputs are lent to ORT in place when the bytes can be read as the element type
//! (a little-endian machine and a suitably aligned buffer, checked by `bytemuck`, never
//! assumed), and copied element by element otherwise; outputs are copied out in one piece.
//! Small models spend as long converting as running, so both directions avoid per-element
//! work where they can.

use std::sync::Arc;

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
pub fn to_ort(t: &Tensor) -> anyhow::Result<SessionInputValue<'_>> {
    let d = t.data();
    macro_rules! view {
        ($t:ty) => {
            match bytemuck::try_cast_slice::<u8, $t>(d) {
                Ok(view) if NATIVE_IS_LE => TensorRef::from_array_view((shape_of(t), view))?.into(),
                _ => copied(t)?,
            }
        };
    }
    Ok(match t.dtype() {
        DType::F32 => view!(f32),
        DType::F64 => view!(f64),
        DType::I16 => view!(i16),
        DType::I32 => view!(i32),
        DType::I64 => view!(i64),
        // One-byte types have no byte order and no alignment.
        DType::I8 => {
            TensorRef::from_array_view((shape_of(t), bytemuck::cast_slice::<u8, i8>(d)))?.into()
        }
        DType::U8 => TensorRef::from_array_view((shape_of(t), d))?.into(),
        _ => copied(t)?,
    })
}

/// ORT's shape of `t`; ranks up to 4 stay inline, with no allocation.
fn shape_of(t: &Tensor) -> Shape {
    Shape::new(t.shape().iter().map(|&d| d as i64))
}

/// An owned ORT copy of `t`, decoded element by element: for misaligned bytes, a big-endian
/// machine, and `bool` (which is not plain data to bytemuck: only 0 and 1 are valid).
fn copied(t: &Tensor) -> anyhow::Result<SessionInputValue<'static>> {
    let (shape, d) = (shape_of(t), t.data());
    Ok(match t.dtype() {
        DType::F32 => OrtTensor::from_array((shape, le_vec!(f32, d)))?.into(),
        DType::F64 => OrtTensor::from_array((shape, le_vec!(f64, d)))?.into(),
        DType::I8 => OrtTensor::from_array((shape, le_vec!(i8, d)))?.into(),
        DType::I16 => OrtTensor::from_array((shape, le_vec!(i16, d)))?.into(),
        DType::I32 => OrtTensor::from_array((shape, le_vec!(i32, d)))?.into(),
        DType::I64 => OrtTensor::from_array((shape, le_vec!(i64, d)))?.into(),
        DType::U8 => OrtTensor::from_array((shape, d.to_vec()))?.into(),
        DType::Bool => {
            OrtTensor::from_array((shape, d.iter().map(|&b| b != 0).collect::<Vec<bool>>()))?.into()
        }
        other => bail!("unsupported input type {other}"),
    })
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
pub(crate) fn from_ort(name: &Arc<str>, v: &DynValue) -> anyhow::Result<Tensor> {
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
    let shape = shape.iter().map(|&d| d as u64);
    Ok(Tensor::with_shared_name(name, dtype, shape, data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dtype: DType) -> Tensor {
        let data = (0..6 * dtype.size())
            .map(|i| match dtype {
                DType::Bool => (i % 2) as u8,
                _ => (i * 37 + 11) as u8,
            })
            .collect();
        Tensor::new("x", dtype, vec![2, 3], data).unwrap()
    }

    /// Every supported type goes to ORT and back unchanged, lent in place and copied (the
    /// path of bytes that cannot be read in place: misaligned, or on a big-endian machine).
    #[test]
    fn every_dtype_round_trips_in_place_and_copied() {
        crate::environment().unwrap();
        for dtype in DType::ALL {
            let t = sample(dtype);
            assert_eq!(
                from_ort(&"x".into(), &to_ort(&t).unwrap()).unwrap(),
                t,
                "{dtype}"
            );
            assert_eq!(
                from_ort(&"x".into(), &copied(&t).unwrap()).unwrap(),
                t,
                "{dtype} copied"
            );
        }
        // A scalar and an empty tensor too.
        let scalar = Tensor::new("s", DType::I64, vec![], 7i64.to_le_bytes().to_vec()).unwrap();
        assert_eq!(
            from_ort(&"s".into(), &to_ort(&scalar).unwrap()).unwrap(),
            scalar
        );
        let empty = Tensor::new("e", DType::F32, vec![0, 3], vec![]).unwrap();
        assert_eq!(
            from_ort(&"e".into(), &to_ort(&empty).unwrap()).unwrap(),
            empty
        );
    }
}
