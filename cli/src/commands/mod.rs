//! The subcommands of `quorate`, one module each.

pub mod calibrate;
pub mod demo;
pub mod demo_ensemble;
#[cfg(feature = "fhe")]
pub mod demo_fhe;
pub mod demo_pipeline;
pub mod demo_verified;
pub mod ensemble;
#[cfg(feature = "fhe")]
pub mod fhe;
pub mod gen_model;
pub mod infer;
pub mod infer_verified;
pub mod keygen;
pub mod node;
pub mod node_check;
pub mod pipeline;
pub mod roster;
pub mod run;
pub mod run_batch;
pub mod session;
pub mod split;
pub mod verify;
pub mod verify_bundles;
pub mod verify_serve;
pub mod verify_tlog;
