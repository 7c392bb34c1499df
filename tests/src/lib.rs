//! End-to-end and conformance tests of quorate live in `tests/tests/`.
#![forbid(unsafe_code)]
