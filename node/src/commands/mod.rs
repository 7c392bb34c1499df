//! The subcommands of `quorate`, one module each.

pub mod demo;
#[cfg(feature = "fhe")]
pub mod demo_fhe;
#[cfg(feature = "fhe")]
pub mod fhe;
pub mod infer;
pub mod keygen;
pub mod node;
pub mod roster;
pub mod run;
pub mod split;
pub mod verify;
