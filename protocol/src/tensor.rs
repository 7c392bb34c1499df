//! Tensors as quorate commits to them (§3): element type, shape, little-endian data.

use std::sync::Arc;

use quorate_crypto::tensor_digest::{Digest32, SALT_LEN, tensor_digest};
use smallvec::SmallVec;

/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;
/// Most elements a tensor may have (64 Mi): bounds every allocation made for a peer.
pub const MAX_ELEMENTS: u64 = 1 << 26;
/// Longest tensor name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Element types (§3.1). The code is part of the commitment and must never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// Two's-complement 8-bit.
    I8,
    /// Two's-complement 16-bit.
    I16,
    /// Two's-complement 32-bit.
    I32,
    /// Two's-complement 64-bit.
    I64,
    /// Unsigned 8-bit.
    U8,
    /// Boolean, one byte (0 or 1).
    Bool,
}

impl DType {
    /// Every type, for table-driven code.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
    ];

    /// The §3.1 code.
    pub fn code(self) -> u8 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I8 => 3,
            DType::I16 => 4,
            DType::I32 => 5,
            DType::I64 => 6,
            DType::U8 => 7,
            DType::Bool => 8,
        }
    }

    /// The type of a §3.1 code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The name used in JSON files (numpy's spelling).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Parses a numpy-style name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors building a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// More than [`MAX_RANK`] dimensions.
    #[error("tensor {name:?} has {rank} dimensions; at most {MAX_RANK} are supported")]
    Rank {
        /// Tensor name.
        name: String,
        /// Its rank.
        rank: usize,
    },
    /// More than [`MAX_ELEMENTS`] elements (or the product overflows).
    #[error("tensor {name:?} has more than {MAX_ELEMENTS} elements")]
    TooLarge {
        /// Tensor name.
        name: String,
    },
    /// Data length does not match shape × element size.
    #[error("tensor {name:?}: shape {shape:?} of {dtype} needs {expected} bytes, found {found}")]
    DataLength {
        /// Tensor name.
        name: String,
        /// Its element type.
        dtype: DType,
        /// Its shape.
        shape: Vec<u64>,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        found: usize,
    },
    /// Name empty or too long.
    #[error("tensor name must be 1 to {MAX_NAME_LEN} bytes")]
    Name,
    /// A boolean element other than 0 or 1.
    #[error("tensor {name:?}: boolean elements must be 0 or 1")]
    BoolValue {
        /// Tensor name.
        name: String,
    },
}

/// A named tensor with validated shape and data.
///
/// The name is shared rather than copied, and a shape of up to four dimensions is kept
/// inline: a batch of small runs (§12.10.1) would otherwise spend as much time allocating and
/// freeing names and shapes as running the model.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    name: Arc<str>,
    dtype: DType,
    shape: Shape,
    data: Vec<u8>,
}

/// A tensor's dimensions, inline up to rank 4.
type Shape = SmallVec<[u64; 4]>;

impl std::fmt::Debug for Tensor {
    // Tensors may hold patient data: Debug shows the shape, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {:?})",
            self.name, self.dtype, self.shape
        )
    }
}

/// A name of 1 to [`MAX_NAME_LEN`] bytes.
fn check_name(name: &str) -> Result<(), TensorError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(TensorError::Name);
    }
    Ok(())
}

/// Element count of `shape`, if within [`MAX_ELEMENTS`].
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

