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
use quinn::{ConnectionError, ReadError, RecvStream, SendStream, VarInt, WriteError};
use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::wire::frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_header};
use quorate_protocol::wire::{CloseCode, StreamCode};

use crate::tls::{
    ALPN, PeerRefusal, PinnedKeys, TlsError, TlsIdentity, Verdict, client_config, peer_key,
    server_config, server_name_for,
};

/// TLS alert `no_application_protocol` (RFC 7301 §3.2).
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// TLS alert `certificate_required` (RFC 8446 §6.2).
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

/// First QUIC transport error code reserved for TLS alerts (RFC 9001 §4.8).
const CRYPTO_ERROR_BASE: u64 = 0x100;

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Errors of the QUIC transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A setting is out of range.
    #[error("invalid transport settings: {0}")]
    InvalidSettings(&'static str),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP socket {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS identity or configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused to start a connection (e.g. unusable address, endpoint closing).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address asked for.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: quinn::ConnectError,
    },
    /// An operation did not finish in time (§7.6).
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// The limit that ran out.
        after: Duration,
        /// What was being waited for.
        during: &'static str,
    },
    /// This side refused the peer's certificate or handshake signature (§7.3).
    #[error("refused the peer's identity: {0}")]
    RefusedIdentity(PeerRefusal),
    /// The server proved a pinned-format key that is not the one the client meant to reach
    /// (§7.3).
    #[error("unexpected peer: expected key {expected}, the server presented key {presented}")]
    UnexpectedPeer {
        /// Key id the client expected.
        expected: KeyId,
        /// Key id the server presented.
        presented: KeyId,
    },
    /// The peer refused this side's identity with the given TLS alert (§7.3): typically this
    /// node's key is not in the peer's roster.
    #[error(
        "the peer refused this node's identity (TLS alert {alert}); is this node's key in the peer's roster?"
    )]
    RefusedByPeer {
        /// TLS alert description (RFC 8446 §6).
        alert: u8,
    },
    /// The peer does not speak `quorate/1` (§7.4).
    #[error("ALPN mismatch: the peer does not speak quorate/1")]
    AlpnMismatch,
    /// A frame exceeds the limit in force (§8.2): a request too large to send, or a response
    /// whose header announces more than the caller accepts.
    #[error("frame of {len} octets exceeds the limit of {max} octets")]
    FrameTooLarge {
        /// Announced or offered payload length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The peer's response is not exactly one well-formed frame (§7.5, §8.3).
    #[error("malformed response from the peer: {0}")]
    MalformedFrame(FrameError),
    /// The peer abandoned the request with a known code (§7.7.1), e.g. because the request
    /// frame exceeded its limit.
    #[error("the peer abandoned the request: {0}")]
    PeerAbandoned(StreamCode),
    /// The peer reset the stream with a code this version does not define.
    #[error("the peer reset the stream with code {0}")]
    StreamReset(u64),
    /// This server is not accepting new connections at all (§10.3: its roster expired, or
    /// the current roster no longer lists it); the attempt was refused before the handshake.
    #[error("not accepting connections: {0}")]
    NotAccepting(String),
    /// The peer refused the connection before any handshake (QUIC `CONNECTION_REFUSED`): it
    /// accepts no new connections, e.g. because it holds no valid roster (§10.3).
    #[error(
        "the peer refused the connection before the handshake: it is not accepting connections (its roster may have expired or no longer list it)"
    )]
    ConnectionRefused,
    /// The peer closed the connection because this side's key is no longer on its roster
    /// (`REVOKED`, §7.7.2).
    #[error(
        "the peer closed the connection: this side's key is no longer on its roster ({reason})"
    )]
    Revoked {
        /// The reason phrase the peer sent.
        reason: String,
    },
    /// The handshake failed for a reason not covered above.
    #[error("handshake failed: {0}")]
    Handshake(ConnectionError),
    /// The connection is closed (by either side, or after the idle timeout).
    #[error("connection closed: {0}")]
    Closed(ConnectionError),
}

/// Tunable limits and timeouts of the transport (§7.6).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// A connection with no traffic for this long is closed (QUIC `max_idle_timeout`).
    pub idle_timeout: Duration,
    /// Interval of keep-alive PINGs on idle connections; `None` disables them.
    pub keep_alive: Option<Duration>,
    /// Upper bound on establishing a connection, handshake included.
    pub connect_timeout: Duration,
    /// Upper bound, on the server, for receiving one complete request.
    pub request_timeout: Duration,
    /// Streams a peer may have open concurrently on one connection.
    pub max_concurrent_bidi_streams: u32,
    /// Largest request payload the server accepts, at most [`MAX_FRAME_LEN`].
    pub max_request_len: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_bidi_streams: 64,
            max_request_len: MAX_FRAME_LEN,
        }
    }
}

