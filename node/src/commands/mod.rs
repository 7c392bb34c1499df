//! The subcommands of `quorate`, one module each.

pub mod demo;
pub mod keygen;
pub mod roster;
pub mod run;
pub mod verify;
