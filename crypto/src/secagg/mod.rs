//! Secure-aggregation primitives (§9).