impl TransportSettings {
    fn transport_config(&self) -> Result<quinn::TransportConfig, TransportError> {
        if self.max_request_len > MAX_FRAME_LEN {
            return Err(TransportError::InvalidSettings(
                "max_request_len exceeds MAX_FRAME_LEN",
            ));
        }
        if self.keep_alive.is_some_and(|k| k >= self.idle_timeout) {
            return Err(TransportError::InvalidSettings(
                "keep_alive must be shorter than idle_timeout",
            ));
        }
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::InvalidSettings("idle_timeout out of range"))?;
        let mut config = quinn::TransportConfig::default();
        config
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(self.keep_alive)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            // §7.5: only bidirectional streams are used.
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(None);
        Ok(config)
    }
}

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
    /// A request stream was abandoned with a code (§7.7.1).
    StreamAbandoned {
        /// The peer that opened the stream.
        peer: KeyId,
        /// The code sent to it.
        code: StreamCode,
    },
}

/// A callback receiving [`ServerEvent`]s.
pub type Observer = Arc<dyn Fn(&ServerEvent) + Send + Sync>;

/// A check run before each incoming connection is handshaken: `Err(reason)` refuses it
/// (§10.3: a node with no valid roster accepts no new connections).
pub type Admission = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The default observer: refusals and abandoned streams go to stderr; nothing secret is in
/// an event.
fn stderr_observer() -> Observer {
    Arc::new(|event: &ServerEvent| match event {
        ServerEvent::Connected { .. } => {}
        // Refused before the handshake: the node logs why once, not per attempt.
        ServerEvent::HandshakeFailed {
            error: TransportError::NotAccepting(_),
            ..
        } => {}
        ServerEvent::HandshakeFailed { remote, error } => {
            eprintln!("quorate transport: refused connection from {remote}: {error}");
        }
        ServerEvent::StreamAbandoned { peer, code } => {
            eprintln!("quorate transport: abandoned a request from {peer}: {code}");
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
            observer: std::sync::RwLock::new(stderr_observer()),
            admission: std::sync::RwLock::new(None),
            live: Mutex::new(HashMap::new()),
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
            observer: std::sync::RwLock::new(stderr_observer()),
            admission: std::sync::RwLock::new(None),
            live: Mutex::new(HashMap::new()),
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
        let incoming = self.inner.endpoint.accept().await?;
        if let Err(reason) = self.admit() {
            incoming.refuse();
            return Some(Err(TransportError::NotAccepting(reason)));
        }
        Some(self.handshake_incoming(incoming).await)
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
            // §10.3: a node without a valid roster accepts no new connection at all.
            if let Err(reason) = self.admit() {
                incoming.refuse();
                self.observe(&ServerEvent::HandshakeFailed {
                    remote,
                    error: TransportError::NotAccepting(reason),
                });
                continue;
            }
            let this = self.clone();
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let conn = match this.handshake_incoming(incoming).await {
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
        self.serve_streams(move |peer, recv, send| {
            let handler = Arc::clone(&handler);
            let this = this.clone();
            let settings = settings.clone();
            async move {
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

/// Why reading a frame from a stream failed.
#[derive(Debug)]
enum ReadFailure {
    /// The octets received are not exactly one acceptable frame.
    Frame(FrameError),
    /// The stream or connection failed.
    Stream(ReadError),
}

/// Reads exactly one frame and the end of the stream (§7.5) through the sans-IO decoder.
async fn read_frame(recv: &mut RecvStream, max: u32) -> Result<Vec<u8>, ReadFailure> {
    let mut decoder = FrameDecoder::with_limit(max).map_err(ReadFailure::Frame)?;
    let mut frame = None;
    while let Some(chunk) = recv
        .read_chunk(READ_CHUNK, true)
        .await
        .map_err(ReadFailure::Stream)?
    {
        let mut input: &[u8] = &chunk.bytes;
        if frame.is_none() {
            frame = decoder.decode(&mut input).map_err(ReadFailure::Frame)?;
        }
        if !input.is_empty() {
            return Err(ReadFailure::Frame(FrameError::TrailingBytes {
                extra: input.len(),
            }));
        }
    }
    decoder.finish().map_err(ReadFailure::Frame)?;
    frame.ok_or(ReadFailure::Frame(FrameError::Truncated {
        missing: quorate_protocol::wire::FRAME_HEADER_LEN as u64,
    }))
}

/// Sends one request on a fresh bidirectional stream and returns the response payload
/// (§7.5), accepting responses up to [`MAX_FRAME_LEN`].
pub async fn request(
    conn: &quinn::Connection,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    request_with_limit(conn, payload, MAX_FRAME_LEN, timeout).await
}

/// [`request`] with a lower limit on the response payload (§8.2).
pub async fn request_with_limit(
    conn: &quinn::Connection,
    payload: &[u8],
    max_response_len: u32,
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    let header = encode_header(payload.len(), MAX_FRAME_LEN).map_err(frame_error)?;
    if max_response_len > MAX_FRAME_LEN {
        return Err(TransportError::InvalidSettings(
            "max_response_len exceeds MAX_FRAME_LEN",
        ));
    }
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(connection_error)?;
        send.write_all(&header).await.map_err(write_error)?;
        send.write_all(payload).await.map_err(write_error)?;
        // Finishing fails only if the stream was already reset, which write_all reported.
        let _ = send.finish();
        read_frame(&mut recv, max_response_len)
            .await
            .map_err(|failure| match failure {
                ReadFailure::Frame(e) => frame_error(e),
                ReadFailure::Stream(e) => read_error(e),
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TransportError::Timeout {
            after: timeout,
            during: "waiting for a response",
        })?
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

/// Maps a handshake failure to its typed cause.
fn handshake_error(
    e: ConnectionError,
    refusal: Option<PeerRefusal>,
    expected: Option<&PublicKey>,
) -> TransportError {
    match (refusal, expected) {
        (Some(PeerRefusal::NotPinned { key_id }), Some(expected)) => {
            TransportError::UnexpectedPeer {
                expected: expected.key_id(),
                presented: key_id,
            }
        }
        (Some(refusal), _) => TransportError::RefusedIdentity(refusal),
        (None, _) => match crypto_alert(&e) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => TransportError::AlpnMismatch,
            // This server sent certificate_required: the client presented no certificate,
            // which rustls refuses before any verifier runs (§7.3).
            Some(ALERT_CERTIFICATE_REQUIRED) if matches!(e, ConnectionError::TransportError(_)) => {
                TransportError::RefusedIdentity(PeerRefusal::ChainLength(0))
            }
            _ => match connection_error(e) {
                TransportError::Closed(e) => TransportError::Handshake(e),
                other => other,
            },
        },
    }
}

/// The TLS alert carried by a connection error, if it is one (RFC 9001 §4.8).
fn crypto_alert(e: &ConnectionError) -> Option<u8> {
    let code = match e {
        ConnectionError::ConnectionClosed(close) => u64::from(close.error_code),
        ConnectionError::TransportError(te) => u64::from(te.code),
        _ => return None,
    };
    code.checked_sub(CRYPTO_ERROR_BASE)
        .and_then(|alert| u8::try_from(alert).ok())
}

fn connection_error(e: ConnectionError) -> TransportError {
    match &e {
        ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            return TransportError::ConnectionRefused;
        }
        ConnectionError::ApplicationClosed(close)
            if close.error_code.into_inner() == u64::from(CloseCode::Revoked.code()) =>
        {
            return TransportError::Revoked {
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            };
        }
        _ => {}
    }
    // A crypto error closed by the peer means it refused our identity or protocol.
    if let ConnectionError::ConnectionClosed(_) = &e
        && let Some(alert) = crypto_alert(&e)
    {
        return if alert == ALERT_NO_APPLICATION_PROTOCOL {
            TransportError::AlpnMismatch
        } else {
            TransportError::RefusedByPeer { alert }
        };
    }
    TransportError::Closed(e)
}

fn stream_code(code: VarInt) -> TransportError {
    let code = code.into_inner();
    match StreamCode::from_code(code) {
        Some(known) => TransportError::PeerAbandoned(known),
        None => TransportError::StreamReset(code),
    }
}

fn write_error(e: WriteError) -> TransportError {
    match e {
        WriteError::Stopped(code) => stream_code(code),
        WriteError::ConnectionLost(e) => connection_error(e),
        // The stream was already closed locally, or 0-RTT (never enabled, §7.2) was refused.
        _ => TransportError::Closed(ConnectionError::LocallyClosed),
    }
}

fn read_error(e: ReadError) -> TransportError {
    match e {
        ReadError::Reset(code) => stream_code(code),
        ReadError::ConnectionLost(e) => connection_error(e),
        _ => TransportError::Closed(ConnectionError::LocallyClosed),
    }
}

fn frame_error(e: FrameError) -> TransportError {
    match e {
        FrameError::TooLarge { len, max } => TransportError::FrameTooLarge { len, max },
        other => TransportError::MalformedFrame(other),
    }
}
