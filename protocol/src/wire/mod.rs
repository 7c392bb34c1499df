//! Wire framing and messages of the mesh protocol (§8).
//!
//! - [`frame`]: the length-prefixed frame codec (§8.1–§8.3), with an incremental decoder;
//! - [`codes`]: application error codes for QUIC stream resets and connection closes (§7.7);
//! - [`fuzzing`]: hooks for the `wire_*` fuzz targets.

pub mod codes;
pub mod frame;
pub mod fuzzing;

pub use codes::{CloseCode, StreamCode};
pub use frame::{FRAME_HEADER_LEN, FrameDecoder, FrameError, MAX_FRAME_LEN};
