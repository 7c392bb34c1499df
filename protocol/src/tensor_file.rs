//! Tensor files (§3.5): numpy `.npy`, numpy `.npz` archives of `.npy` files, and quorate's
//! JSON tensor list.
//!
//! The parsers are strict and bounded: sizes are checked against [`MAX_FILE_LEN`] and the
//! tensor limits before anything is allocated, and they never panic on any input (fuzzed).

use serde_json::{Map, Value, json};

use crate::tensor::{DType, MAX_RANK, Tensor, TensorError, element_count};
use quorate_crypto::tensor_digest::SALT_LEN;

/// Largest tensor file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 256 << 20;
/// Largest `.npy` header accepted, in bytes.
pub const MAX_NPY_HEADER: usize = 1 << 16;
/// Most tensors one JSON file may hold.
pub const MAX_TENSORS: usize = 256;

/// Errors reading tensor files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorFileError {
    /// Larger than [`MAX_FILE_LEN`].
    #[error("file of {0} bytes exceeds the {MAX_FILE_LEN}-byte limit")]
    TooLarge(usize),
    /// Not an `.npy` file, or a malformed header.
    #[error("not a valid .npy file: {0}")]
    Npy(String),
    /// An `.npy` feature quorate does not accept, with what to do instead.
    #[error("unsupported .npy file: {0}")]
    NpyUnsupported(String),
    /// Not a valid `.npz` archive: a broken zip, a bad member, or a member that is not `.npy`.
    #[error("not a valid .npz file: {0}")]
    Npz(String),
    /// Not valid JSON, or not the tensor-list shape.
    #[error("not a valid tensor JSON file: {0}")]
    Json(String),
    /// A value does not fit the declared element type.
    #[error("tensor {name:?}, element {index}: {problem}")]
    Element {
        /// Tensor name.
        name: String,
        /// Element index (row-major).
        index: usize,
        /// What was wrong.
        problem: String,
    },
    /// The tensor itself is invalid.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// A tensor read from a file, with the salt of its commitment when the file carries one.
#[derive(Debug, Clone, PartialEq)]
pub struct RevealedTensor {
    /// The tensor.
    pub tensor: Tensor,
    /// The salt of its §3.3 commitment, if salted.
    pub salt: Option<[u8; SALT_LEN]>,
}

/// Sniffs the format: `.npy` by its magic, `.npz` by the zip magic, otherwise JSON. A `.npy`
/// file feeds the input `npy_name`; a `.npz` names its tensors itself (§3.5).
pub fn parse_any(bytes: &[u8], npy_name: &str) -> Result<Vec<RevealedTensor>, TensorFileError> {
    if bytes.starts_with(ZIP_MAGIC) {
        Ok(parse_npz(bytes)?
            .into_iter()
            .map(|tensor| RevealedTensor { tensor, salt: None })
            .collect())
    } else if bytes.starts_with(NPY_MAGIC) {
        Ok(vec![RevealedTensor {
            tensor: parse_npy(bytes, npy_name)?,
            salt: None,
        }])
    } else {
        parse_json(bytes)
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Without the `npz` feature (the offline verifier), `.npz` files are refused clearly.
#[cfg(not(feature = "npz"))]
pub fn parse_npz(_bytes: &[u8]) -> Result<Vec<Tensor>, TensorFileError> {
    Err(TensorFileError::Npz(
        "this build reads no .npz files (feature npz of quorate-protocol)".into(),
    ))
}

#[cfg(feature = "npz")]
/// Parses a numpy `.npz` archive (§3.5): a zip of `.npy` files, stored (`np.savez`) or
/// deflated (`np.savez_compressed`). Each member `NAME.npy` is the tensor `NAME`, in archive
/// order. Bounded before allocating: at most [`MAX_TENSORS`] members, each member's and the
/// archive's total decompressed size at most [`MAX_FILE_LEN`], whatever the headers claim.
pub fn parse_npz(bytes: &[u8]) -> Result<Vec<Tensor>, TensorFileError> {
    use std::io::Read;
    if bytes.len() > MAX_FILE_LEN {
        return Err(TensorFileError::TooLarge(bytes.len()));
    }
    let npz = |m: String| TensorFileError::Npz(m);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| npz(format!("not a readable zip archive: {e}")))?;
    if archive.len() > MAX_TENSORS {
        return Err(npz(format!(
            "{} members; at most {MAX_TENSORS}",
            archive.len()
        )));
    }
    if archive.is_empty() {
        return Err(npz("the archive holds no arrays".into()));
    }
    let mut budget = MAX_FILE_LEN as u64;
    let mut out: Vec<Tensor> = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| npz(format!("member #{i}: {e}")))?;
        let file_name = member
            .name()
            .map_err(|e| npz(format!("member #{i} has an unreadable name: {e}")))?
            .to_string();
        let name = file_name
            .strip_suffix(".npy")
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| {
                npz(format!(
                    "member {file_name:?} is not NAME.npy (np.savez writes one per array)"
                ))
            })?
            .to_string();
        if member.is_dir() {
            return Err(npz(format!("member {file_name:?} is a directory")));
        }
        if out.iter().any(|t| t.name() == name) {
            return Err(npz(format!("array {name:?} appears twice")));
        }
        let claimed = member.size();
        if claimed > budget {
            return Err(npz(format!(
                "member {file_name:?} claims {claimed} bytes; the archive may hold at most {MAX_FILE_LEN} in all"
            )));
        }
        // The claimed size bounds the allocation; reading one byte past it catches a member
        // whose data is longer than its header says.
        let mut data = Vec::with_capacity(claimed as usize);
        (&mut member)
            .take(claimed + 1)
            .read_to_end(&mut data)
            .map_err(|e| npz(format!("member {file_name:?}: {e}")))?;
        if data.len() as u64 != claimed {
            return Err(npz(format!(
                "member {file_name:?} holds {} bytes, its header says {claimed}",
                data.len()
            )));
        }
        budget -= claimed;
        let tensor =
            parse_npy(&data, &name).map_err(|e| npz(format!("member {file_name:?}: {e}")))?;
        out.push(tensor);
    }
    Ok(out)
}

