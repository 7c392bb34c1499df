//! The `stages.json` manifest of a split (§13.1): each stage's file, digest, inputs and
//! outputs with dtypes and shapes, and the carried tensors.

use std::path::Path;

use serde_json::{Value, json};

use crate::plan::{Dim, Role, Source, Split, TensorInfo};

/// Format tag of `stages.json` (§13.1).
pub const STAGES_FORMAT: &str = "quorate-stages/1";

/// `stage-N.onnx`.
pub fn stage_file(index: usize) -> String {
    format!("stage-{index}.onnx")
}

fn dims_json(info: &TensorInfo) -> Value {
    match &info.shape {
        None => Value::Null,
        Some(dims) => Value::Array(
            dims.iter()
                .map(|d| match d {
                    Dim::Fixed(n) => json!(n),
                    Dim::Symbolic(s) => json!(s),
                    Dim::Unknown => Value::Null,
                })
                .collect(),
        ),
    }
}

// The manifest's structs, so that its keys keep this reading order in the file.
#[derive(serde::Serialize)]
struct Manifest<'a> {
    format: &'static str,
    source: SourceJson,
    cuts: &'a [Vec<String>],
    stages: Vec<StageJson>,
    carried: Vec<CarriedJson<'a>>,
}

#[derive(serde::Serialize)]
struct SourceJson {
    file: String,
    sha256: String,
}

#[derive(serde::Serialize)]
struct StageJson {
    index: usize,
    file: String,
    sha256: String,
    nodes: usize,
    initializers: usize,
    inputs: Vec<IoJson>,
    outputs: Vec<IoJson>,
}

#[derive(serde::Serialize)]
struct IoJson {
    name: String,
    dtype: String,
    shape: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct CarriedJson<'a> {
    name: &'a str,
    from: usize,
    to: &'a [usize],
}

fn io_json(info: &TensorInfo, from: Option<Value>, role: Option<&'static str>) -> IoJson {
    IoJson {
        name: info.name.clone(),
        dtype: info.dtype.clone(),
        shape: dims_json(info),
        from,
        role,
    }
}

/// The text of `stages.json` (§13.1), keys in reading order.
pub fn stages_json_text(
    model: &Path,
    cuts: &[Vec<String>],
    split: &Split,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(&manifest(model, cuts, split))
}

fn manifest<'a>(model: &Path, cuts: &'a [Vec<String>], split: &'a Split) -> Manifest<'a> {
    let stages = split
        .stages
        .iter()
        .map(|s| StageJson {
            index: s.index,
            file: stage_file(s.index),
            sha256: hex::encode(s.digest),
            nodes: s.nodes,
            initializers: s.initializers,
            inputs: s
                .inputs
                .iter()
                .map(|(i, src)| {
                    let from = match src {
                        Source::GraphInput => json!("input"),
                        Source::Stage(k) => json!(k),
                    };
                    io_json(i, Some(from), None)
                })
                .collect(),
            outputs: s
                .outputs
                .iter()
                .map(|(i, role)| {
                    let role = match role {
                        Role::Cut => "cut",
                        Role::GraphOutput => "output",
                        Role::Carried => "carried",
                    };
                    io_json(i, None, Some(role))
                })
                .collect(),
        })
        .collect();
    Manifest {
        format: STAGES_FORMAT,
        source: SourceJson {
            file: model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: hex::encode(split.source_digest),
        },
        cuts,
        stages,
        carried: split
            .carried
            .iter()
            .map(|c| CarriedJson {
                name: &c.name,
                from: c.from,
                to: &c.to,
            })
            .collect(),
    }
}
