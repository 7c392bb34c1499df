//! The mesh: node server, client, configuration (§10–§12).

pub mod admission;
pub mod client;
pub mod config;
pub mod ensemble;
pub mod ensemble_client;
pub mod infer_service;
pub mod inline_cost;
pub mod job_table;
pub mod log_client;
pub mod log_service;
#[cfg(feature = "test-util")]
pub mod misbehave;
pub mod models;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod verified;
