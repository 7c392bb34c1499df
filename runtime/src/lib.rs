//! ONNX Runtime for quorate nodes: finding the library, one environment per process,
//! execution providers (§12.2) including the OpenVINO plugin (§12.2.1), sessions, and the attested run that commits inputs and
//! outputs and builds the receipt payload (§4).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attest;
mod convert;
pub mod plugin;
pub mod providers;
mod session;

pub use convert::to_ort;
pub use session::*;
