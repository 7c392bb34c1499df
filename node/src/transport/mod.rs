//! QUIC transport: quinn endpoints with Ed25519 identities pinned from the roster (§7).
