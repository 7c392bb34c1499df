//! QUIC transport: quinn endpoints with Ed25519 identities pinned from the roster (§7).
//!
//! - [`tls`]: the certificate profile (§7.2) and the pinned-key verifiers (§7.3);
//! - [`endpoint`]: endpoints, connections, the stream-per-request exchange and the accept
//!   loop (§7.4–§7.7), driving the sans-IO frame codec of `quorate_protocol::wire` (§8).
//!
//! Typical use by a node:
//!
//! ```text
//! let identity = Arc::new(TlsIdentity::from_secret_key(&node_key)?);
//! let pinned = PinnedKeys::from_keys(roster_keys);
//! let endpoint = bind_server(listen_addr, identity, pinned, TransportSettings::default())?;
//! tokio::spawn({ let e = endpoint.clone(); async move { e.serve(handler).await } });
//! let conn = endpoint.connect(peer_addr, &peer_key).await?;
//! let response = conn.request(&request_bytes, timeout).await?;
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod deadline;
pub mod endpoint;
pub mod error;
mod exchange;
pub mod log_throttle;
pub mod settings;
pub mod tls;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

pub use endpoint::{MeshEndpoint, Observer, PeerConnection, ServerEvent, bind_client, bind_server};
pub use error::TransportError;
pub use exchange::{request, request_with_limit, request_within};
pub use settings::TransportSettings;
pub use tls::{ALPN, PeerRefusal, PinnedKeys, TlsError, TlsIdentity, peer_key, public_key_of};
