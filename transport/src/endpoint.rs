//! QUIC endpoints, connections and the stream-per-request exchange (§7.4–§7.7).
//!
//! This is the thin async driver around the sans-IO frame codec of
//! `quorate_protocol::wire::frame`: it moves bytes between quinn streams and the codec and
//! applies the timeouts of §7.6.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{RecvStream, SendStream, VarInt};
use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::wire::frame::{FrameError, MAX_FRAME_LEN, encode_header};
use quorate_protocol::wire::{CloseCode, StreamCode};

use crate::error::{TransportError, handshake_error};
use crate::exchange::{ReadFailure, read_frame, request};
use crate::settings::TransportSettings;

use crate::tls::{
    ALPN, PeerRefusal, PinnedKeys, TlsError, TlsIdentity, Verdict, client_config, peer_key,
    server_config, server_name_for,
};

/// What the server side observed, for the operator's log (§7.7).
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A peer completed the mutual handshake.
    Connected {
        /// The key it proved.
        peer: KeyId,
        /// Its address.
        remote: SocketAddr,
    },
    /// A handshake failed; nothing was served.
    HandshakeFailed {
        /// The peer's address.
        remote: SocketAddr,
        /// Why.
        error: TransportError,
    },
    /// A client's first Initial was answered with a QUIC Retry to validate its address
    /// (§7.3.1); its handshake starts when it comes back with the token.
    AddressValidation {
        /// The address to be validated.
        remote: SocketAddr,
    },
    /// A request stream was abandoned with a code (§7.7.1).
    StreamAbandoned {
        /// The peer that opened the stream.
        peer: KeyId,
        /// The code sent to it.
        code: StreamCode,
    },
}

/// What [`MeshEndpoint::screen`] decided for an incoming connection.
enum Screened {
    /// Go on to the handshake while holding one of the handshake permits.
    Handshake(Box<quinn::Incoming>, tokio::sync::OwnedSemaphorePermit),
    /// Sent a Retry; the client comes back as a new incoming connection.
    Retried,
    /// Refused before any cryptography.
    Refused(TransportError),
}

/// A callback receiving [`ServerEvent`]s.
pub type Observer = Arc<dyn Fn(&ServerEvent) + Send + Sync>;

/// A check run before each incoming connection is handshaken: `Err(reason)` refuses it
/// (§10.3: a node with no valid roster accepts no new connections).
pub type Admission = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The default observer: refusals and abandoned streams go to the log (§12.8), at most one
/// line a second of each (peers cause them); nothing secret is in an event.
fn log_observer() -> Observer {
    let refused = crate::log_throttle::Throttle::default();
    let abandoned = crate::log_throttle::Throttle::default();
    Arc::new(move |event: &ServerEvent| match event {
        ServerEvent::Connected { .. } | ServerEvent::AddressValidation { .. } => {}
        // Refused before the handshake: the node logs why once, not per attempt.
        ServerEvent::HandshakeFailed {
            error: TransportError::NotAccepting(_),
            ..
        } => {}
        ServerEvent::HandshakeFailed { remote, error } => {
            if let Some(left_out) = refused.admit(std::time::Instant::now()) {
                tracing::warn!(%remote, left_out, "refused connection: {error}");
            }
        }
        ServerEvent::StreamAbandoned { peer, code } => {
            if let Some(left_out) = abandoned.admit(std::time::Instant::now()) {
                tracing::warn!(%peer, left_out, "abandoned a request: {code}");
            }
        }
    })
}

/// A connection whose peer proved the Ed25519 key [`PeerConnection::peer`] (§7.3).
#[derive(Debug, Clone)]
pub struct PeerConnection {
    conn: quinn::Connection,
    peer: PublicKey,
}

impl PeerConnection {
    /// The peer's proven identity key.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// The underlying quinn connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Sends one request on a fresh stream and returns the response payload (§7.5).
    pub async fn request(
        &self,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        request(&self.conn, payload, timeout).await
    }

    /// Sends one request on a fresh stream and waits for the response as long as the
    /// compute `budget` plus network time following the measured RTT (§7.6.1).
    pub async fn request_within(
        &self,
        payload: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        crate::exchange::request_within(&self.conn, payload, budget).await
    }

    /// The smoothed round-trip time measured on this connection (RFC 9002 §5.3).
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Closes the connection in an orderly way.
    pub fn close(&self) {
        close(&self.conn, CloseCode::Done, b"done");
    }
}