/// Parses an `.npy` file (format versions 1.0, 2.0 and 3.0; little-endian, C order).
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Tensor, TensorFileError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(TensorFileError::TooLarge(bytes.len()));
    }
    let npy = |m: &str| TensorFileError::Npy(m.to_string());
    if !bytes.starts_with(NPY_MAGIC) || bytes.len() < 10 {
        return Err(npy("missing the \\x93NUMPY magic"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| npy("truncated header length"))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => {
            return Err(TensorFileError::NpyUnsupported(format!(
                "format version {v}"
            )));
        }
    };
    if header_len > MAX_NPY_HEADER {
        return Err(npy("header longer than 64 KiB"));
    }
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or_else(|| npy("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| npy("header is not UTF-8"))?;
    let descr = dict_value(header, "descr")?;
    let fortran = dict_value(header, "fortran_order")?;
    let shape_text = dict_value(header, "shape")?;
    if fortran != "False" {
        return Err(TensorFileError::NpyUnsupported(
            "fortran_order must be False; save with np.ascontiguousarray(x)".into(),
        ));
    }
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "|i1" | "<i1" => DType::I8,
        "<i2" => DType::I16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|u1" | "<u1" => DType::U8,
        "|b1" => DType::Bool,
        d if d.starts_with('>') => {
            return Err(TensorFileError::NpyUnsupported(format!(
                "big-endian dtype {d}; convert with x.astype(x.dtype.newbyteorder('<'))"
            )));
        }
        d => return Err(TensorFileError::NpyUnsupported(format!("dtype {d}"))),
    };
    let shape = parse_shape(shape_text)?;
    let count = element_count(&shape).ok_or(TensorError::TooLarge {
        name: name.to_string(),
    })?;
    let data = &bytes[header_start + header_len..];
    let expected = count as usize * dtype.size();
    if data.len() != expected {
        return Err(npy(&format!(
            "data is {} bytes, shape {shape:?} of {dtype} needs {expected}",
            data.len()
        )));
    }
    Ok(Tensor::new(name, dtype, shape, data.to_vec())?)
}

/// The text of `'key': value` in a numpy header dict (value up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, TensorFileError> {
    let quoted = format!("'{key}'");
    let start = header
        .find(&quoted)
        .ok_or_else(|| TensorFileError::Npy(format!("header has no {quoted}")))?
        + quoted.len();
    let rest = header[start..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| TensorFileError::Npy(format!("{quoted} is not followed by ':'")))?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
    }
    Err(TensorFileError::Npy(format!(
        "value of {quoted} is not terminated"
    )))
}

fn parse_shape(text: &str) -> Result<Vec<u64>, TensorFileError> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| TensorFileError::Npy(format!("shape {text:?} is not a tuple")))?;
    let shape: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| TensorFileError::Npy(format!("bad dimension {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    if shape.len() > MAX_RANK {
        return Err(TensorFileError::Npy(format!(
            "{} dimensions; at most {MAX_RANK}",
            shape.len()
        )));
    }
    Ok(shape)
}

