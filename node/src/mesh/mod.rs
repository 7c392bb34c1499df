//! The mesh: node server, client, configuration (§10–§12).

pub mod client;
pub mod config;
pub mod ensemble;
pub mod ensemble_client;
pub mod job_table;
pub mod misbehave;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod verified;