fn close(conn: &quinn::Connection, code: CloseCode, reason: &[u8]) {
    conn.close(VarInt::from_u32(code.code()), reason);
}

struct Inner {
    endpoint: quinn::Endpoint,
    identity: Arc<TlsIdentity>,
    pinned: PinnedKeys,
    settings: TransportSettings,
    transport: Arc<quinn::TransportConfig>,
    server_base: Option<quinn::ServerConfig>,
    observer: std::sync::RwLock<Observer>,
    admission: std::sync::RwLock<Option<Admission>>,
    /// Authenticated incoming connections still open, by quinn's stable id.
    live: Mutex<HashMap<usize, PeerConnection>>,
    /// One permit per handshake in progress (§7.3.1).
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// A quinn endpoint with this node's identity: connects to pinned peers and, when bound with
/// [`bind_server`], accepts connections from the pinned set.
///
/// Cheap to clone; clones share the socket.
#[derive(Clone)]
pub struct MeshEndpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MeshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEndpoint")
            .field("identity", &self.inner.identity)
            .field("local_addr", &self.inner.endpoint.local_addr().ok())
            .field("server", &self.inner.server_base.is_some())
            .finish_non_exhaustive()
    }
}

/// Binds a server endpoint on `addr` that accepts clients whose keys are in `pinned`
/// (§7.3). The endpoint can also make outgoing connections.
pub fn bind_server(
    addr: SocketAddr,
    identity: Arc<TlsIdentity>,
    pinned: PinnedKeys,
    settings: TransportSettings,
) -> Result<MeshEndpoint, TransportError> {
    let transport = Arc::new(settings.transport_config()?);
    let max_handshakes = settings.max_concurrent_handshakes;
    let tls = server_config(&identity, pinned.clone(), Verdict::default())?;
    let quic = QuicServerConfig::try_from(Arc::new(tls)).map_err(TlsError::Quic)?;
    let mut base = quinn::ServerConfig::with_crypto(Arc::new(quic));
    base.transport_config(Arc::clone(&transport));
    // Nodes have fixed addresses from the roster; a peer has no reason to migrate.
    base.migration(false);
    let endpoint = quinn::Endpoint::server(base.clone(), addr)
        .map_err(|source| TransportError::Bind { addr, source })?;
    Ok(MeshEndpoint {
        inner: Arc::new(Inner {
            endpoint,
            identity,
            pinned,
            settings,
            transport,
            server_base: Some(base),
            observer: std::sync::RwLock::new(log_observer()),
            admission: std::sync::RwLock::new(None),
            live: Mutex::new(HashMap::new()),
            handshakes: Arc::new(tokio::sync::Semaphore::new(max_handshakes)),
        }),
    })
}

/// Binds a client-only endpoint on `addr` (use port 0 for an ephemeral port).
pub fn bind_client(
    addr: SocketAddr,
    identity: Arc<TlsIdentity>,
    settings: TransportSettings,
) -> Result<MeshEndpoint, TransportError> {
    let transport = Arc::new(settings.transport_config()?);
    let max_handshakes = settings.max_concurrent_handshakes;
    let endpoint =
        quinn::Endpoint::client(addr).map_err(|source| TransportError::Bind { addr, source })?;
    Ok(MeshEndpoint {
        inner: Arc::new(Inner {
            endpoint,
            identity,
            pinned: PinnedKeys::new(),
            settings,
            transport,
            server_base: None,
            observer: std::sync::RwLock::new(log_observer()),
            admission: std::sync::RwLock::new(None),
            live: Mutex::new(HashMap::new()),
            handshakes: Arc::new(tokio::sync::Semaphore::new(max_handshakes)),
        }),
    })
}