impl Tensor {
    /// Builds a tensor, checking rank, size, data length and boolean values.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<u64>,
        data: Vec<u8>,
    ) -> Result<Self, TensorError> {
        let name = name.into();
        check_name(&name)?;
        Self::checked(Arc::from(name), dtype, Shape::from_vec(shape), data)
    }

    /// [`Self::new`] with a name shared with other tensors (a model's output name, say), so
    /// that building one allocates only its data.
    pub fn with_shared_name(
        name: &Arc<str>,
        dtype: DType,
        shape: impl IntoIterator<Item = u64>,
        data: Vec<u8>,
    ) -> Result<Self, TensorError> {
        check_name(name)?;
        Self::checked(name.clone(), dtype, shape.into_iter().collect(), data)
    }

    fn checked(
        name: Arc<str>,
        dtype: DType,
        shape: Shape,
        data: Vec<u8>,
    ) -> Result<Self, TensorError> {
        if shape.len() > MAX_RANK {
            return Err(TensorError::Rank {
                name: name.to_string(),
                rank: shape.len(),
            });
        }
        let Some(count) = element_count(&shape) else {
            return Err(TensorError::TooLarge {
                name: name.to_string(),
            });
        };
        let expected = count * dtype.size() as u64;
        if expected != data.len() as u64 {
            return Err(TensorError::DataLength {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
                expected,
                found: data.len(),
            });
        }
        if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
            return Err(TensorError::BoolValue {
                name: name.to_string(),
            });
        }
        Ok(Self {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// Builds an f32 tensor from values.
    pub fn from_f32(
        name: impl Into<String>,
        shape: Vec<u64>,
        values: &[f32],
    ) -> Result<Self, TensorError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, DType::F32, shape, data)
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The shape.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }
    /// Little-endian element bytes, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }
    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Renames the tensor (names are not part of the digest; see §3.2).
    pub fn with_name(mut self, name: impl Into<String>) -> Result<Self, TensorError> {
        let name = name.into();
        check_name(&name)?;
        self.name = Arc::from(name);
        Ok(self)
    }

    /// Elements as f64 for display and tolerance comparison (exact for every type but i64
    /// beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let s = self.dtype.size();
        self.data
            .chunks_exact(s)
            .map(|c| match self.dtype {
                DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                DType::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                DType::I8 => c[0] as i8 as f64,
                DType::I16 => i16::from_le_bytes([c[0], c[1]]) as f64,
                DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                DType::I64 => {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                }
                DType::U8 | DType::Bool => c[0] as f64,
            })
            .collect()
    }

    /// The §3.2 commitment (plain) or §3.3 commitment (salted).
    pub fn digest(&self, salt: Option<&[u8; SALT_LEN]>) -> Digest32 {
        tensor_digest(self.dtype.code(), &self.shape, &self.data, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_shape_and_length() {
        assert!(Tensor::new("x", DType::F32, vec![1, 2], vec![0; 8]).is_ok());
        assert!(matches!(
            Tensor::new("x", DType::F32, vec![1, 2], vec![0; 7]),
            Err(TensorError::DataLength { .. })
        ));
        assert!(matches!(
            Tensor::new("x", DType::F32, vec![u64::MAX, 2], vec![]),
            Err(TensorError::TooLarge { .. })
        ));
        assert!(matches!(
            Tensor::new("x", DType::U8, vec![1; 9], vec![0]),
            Err(TensorError::Rank { .. })
        ));
        assert!(matches!(
            Tensor::new("", DType::U8, vec![1], vec![0]),
            Err(TensorError::Name)
        ));
        assert!(matches!(
            Tensor::new("b", DType::Bool, vec![1], vec![2]),
            Err(TensorError::BoolValue { .. })
        ));
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
    }

    /// A tensor built with a shared name is the tensor `new` builds, and is checked alike.
    #[test]
    fn a_shared_name_builds_the_same_checked_tensor() {
        let name: Arc<str> = Arc::from("logits");
        let shared = Tensor::with_shared_name(&name, DType::F32, [1, 2], vec![0; 8]).unwrap();
        assert_eq!(
            shared,
            Tensor::new("logits", DType::F32, vec![1, 2], vec![0; 8]).unwrap()
        );
        assert_eq!(
            shared.digest(None),
            Tensor::new("x", DType::F32, vec![1, 2], vec![0; 8])
                .unwrap()
                .digest(None)
        );
        let deep = [1u64; 6];
        let t = Tensor::with_shared_name(&name, DType::U8, deep, vec![7]).unwrap();
        assert_eq!(t.shape(), &deep);
        assert!(matches!(
            Tensor::with_shared_name(&name, DType::F32, [1, 2], vec![0; 7]),
            Err(TensorError::DataLength { .. })
        ));
        assert!(matches!(
            Tensor::with_shared_name(&name, DType::U8, [1; 9], vec![0]),
            Err(TensorError::Rank { .. })
        ));
        assert!(matches!(
            Tensor::with_shared_name(&Arc::from(""), DType::U8, [1], vec![0]),
            Err(TensorError::Name)
        ));
        assert!(matches!(
            Tensor::with_shared_name(&name, DType::Bool, [1], vec![2]),
            Err(TensorError::BoolValue { .. })
        ));
    }

    #[test]
    fn debug_hides_values() {
        let t = Tensor::from_f32("secret", vec![1], &[123.5]).unwrap();
        assert!(!format!("{t:?}").contains("123"));
    }
}
