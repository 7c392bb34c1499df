//! The subcommands of `quorate`, one module each.

pub mod demo;
pub mod demo_ensemble;
pub mod ensemble;
pub mod infer;
pub mod keygen;
pub mod node;
pub mod roster;
pub mod run;
pub mod split;
pub mod verify;