impl MeshEndpoint {
    /// Replaces the observer of server events (by default, refusals go to stderr).
    pub fn set_observer(&self, observer: Observer) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = observer;
    }

    /// Installs the check run before each incoming handshake (none by default: every
    /// attempt goes on to the pinned-key handshake of §7.3).
    pub fn set_admission(&self, admission: Admission) {
        *self
            .inner
            .admission
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(admission);
    }

    fn admit(&self) -> Result<(), String> {
        let admission = self
            .inner
            .admission
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        admission.map_or(Ok(()), |check| check())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<usize, PeerConnection>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of authenticated incoming connections open (accepted by
    /// [`MeshEndpoint::serve_streams`] or [`MeshEndpoint::serve`]).
    pub fn live_connections(&self) -> usize {
        self.live().len()
    }

    /// Closes every incoming connection whose peer key is no longer pinned (§7.3, §10.3: a
    /// key removed from the roster loses its open connections too), with code `REVOKED`
    /// (§7.7.2) and `reason`. Returns how many connections were closed.
    pub fn close_unpinned(&self, reason: &str) -> usize {
        let revoked: Vec<PeerConnection> = {
            let mut live = self.live();
            let ids: Vec<usize> = live
                .iter()
                .filter(|(_, c)| !self.inner.pinned.contains(&c.peer))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| live.remove(&id)).collect()
        };
        for c in &revoked {
            close(&c.conn, CloseCode::Revoked, reason.as_bytes());
        }
        revoked.len()
    }

    fn observe(&self, event: &ServerEvent) {
        let observer = Arc::clone(
            &self
                .inner
                .observer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        observer(event);
    }

    /// The local socket address (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.inner.endpoint.local_addr()
    }

    /// This endpoint's identity key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.identity.public_key()
    }

    /// The keys accepted from clients; update it when a new roster is verified.
    pub fn pinned(&self) -> &PinnedKeys {
        &self.inner.pinned
    }

    /// The underlying quinn endpoint.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.inner.endpoint
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.inner
            .endpoint
            .close(VarInt::from_u32(CloseCode::Shutdown.code()), b"shutdown");
    }

    /// Waits until every connection is closed (after [`MeshEndpoint::close`]).
    pub async fn wait_idle(&self) {
        self.inner.endpoint.wait_idle().await;
    }

    /// Connects to `addr` and succeeds only if the server proves `expected` (§7.3).
    ///
    /// Note that a server refusing this node's key may only tell so after the client's side
    /// of the handshake completed (TLS 1.3 client authentication is the last flight); the
    /// refusal then surfaces as [`TransportError::RefusedByPeer`] on the first request.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: &PublicKey,
    ) -> Result<PeerConnection, TransportError> {
        self.connect_with_alpn(addr, expected, ALPN).await
    }

    /// [`MeshEndpoint::connect`] offering `alpn` instead of `quorate/1` (for tests of §7.4).
    pub(crate) async fn connect_with_alpn(
        &self,
        addr: SocketAddr,
        expected: &PublicKey,
        alpn: &[u8],
    ) -> Result<PeerConnection, TransportError> {
        let verdict = Verdict::default();
        let tls = client_config(&self.inner.identity, *expected, verdict.clone(), alpn)?;
        let quic = QuicClientConfig::try_from(Arc::new(tls)).map_err(TlsError::Quic)?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(Arc::clone(&self.inner.transport));
        let connecting = self
            .inner
            .endpoint
            .connect_with(config, addr, &server_name_for(expected))
            .map_err(|source| TransportError::Connect { addr, source })?;
        let after = self.inner.settings.connect_timeout;
        let conn = match tokio::time::timeout(after, connecting).await {
            Err(_) => {
                return Err(TransportError::Timeout {
                    after,
                    during: "connecting",
                });
            }
            Ok(Err(e)) => return Err(handshake_error(e, verdict.refusal(), Some(expected))),
            Ok(Ok(conn)) => conn,
        };
        finish_handshake(conn, Some(expected))
    }

    /// Completes the handshake of one incoming connection (§7.3): the client must prove a
    /// pinned key.
    async fn handshake_incoming(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<PeerConnection, TransportError> {
        let Some(base) = &self.inner.server_base else {
            incoming.refuse();
            return Err(TransportError::InvalidSettings(
                "a client endpoint does not accept connections",
            ));
        };
        let verdict = Verdict::default();
        let tls = server_config(
            &self.inner.identity,
            self.inner.pinned.clone(),
            verdict.clone(),
        )?;
        let quic = QuicServerConfig::try_from(Arc::new(tls)).map_err(TlsError::Quic)?;
        let mut config = base.clone();
        config.crypto = Arc::new(quic);
        let connecting = incoming
            .accept_with(Arc::new(config))
            .map_err(|e| handshake_error(e, None, None))?;
        let after = self.inner.settings.connect_timeout;
        let conn = match tokio::time::timeout(after, connecting).await {
            Err(_) => {
                return Err(TransportError::Timeout {
                    after,
                    during: "accepting a connection",
                });
            }
            Ok(Err(e)) => return Err(handshake_error(e, verdict.refusal(), None)),
            Ok(Ok(conn)) => conn,
        };
        finish_handshake(conn, None)
    }

    /// Waits for the next incoming connection and completes its handshake. Returns `None`
    /// once the endpoint is closed. The admission check applies; the connection returned is
    /// the caller's to manage ([`MeshEndpoint::close_unpinned`] tracks only those accepted
    /// by [`MeshEndpoint::serve_streams`]).
    pub async fn accept(&self) -> Option<Result<PeerConnection, TransportError>> {
        loop {
            let incoming = self.inner.endpoint.accept().await?;
            match self.screen(incoming) {
                Screened::Handshake(incoming, permit) => {
                    let result = self.handshake_incoming(*incoming).await;
                    drop(permit);
                    return Some(result);
                }
                Screened::Retried => continue,
                Screened::Refused(error) => return Some(Err(error)),
            }
        }
    }

    /// Decides, before any cryptography, what happens to an incoming connection (§7.3.1):
    /// refused while the node admits nobody (§10.3), sent a Retry while its address is
    /// unvalidated, refused while the handshake limit is reached; otherwise handshaken while
    /// the returned permit is held.
    fn screen(&self, incoming: quinn::Incoming) -> Screened {
        let remote = incoming.remote_address();
        if let Err(reason) = self.admit() {
            incoming.refuse();
            return Screened::Refused(TransportError::NotAccepting(reason));
        }
        if self.inner.settings.validate_addresses
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            // Stateless: the token is all quinn remembers of this address.
            if incoming.retry().is_ok() {
                self.observe(&ServerEvent::AddressValidation { remote });
            }
            return Screened::Retried;
        }
        match Arc::clone(&self.inner.handshakes).try_acquire_owned() {
            Ok(permit) => Screened::Handshake(Box::new(incoming), permit),
            Err(_) => {
                incoming.refuse();
                Screened::Refused(TransportError::TooManyHandshakes {
                    limit: self.inner.settings.max_concurrent_handshakes,
                })
            }
        }
    }

    /// Accept loop (§7.5): every stream of every authenticated connection is handed to
    /// `handler` with the peer's key. Handshakes and streams run concurrently; returns when
    /// the endpoint is closed.
    pub async fn serve_streams<H, Fut>(&self, handler: H)
    where
        H: Fn(PublicKey, RecvStream, SendStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let remote = incoming.remote_address();
            let (incoming, permit) = match self.screen(incoming) {
                Screened::Handshake(incoming, permit) => (incoming, permit),
                Screened::Retried => continue,
                Screened::Refused(error) => {
                    self.observe(&ServerEvent::HandshakeFailed { remote, error });
                    continue;
                }
            };
            let this = self.clone();
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let handshake = this.handshake_incoming(*incoming).await;
                drop(permit);
                let conn = match handshake {
                    Ok(conn) => conn,
                    Err(error) => {
                        this.observe(&ServerEvent::HandshakeFailed { remote, error });
                        return;
                    }
                };
                this.observe(&ServerEvent::Connected {
                    peer: conn.peer.key_id(),
                    remote,
                });
                let id = conn.conn.stable_id();
                this.live().insert(id, conn.clone());
                // The pinned set may have changed while the handshake ran (§7.3: changes
                // apply to handshakes that start afterwards, and a removed key loses its
                // connections).
                if !this.inner.pinned.contains(&conn.peer) {
                    this.close_unpinned("the key is no longer on the roster");
                }
                while let Ok((send, recv)) = conn.conn.accept_bi().await {
                    // A stream that races the closing of a revoked key's connection is not
                    // served.
                    if !this.inner.pinned.contains(&conn.peer) {
                        this.close_unpinned("the key is no longer on the roster");
                        break;
                    }
                    tokio::spawn(handler(conn.peer, recv, send));
                }
                this.live().remove(&id);
            });
        }
    }

    /// Request/response accept loop (§7.5): reads one request frame per stream (within
    /// [`TransportSettings::request_timeout`] and [`TransportSettings::max_request_len`]),
    /// passes its payload to `handler` and writes the returned payload as the response frame.
    pub async fn serve<H, Fut>(&self, handler: H)
    where
        H: Fn(PublicKey, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let settings = self.inner.settings.clone();
        let this = self.clone();
        // §7.6: the memory budget for requests in flight, in KiB permits; each stream takes
        // its worst case (`max_request_len`) before reading and keeps it until it answered.
        let kib = |bytes: u64| u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let per_stream = kib(u64::from(settings.max_request_len)).max(1);
        let budget = Arc::new(tokio::sync::Semaphore::new(
            kib(settings.max_in_flight_bytes).max(per_stream) as usize,
        ));
        self.serve_streams(move |peer, recv, send| {
            let handler = Arc::clone(&handler);
            let this = this.clone();
            let settings = settings.clone();
            let budget = Arc::clone(&budget);
            async move {
                let permit = tokio::time::timeout(
                    settings.request_timeout,
                    budget.acquire_many_owned(per_stream),
                )
                .await;
                let Ok(Ok(_permit)) = permit else {
                    // The budget stayed full for a whole request timeout: drop the stream
                    // unread; QUIC flow control has kept its bytes at the peer.
                    let (mut recv, mut send) = (recv, send);
                    let code = VarInt::from_u32(StreamCode::RequestTimeout.code());
                    let _ = recv.stop(code);
                    let _ = send.reset(code);
                    this.observe(&ServerEvent::StreamAbandoned {
                        peer: peer.key_id(),
                        code: StreamCode::RequestTimeout,
                    });
                    return;
                };
                if let Err(code) = answer(peer, recv, send, &settings, handler.as_ref()).await {
                    this.observe(&ServerEvent::StreamAbandoned {
                        peer: peer.key_id(),
                        code,
                    });
                }
            }
        })
        .await;
    }
}