/// Serialises one tensor as an `.npy` 1.0 file.
pub fn to_npy(tensor: &Tensor) -> Vec<u8> {
    let descr = match tensor.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    };
    let dims: Vec<String> = tensor.shape().iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that magic + len + header + '\n' is a multiple of 64 (numpy's alignment).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + tensor.data().len());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(tensor.data());
    out
}

/// Parses `{"tensors": [{"name", "dtype", "shape", "data", "salt"?}, ...]}` (§3.5).
pub fn parse_json(bytes: &[u8]) -> Result<Vec<RevealedTensor>, TensorFileError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(TensorFileError::TooLarge(bytes.len()));
    }
    let json = |m: String| TensorFileError::Json(m);
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| json(e.to_string()))?;
    let list = doc
        .get("tensors")
        .and_then(Value::as_array)
        .ok_or_else(|| json("expected an object with a \"tensors\" array".into()))?;
    if list.len() > MAX_TENSORS {
        return Err(json(format!(
            "{} tensors; at most {MAX_TENSORS}",
            list.len()
        )));
    }
    let mut out: Vec<RevealedTensor> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = |k: &str| {
            item.get(k)
                .ok_or_else(|| json(format!("tensor #{i} has no \"{k}\"")))
        };
        let name = field("name")?
            .as_str()
            .ok_or_else(|| json(format!("tensor #{i}: name must be a string")))?;
        if out.iter().any(|t| t.tensor.name() == name) {
            return Err(json(format!("tensor name {name:?} appears twice")));
        }
        let dtype_name = field("dtype")?.as_str().unwrap_or_default();
        let dtype = DType::from_name(dtype_name)
            .ok_or_else(|| json(format!("tensor {name:?}: unknown dtype {dtype_name:?}")))?;
        let shape = field("shape")?
            .as_array()
            .filter(|s| s.len() <= MAX_RANK)
            .and_then(|s| s.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| json(format!("tensor {name:?}: shape must be an array of at most {MAX_RANK} unsigned integers")))?;
        let count = element_count(&shape).ok_or(TensorError::TooLarge {
            name: name.to_string(),
        })?;
        let values = field("data")?.as_array().ok_or_else(|| {
            json(format!(
                "tensor {name:?}: data must be a flat array of numbers"
            ))
        })?;
        if values.len() as u64 != count {
            return Err(json(format!(
                "tensor {name:?}: shape {shape:?} needs {count} values, data has {}",
                values.len()
            )));
        }
        let mut data = Vec::with_capacity(values.len() * dtype.size());
        for (index, v) in values.iter().enumerate() {
            encode_element(dtype, v, &mut data).map_err(|problem| TensorFileError::Element {
                name: name.to_string(),
                index,
                problem,
            })?;
        }
        let salt = match item.get("salt") {
            None | Some(Value::Null) => None,
            Some(s) => Some(
                parse_salt(s)
                    .ok_or_else(|| json(format!("tensor {name:?}: salt must be 64 hex digits")))?,
            ),
        };
        out.push(RevealedTensor {
            tensor: Tensor::new(name, dtype, shape, data)?,
            salt,
        });
    }
    Ok(out)
}

fn parse_salt(v: &Value) -> Option<[u8; SALT_LEN]> {
    hex::decode(v.as_str()?).ok()?.try_into().ok()
}

fn encode_element(dtype: DType, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    // Numbers keep their decimal text (serde_json `arbitrary_precision`), so each float is
    // rounded once, directly to its type, and big integers are exact.
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) if dtype == DType::Bool => (*b as u8).to_string(),
        _ => return Err("must be a number".into()),
    };
    let int = |lo: i128, hi: i128| -> Result<i128, String> {
        let i: i128 = text
            .parse()
            .map_err(|_| format!("{text} is not an integer"))?;
        if (lo..=hi).contains(&i) {
            Ok(i)
        } else {
            Err(format!("{text} is out of range for {dtype}"))
        }
    };
    match dtype {
        DType::F32 => {
            let f: f32 = text
                .parse()
                .map_err(|_| format!("{text} is not a number"))?;
            if !f.is_finite() {
                return Err(format!("{text} overflows float32"));
            }
            out.extend_from_slice(&f.to_le_bytes());
        }
        DType::F64 => {
            let f: f64 = text
                .parse()
                .map_err(|_| format!("{text} is not a number"))?;
            // §3.5: finite only. A literal past f64's range parses as infinity, which JSON
            // cannot write back (found by the tensor_json fuzz target).
            if !f.is_finite() {
                return Err(format!("{text} overflows float64"));
            }
            out.extend_from_slice(&f.to_le_bytes());
        }
        DType::I8 => out.push(int(i8::MIN as i128, i8::MAX as i128)? as i8 as u8),
        DType::I16 => {
            out.extend_from_slice(&(int(i16::MIN as i128, i16::MAX as i128)? as i16).to_le_bytes())
        }
        DType::I32 => {
            out.extend_from_slice(&(int(i32::MIN as i128, i32::MAX as i128)? as i32).to_le_bytes())
        }
        DType::I64 => {
            out.extend_from_slice(&(int(i64::MIN as i128, i64::MAX as i128)? as i64).to_le_bytes())
        }
        DType::U8 => out.push(int(0, 255)? as u8),
        DType::Bool => out.push(int(0, 1)? as u8),
    }
    Ok(())
}

