//! Cutting an ONNX model into pipeline stage models at named tensors (SPEC §13.1).
//!
//! Pure: the model comes in as bytes and the stages go out as bytes. The graph work lives in
//! [`plan`]; [`infer`] derives the types and shapes of tensors the model does not declare, so
//! models exported without intermediate `value_info` can be cut; [`manifest`] writes the
//! `stages.json` text that describes a split.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

/// ONNX protobuf messages (`onnx-ml.proto` of ONNX 1.23.2), generated code checked in; see
/// `scripts/onnx-proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub mod onnx;
pub mod infer;
pub mod manifest;
pub mod plan;

pub use manifest::{STAGES_FORMAT, stage_file, stages_json_text};
pub use plan::{
    Carried, Dim, MAX_MODEL_LEN, Role, Source, Split, SplitError, SplitOptions, Stage, TensorInfo,
    cut_points, parse_cuts, split_model,
};
/// Re-exported so callers can decode and encode [`onnx`] messages.
pub use prost::Message;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_infer;
