//! Secure-aggregation messages and state machines (§9).