/// One tensor as a JSON object in the §3.5 format, with its commitment digest and salt.
pub fn tensor_json(tensor: &Tensor, salt: Option<&[u8; SALT_LEN]>) -> Value {
    let s = tensor.dtype().size();
    let data: Vec<Value> = tensor
        .data()
        .chunks_exact(s)
        .map(|c| match tensor.dtype() {
            DType::F32 => json!(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DType::F64 => json!(f64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            ])),
            DType::I8 => json!(c[0] as i8),
            DType::I16 => json!(i16::from_le_bytes([c[0], c[1]])),
            DType::I32 => json!(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DType::I64 => json!(i64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            ])),
            DType::U8 | DType::Bool => json!(c[0]),
        })
        .collect();
    let mut obj = Map::new();
    obj.insert("name".into(), json!(tensor.name()));
    obj.insert("dtype".into(), json!(tensor.dtype().name()));
    obj.insert("shape".into(), json!(tensor.shape()));
    obj.insert("data".into(), Value::Array(data));
    obj.insert("digest".into(), json!(hex::encode(tensor.digest(salt))));
    if let Some(salt) = salt {
        obj.insert("salt".into(), json!(hex::encode(salt)));
    }
    Value::Object(obj)
}

/// A whole tensor-list document.
pub fn tensors_json<'a>(
    tensors: impl IntoIterator<Item = (&'a Tensor, Option<&'a [u8; SALT_LEN]>)>,
) -> Value {
    json!({ "tensors": tensors.into_iter().map(|(t, s)| tensor_json(t, s)).collect::<Vec<_>>() })
}

