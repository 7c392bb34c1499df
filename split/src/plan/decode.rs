//! Decoding the model to split, bounded in size and refusing weights kept in external files
//! (§13.1).

use prost::Message;

use crate::onnx::{GraphProto, ModelProto, TensorProto, tensor_proto::DataLocation};

use super::{MAX_MODEL_LEN, SplitError};

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