/// Server side of one request stream (§7.5). On failure the stream is stopped and reset
/// with the returned code.
async fn answer<H, Fut>(
    peer: PublicKey,
    mut recv: RecvStream,
    mut send: SendStream,
    settings: &TransportSettings,
    handler: &H,
) -> Result<(), StreamCode>
where
    H: Fn(PublicKey, Vec<u8>) -> Fut,
    Fut: Future<Output = Vec<u8>>,
{
    let abandon = |recv: &mut RecvStream, send: &mut SendStream, code: StreamCode| {
        let code_v = VarInt::from_u32(code.code());
        // Either half may already be gone; the code is best effort.
        let _ = recv.stop(code_v);
        let _ = send.reset(code_v);
        Err(code)
    };
    let read = tokio::time::timeout(
        settings.request_timeout,
        read_frame(&mut recv, settings.max_request_len),
    )
    .await;
    let request = match read {
        Err(_) => return abandon(&mut recv, &mut send, StreamCode::RequestTimeout),
        Ok(Err(ReadFailure::Frame(FrameError::TooLarge { .. }))) => {
            return abandon(&mut recv, &mut send, StreamCode::FrameTooLarge);
        }
        Ok(Err(ReadFailure::Frame(_))) => {
            return abandon(&mut recv, &mut send, StreamCode::MalformedFrame);
        }
        // The client went away or reset the stream: nobody to answer.
        Ok(Err(ReadFailure::Stream(_))) => return Ok(()),
        Ok(Ok(request)) => request,
    };
    let response = handler(peer, request).await;
    let Ok(header) = encode_header(response.len(), MAX_FRAME_LEN) else {
        return abandon(&mut recv, &mut send, StreamCode::Internal);
    };
    if send.write_all(&header).await.is_err() || send.write_all(&response).await.is_err() {
        // The client stopped the stream or the connection is gone.
        return Ok(());
    }
    let _ = send.finish();
    Ok(())
}

/// The peer's key after a completed handshake, with the post-handshake checks of §7.3
/// and §7.4.
fn finish_handshake(
    conn: quinn::Connection,
    expected: Option<&PublicKey>,
) -> Result<PeerConnection, TransportError> {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        close(&conn, CloseCode::IdentityMismatch, b"alpn");
        return Err(TransportError::AlpnMismatch);
    }
    let Some(peer) = peer_key(&conn) else {
        close(&conn, CloseCode::IdentityMismatch, b"identity");
        return Err(TransportError::RefusedIdentity(
            PeerRefusal::MalformedCertificate,
        ));
    };
    if let Some(expected) = expected
        && peer != *expected
    {
        // Unreachable with the client verifier (it pins only `expected`); kept as the
        // last line of defence.
        close(&conn, CloseCode::IdentityMismatch, b"identity");
        return Err(TransportError::UnexpectedPeer {
            expected: expected.key_id(),
            presented: peer.key_id(),
        });
    }
    Ok(PeerConnection { conn, peer })
}