/// [`tensors_json`] of tensors and the optional salt list that travels with them in requests
/// and responses (§11.3): tensor `i` is written with salt `i`, or plain when there is none.
pub fn salted_tensors_json(tensors: &[Tensor], salts: Option<&[[u8; SALT_LEN]]>) -> Value {
    tensors_json(
        tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t, salts.and_then(|s| s.get(i)))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_every_dtype() {
        for dtype in DType::ALL {
            let data = vec![1u8; 6 * dtype.size()];
            let t = Tensor::new("x", dtype, vec![2, 3], data).unwrap();
            assert_eq!(parse_npy(&to_npy(&t), "x").unwrap(), t);
        }
        let t = Tensor::new("v", DType::I64, vec![3], vec![0; 24]).unwrap();
        assert_eq!(parse_npy(&to_npy(&t), "v").unwrap(), t);
    }

    #[test]
    fn npy_rejects_bad_files() {
        let t = Tensor::from_f32("x", vec![2], &[1.0, 2.0]).unwrap();
        let good = to_npy(&t);
        assert!(parse_npy(&good[..good.len() - 1], "x").is_err());
        assert!(parse_npy(&good[..9], "x").is_err());
        let replace = |from: &[u8], to: &[u8]| {
            let at = good.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = good.clone();
            b[at..at + from.len()].copy_from_slice(to);
            b
        };
        let fortran = replace(b"False", b"True ");
        assert!(matches!(
            parse_npy(&fortran, "x"),
            Err(TensorFileError::NpyUnsupported(_))
        ));
        let big = replace(b"<f4", b">f4");
        assert!(matches!(
            parse_npy(&big, "x"),
            Err(TensorFileError::NpyUnsupported(_))
        ));
    }

    #[test]
    fn json_roundtrip_is_bit_exact() {
        let vals = [0.1f32, -3.4028235e38, 1.0e-45, 0.33333334, 7.0];
        let t = Tensor::from_f32("p", vec![5], &vals).unwrap();
        let salt = [9u8; 32];
        let doc = tensors_json([(&t, Some(&salt))]);
        let back = parse_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            back,
            vec![RevealedTensor {
                tensor: t,
                salt: Some(salt)
            }]
        );
    }

    #[test]
    fn json_rejects_bad_values() {
        let bad = [
            r#"{"tensors":[{"name":"x","dtype":"uint8","shape":[1],"data":[256]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"int32","shape":[1],"data":[1.5]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float32","shape":[2],"data":[1]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float32","shape":[1],"data":[1e39]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float64","shape":[1],"data":[1e309]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float64","shape":[1],"data":[-13.8e24219]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"complex","shape":[1],"data":[1]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float32","shape":[1],"data":["1"]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float32","shape":[1],"data":[1]},{"name":"x","dtype":"float32","shape":[1],"data":[1]}]}"#,
            r#"{"tensors":[{"name":"x","dtype":"float32","shape":[4294967296,4294967296],"data":[]}]}"#,
            r#"[1,2]"#,
        ];
        for b in bad {
            assert!(parse_json(b.as_bytes()).is_err(), "accepted {b}");
        }
    }

    #[cfg(feature = "npz")]
    fn npz(members: &[(&str, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in members {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[cfg(feature = "npz")]
    fn three_inputs() -> Vec<Tensor> {
        let ids: Vec<u8> = (0..8i64).flat_map(|v| (v * 7).to_le_bytes()).collect();
        vec![
            Tensor::new("input_ids", DType::I64, vec![1, 8], ids).unwrap(),
            Tensor::new(
                "attention_mask",
                DType::I64,
                vec![1, 8],
                [1i64; 8].iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
            .unwrap(),
            Tensor::from_f32("scale", vec![2], &[0.5, -1.25]).unwrap(),
        ]
    }

    #[test]
    #[cfg(feature = "npz")]
    fn npz_stored_and_deflated_give_every_array_by_name_in_order() {
        let tensors = three_inputs();
        let members: Vec<(String, Vec<u8>)> = tensors
            .iter()
            .map(|t| (format!("{}.npy", t.name()), to_npy(t)))
            .collect();
        let members: Vec<(&str, Vec<u8>)> = members
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let bytes = npz(&members, method);
            assert_eq!(parse_npz(&bytes).unwrap(), tensors, "{method:?}");
            // parse_any sniffs the zip magic; the .npy name argument does not apply.
            let any: Vec<Tensor> = parse_any(&bytes, "ignored")
                .unwrap()
                .into_iter()
                .map(|r| r.tensor)
                .collect();
            assert_eq!(any, tensors);
        }
        let deflated = npz(&members, zip::CompressionMethod::Deflated);
        let stored = npz(&members, zip::CompressionMethod::Stored);
        assert!(deflated.len() < stored.len(), "deflate really compressed");
    }

    #[test]
    #[cfg(feature = "npz")]
    fn npz_refuses_bad_archives_with_npz_errors() {
        let t = Tensor::from_f32("x", vec![4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let good = npz(&[("x.npy", to_npy(&t))], zip::CompressionMethod::Stored);
        let is_npz =
            |r: Result<Vec<Tensor>, TensorFileError>| matches!(r, Err(TensorFileError::Npz(_)));
        // Truncated anywhere: the central directory or the member data is missing.
        for cut in [good.len() - 1, good.len() - 30, good.len() / 2, 10] {
            assert!(is_npz(parse_npz(&good[..cut])), "cut at {cut}");
        }
        // A flipped data byte fails the member's CRC-32.
        let mut flipped = good.clone();
        let at = good
            .windows(4)
            .position(|w| w == 1.0f32.to_le_bytes())
            .unwrap();
        flipped[at] ^= 0x40;
        assert!(is_npz(parse_npz(&flipped)));
        // Members that are not NAME.npy, empty archives, bad .npy inside.
        let other = npz(&[("x.txt", to_npy(&t))], zip::CompressionMethod::Stored);
        assert!(is_npz(parse_npz(&other)));
        let nested = npz(&[("dir/x.npy", to_npy(&t))], zip::CompressionMethod::Stored);
        assert!(is_npz(parse_npz(&nested)));
        assert!(is_npz(parse_npz(&npz(&[], zip::CompressionMethod::Stored))));
        let bad_npy = npz(
            &[("x.npy", b"\x93NUMPY\x01\x00".to_vec())],
            zip::CompressionMethod::Deflated,
        );
        assert!(is_npz(parse_npz(&bad_npy)));
        // A central directory claiming a huge member is refused before anything is allocated.
        let mut huge = good.clone();
        let cd = good.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        for field in [cd + 20, cd + 24] {
            huge[field..field + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        }
        assert!(parse_npz(&huge).is_err());
        // Too many members.
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_TENSORS)
            .map(|i| (format!("t{i}.npy"), to_npy(&t)))
            .collect();
        let many: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        assert!(is_npz(parse_npz(&npz(
            &many,
            zip::CompressionMethod::Stored
        ))));
    }
}
