//! The quorate node server and mesh client: admission, dispatch to job services, the audit
//! log, roster reload (§10–§12), and the client side of every job kind.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod audit;
pub mod clock;
pub mod fhe;
pub mod files;
pub mod logging;
pub mod mesh;
pub mod metrics;
#[cfg(test)]
mod test_support;
