//! The `quorate` command: its subcommands, the demo, the benches run as commands, and the
//! local mesh launcher. `src/main.rs` is the thin entry point over this library.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "fhe")]
pub mod bench_fhe;
pub mod bench_hetero;
pub mod bench_mesh;
pub mod bench_poisoning;
pub mod bench_secagg;
pub mod bench_soak;
pub mod commands;
pub mod local;
pub mod verify_files;
