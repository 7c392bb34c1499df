//! Wire framing and messages of the mesh protocol (§8).
